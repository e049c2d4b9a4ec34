package audit

import (
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/accord-fl/accord/adminauth"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// FuzzVerify: an audit log as `accord audit verify` reads it, from an
// exported file (JSON) or from a coordinator (ListAuditResponse). Verify
// must refuse what does not verify without panicking. `make fuzz` runs it.
func FuzzVerify(f *testing.F) {
	ca, err := pki.NewCA("fuzz")
	if err != nil {
		f.Fatal(err)
	}
	who := pki.Identity{Role: pki.RoleAdmin, Name: "alice", Organization: "org1"}
	cert, err := ca.Issue(who)
	if err != nil {
		f.Fatal(err)
	}
	var log []Entry
	for i := range 2 {
		s, err := adminauth.Sign(cert, "/accord.v1.AdminService/Approve", &pb.ApproveRequest{ProposalId: "job-1"}, time.Now())
		if err != nil {
			f.Fatal(err)
		}
		var prev *Entry
		if len(log) > 0 {
			prev = &log[len(log)-1]
		}
		log = append(log, Chain(prev, Entry{Action: "approve", Summary: "approved job-1", Signer: who.Name, Organization: who.Organization,
			Signed: *s, CommittedUnixMs: int64(1000 + i)}))
	}
	if err := Verify(log, ca.Pool()); err != nil {
		f.Fatalf("the seed log does not verify: %v", err)
	}
	file, err := json.Marshal(log)
	if err != nil {
		f.Fatal(err)
	}
	wire := &pb.ListAuditResponse{Total: uint64(len(log))}
	for _, e := range log {
		wire.Entries = append(wire.Entries, ToWire(e))
	}
	b, err := proto.Marshal(wire)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(file)
	f.Add(b)
	f.Add([]byte(`[{"index":0,"signed":{"certificate":"MAA="}},null]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var entries []Entry
		if json.Unmarshal(b, &entries) == nil {
			_ = Verify(entries, ca.Pool())
		}
		resp := &pb.ListAuditResponse{}
		if proto.Unmarshal(b, resp) == nil {
			entries = entries[:0]
			for _, e := range resp.GetEntries() {
				entries = append(entries, FromWire(e))
			}
			_ = Verify(entries, ca.Pool())
		}
	})
}
