package audit

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/accord-fl/accord/adminauth"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

func testLog(t *testing.T) (*pki.CA, []Entry) {
	t.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	var log []Entry
	for i, who := range []pki.Identity{
		{Role: pki.RoleAdmin, Name: "alice", Organization: "org1"},
		{Role: pki.RoleAdmin, Name: "bob", Organization: "org2"},
		{Role: pki.RoleAdmin, Name: "alice", Organization: "org1"},
	} {
		cert, err := ca.Issue(who)
		if err != nil {
			t.Fatal(err)
		}
		s, err := adminauth.Sign(cert, "/accord.v1.AdminService/Approve", &pb.ApproveRequest{ProposalId: "job-1"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var prev *Entry
		if len(log) > 0 {
			prev = &log[len(log)-1]
		}
		log = append(log, Chain(prev, Entry{Action: "approve", Summary: "approved job-1", Signer: who.Name, Organization: who.Organization,
			Signed: *s, CommittedUnixMs: int64(1000 + i)}))
	}
	return ca, log
}

func TestVerifyNamesTheFirstBadEntry(t *testing.T) {
	ca, log := testLog(t)
	if err := Verify(log, ca.Pool()); err != nil {
		t.Fatalf("a good log: %v", err)
	}
	other, _ := pki.NewCA("other")
	cases := []struct {
		name string
		edit func([]Entry) []Entry
		want uint64
	}{
		{"summary altered", func(l []Entry) []Entry { l[1].Summary = "x"; return l }, 1},
		{"time altered", func(l []Entry) []Entry { l[2].CommittedUnixMs++; return l }, 2},
		{"signer renamed and rehashed", func(l []Entry) []Entry {
			l[1].Signer = "alice"
			l[1].Hash = l[1].ComputeHash()
			return l
		}, 1},
		{"altered and rehashed: the next link breaks", func(l []Entry) []Entry {
			l[0].Summary = "x"
			l[0].Hash = l[0].ComputeHash()
			return l
		}, 1},
		{"entry removed", func(l []Entry) []Entry { return slices.Delete(l, 1, 2) }, 1},
		{"entries swapped", func(l []Entry) []Entry { l[0], l[1] = l[1], l[0]; return l }, 0},
	}
	for _, c := range cases {
		err := Verify(c.edit(slices.Clone(log)), ca.Pool())
		var ee *EntryError
		if !errors.As(err, &ee) || ee.Index != c.want || !errors.Is(err, ErrBroken) {
			t.Errorf("%s: %v; want entry %d named", c.name, err, c.want)
		}
	}
	if err := Verify(log, other.Pool()); err == nil {
		t.Error("a log checked against another federation's CA verified")
	}
}
