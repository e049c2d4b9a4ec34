package audit

import (
	"github.com/accord-fl/accord/adminauth"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// ToWire converts an entry for the wire.
func ToWire(e Entry) *pb.AuditEntry {
	return &pb.AuditEntry{
		Index: e.Index, PrevHash: e.PrevHash, Hash: e.Hash, Action: e.Action, Summary: e.Summary, Signer: e.Signer,
		Organization: e.Organization, Method: e.Signed.Method, Request: e.Signed.Request, SignedUnixMs: e.Signed.UnixMs,
		Nonce: e.Signed.Nonce, Certificate: e.Signed.Certificate, Signature: e.Signed.Signature, CommittedUnixMs: e.CommittedUnixMs,
	}
}

// FromWire converts an entry from the wire.
func FromWire(p *pb.AuditEntry) Entry {
	return Entry{
		Index: p.GetIndex(), PrevHash: p.GetPrevHash(), Hash: p.GetHash(), Action: p.GetAction(), Summary: p.GetSummary(),
		Signer: p.GetSigner(), Organization: p.GetOrganization(), CommittedUnixMs: p.GetCommittedUnixMs(),
		Signed: adminauth.Signed{Method: p.GetMethod(), Request: p.GetRequest(), UnixMs: p.GetSignedUnixMs(), Nonce: p.GetNonce(),
			Certificate: p.GetCertificate(), Signature: p.GetSignature()},
	}
}
