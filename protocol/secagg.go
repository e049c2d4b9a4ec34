package protocol

import (
	"errors"
	"fmt"

	"github.com/accord-fl/accord/aggregate/secagg"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// ErrSecAgg means a secure-aggregation message does not decode.
var ErrSecAgg = errors.New("bad secure aggregation message")

// SecAggSession names one round attempt of a job for secure aggregation:
// clients sign their keys for it, so keys cannot be replayed into another
// round, attempt or group (group 0: the cohort is one group).
func SecAggSession(jobID string, round, attempt, group uint32) []byte {
	if group == 0 {
		return fmt.Appendf(nil, "accord/%s/round/%d/attempt/%d", jobID, round, attempt)
	}
	return fmt.Appendf(nil, "accord/%s/round/%d/attempt/%d/group/%d", jobID, round, attempt, group)
}

// AdvertisementToWire is a client's advertisement with the certificate
// whose key signed it.
func AdvertisementToWire(a secagg.Advertisement, cert []byte) *pb.SecAggAdvertisement {
	return &pb.SecAggAdvertisement{From: uint32(a.From), CKey: a.CKey, SKey: a.SKey, Signature: a.Sig, Certificate: cert}
}

// AdvertisementFromWire is the advertisement a client named identity sent.
func AdvertisementFromWire(a *pb.SecAggAdvertisement, identity string) secagg.Advertisement {
	return secagg.Advertisement{From: int(a.GetFrom()), CKey: a.GetCKey(), SKey: a.GetSKey(), Sig: a.GetSignature(), Identity: identity}
}

// SharesToWire converts encrypted shares for sending.
func SharesToWire(shares []secagg.EncryptedShare) []*pb.SecAggShare {
	out := make([]*pb.SecAggShare, len(shares))
	for i, e := range shares {
		out[i] = &pb.SecAggShare{From: uint32(e.From), To: uint32(e.To), Ciphertext: e.Ciphertext}
	}
	return out
}

// SharesFromWire converts received encrypted shares.
func SharesFromWire(in []*pb.SecAggShare) []secagg.EncryptedShare {
	out := make([]secagg.EncryptedShare, len(in))
	for i, e := range in {
		out[i] = secagg.EncryptedShare{From: int(e.GetFrom()), To: int(e.GetTo()), Ciphertext: e.GetCiphertext()}
	}
	return out
}

// RevealsToWire converts a survivor's revealed shares for sending.
func RevealsToWire(reveals []secagg.Reveal) []*pb.SecAggReveal {
	out := make([]*pb.SecAggReveal, len(reveals))
	for i, r := range reveals {
		kind := pb.SecAggReveal_KIND_MASK_SEED
		if r.Kind == secagg.MaskKey {
			kind = pb.SecAggReveal_KIND_MASK_KEY
		}
		out[i] = &pb.SecAggReveal{Owner: uint32(r.Owner), Kind: kind, X: r.Share.X, Y: r.Share.Y[:]}
	}
	return out
}

// RevealsFromWire converts received revealed shares; an unknown kind or a
// share of the wrong size is an ErrSecAgg.
func RevealsFromWire(in []*pb.SecAggReveal) ([]secagg.Reveal, error) {
	out := make([]secagg.Reveal, len(in))
	for i, r := range in {
		if len(r.GetY()) != secagg.Limbs {
			return nil, fmt.Errorf("%w: a revealed share has %d evaluations; want %d", ErrSecAgg, len(r.GetY()), secagg.Limbs)
		}
		var kind secagg.SecretKind
		switch r.GetKind() {
		case pb.SecAggReveal_KIND_MASK_SEED:
			kind = secagg.MaskSeed
		case pb.SecAggReveal_KIND_MASK_KEY:
			kind = secagg.MaskKey
		default:
			return nil, fmt.Errorf("%w: revealed share of kind %v", ErrSecAgg, r.GetKind())
		}
		out[i] = secagg.Reveal{Owner: int(r.GetOwner()), Kind: kind, Share: secagg.Share{X: r.GetX(), Y: [secagg.Limbs]uint64(r.GetY())}}
	}
	return out, nil
}
