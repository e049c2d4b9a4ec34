package adminauth

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// FuzzFromIncoming: an admin call's signature metadata and request, as a
// coordinator receives them. Reading and verifying them must refuse what
// is wrong without panicking. `make fuzz` runs it.
func FuzzFromIncoming(f *testing.F) {
	ca, err := pki.NewCA("fuzz")
	if err != nil {
		f.Fatal(err)
	}
	admin, err := ca.Issue(pki.Identity{Role: pki.RoleAdmin, Name: "alice", Organization: "org1"})
	if err != nil {
		f.Fatal(err)
	}
	const method = "/accord.v1.AdminService/CancelJob"
	now := time.Now()
	s, err := Sign(admin, method, &pb.CancelJobRequest{JobId: "job-1"}, now)
	if err != nil {
		f.Fatal(err)
	}
	req, err := Encode(&pb.CancelJobRequest{JobId: "job-1"})
	if err != nil {
		f.Fatal(err)
	}
	ts := strconv.FormatInt(s.UnixMs, 10)
	f.Add(s.Certificate, s.Signature, ts, s.Nonce, req)
	f.Add(s.Certificate, s.Signature[:8], ts, s.Nonce, req)
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00}, []byte{}, "-9223372036854775808", s.Nonce, []byte{0x0a, 0xff})
	f.Add(s.Certificate, s.Signature, "1e3", s.Nonce[:3], req)
	f.Fuzz(func(t *testing.T, cert, sig []byte, ts string, nonce, body []byte) {
		in := &pb.CancelJobRequest{}
		if err := proto.Unmarshal(body, in); err != nil {
			return
		}
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(
			mdCert, string(cert), mdSignature, string(sig), mdTime, ts, mdNonce, string(nonce)))
		got, err := FromIncoming(ctx, method, in)
		if err != nil {
			if !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrUnsigned) {
				t.Fatalf("error %v is neither ErrBadSignature nor ErrUnsigned", err)
			}
			return
		}
		_, _, _ = got.Verify(ca.Pool())
		_ = got.CheckFresh(now)
		_ = got.NonceKey()
	})
}
