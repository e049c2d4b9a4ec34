package pki

import (
	"errors"
	"testing"
)

// FuzzVerifySigned: a certificate, message and signature a peer sent (a
// secure-aggregation advertisement's, for one). VerifySigned must refuse
// what does not verify without panicking. `make fuzz` runs it.
func FuzzVerifySigned(f *testing.F) {
	ca, err := NewCA("fuzz")
	if err != nil {
		f.Fatal(err)
	}
	want := Identity{Role: RoleParticipant, Name: "p-1", Organization: "org1"}
	cert, err := ca.Issue(want)
	if err != nil {
		f.Fatal(err)
	}
	msg := []byte("accord secagg advertise")
	sig, err := Sign(cert, msg)
	if err != nil {
		f.Fatal(err)
	}
	if err := VerifySigned(ca.Pool(), cert.Certificate[0], want, msg, sig); err != nil {
		f.Fatalf("the seed does not verify: %v", err)
	}
	f.Add(cert.Certificate[0], msg, sig)
	f.Add(cert.Certificate[0], msg, sig[:len(sig)-1])
	f.Add(ca.Cert.Raw, msg, sig)
	f.Add([]byte{0x30, 0x82, 0xff, 0xff}, msg, []byte{})
	f.Fuzz(func(t *testing.T, der, msg, sig []byte) {
		if err := VerifySigned(ca.Pool(), der, want, msg, sig); err != nil && !errors.Is(err, ErrBadSignature) {
			t.Fatalf("error %v is not ErrBadSignature", err)
		}
	})
}
