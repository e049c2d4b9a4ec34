package adminauth

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

func TestSignatureCoversEverything(t *testing.T) {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := ca.Issue(pki.Identity{Role: pki.RoleAdmin, Name: "alice", Organization: "org1"})
	if err != nil {
		t.Fatal(err)
	}
	coord, err := ca.Issue(pki.Identity{Role: pki.RoleCoordinator, Name: "c1", Organization: "org1"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Issue(pki.Identity{Role: pki.RoleAdmin, Name: "alice", Organization: "org1"})
	if err != nil {
		t.Fatal(err)
	}
	const method = "/accord.v1.AdminService/CancelJob"
	req := &pb.CancelJobRequest{JobId: "job-1"}
	now := time.Now()
	sign := func(cert func() (*Signed, error)) *Signed {
		s, err := cert()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := sign(func() (*Signed, error) { return Sign(admin, method, req, now) })
	if id, _, err := good.Verify(ca.Pool()); err != nil || id.Name != "alice" || id.Organization != "org1" {
		t.Fatalf("a good signature: %v %v", id, err)
	}
	cases := []struct {
		name string
		edit func(s *Signed)
	}{
		{"another method", func(s *Signed) { s.Method = "/accord.v1.AdminService/RemoveMember" }},
		{"another request", func(s *Signed) { s.Request = []byte("\n\x05job-2") }},
		{"another time", func(s *Signed) { s.UnixMs++ }},
		{"another nonce", func(s *Signed) { s.Nonce = make([]byte, NonceSize) }},
		{"another signer's certificate", func(s *Signed) { s.Certificate = coord.Certificate[0] }},
		{"a certificate of another CA", func(s *Signed) { s.Certificate = foreign.Certificate[0] }},
		{"no signature", func(s *Signed) { s.Signature = nil }},
	}
	for _, c := range cases {
		s := *good
		c.edit(&s)
		if _, _, err := s.Verify(ca.Pool()); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: got %v; want ErrBadSignature", c.name, err)
		}
	}
	byCoordinator := sign(func() (*Signed, error) { return Sign(coord, method, req, now) })
	if _, _, err := byCoordinator.Verify(ca.Pool()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("signed by a coordinator: %v; want ErrBadSignature", err)
	}
	if _, _, err := good.VerifyAt(ca.Pool(), now.AddDate(5, 0, 0)); !errors.Is(err, ErrBadSignature) {
		t.Errorf("checked after the certificate expired: %v; want ErrBadSignature", err)
	}
	for _, skew := range []time.Duration{MaxSkew + time.Second, -MaxSkew - time.Second} {
		if err := good.CheckFresh(now.Add(skew)); !errors.Is(err, ErrBadSignature) {
			t.Errorf("checked %v away: %v; want ErrBadSignature", skew, err)
		}
	}
	if err := good.CheckFresh(now.Add(time.Minute)); err != nil {
		t.Errorf("a minute away: %v", err)
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	ca, _ := pki.NewCA("test")
	admin, err := ca.Issue(pki.Identity{Role: pki.RoleAdmin, Name: "alice", Organization: "org1"})
	if err != nil {
		t.Fatal(err)
	}
	const method = "/accord.v1.AdminService/Approve"
	req := &pb.ApproveRequest{ProposalId: "job-1"}
	s, err := Sign(admin, method, req, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	out, _ := metadata.FromOutgoingContext(Attach(context.Background(), s))
	in := metadata.NewIncomingContext(context.Background(), out)
	got, err := FromIncoming(in, method, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := got.Verify(ca.Pool()); err != nil {
		t.Fatalf("signature read back from metadata: %v", err)
	}
	if got.NonceKey() != s.NonceKey() {
		t.Error("nonce key changed on the way")
	}
	// The request the server decoded is what is checked, not what was signed.
	swapped, err := FromIncoming(in, method, &pb.ApproveRequest{ProposalId: "job-2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := swapped.Verify(ca.Pool()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("another request under the signature: %v; want ErrBadSignature", err)
	}
	if _, err := FromIncoming(context.Background(), method, req); !errors.Is(err, ErrUnsigned) {
		t.Errorf("no metadata: %v; want ErrUnsigned", err)
	}
}
