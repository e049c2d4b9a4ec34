package participant

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"

	"github.com/accord-fl/accord/aggregate/dp"
	"github.com/accord-fl/accord/aggregate/secagg"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// secureRound is a participant's side of secure aggregation in one round
// attempt: the protocol client, the cohort it was told, and the
// certificates its neighbours advertised with.
type secureRound struct {
	client *secagg.Client
	cohort []string
	certs  map[int][]byte
	// neighbours is the client's degree on the round's graph: the most
	// advertisements or shares a task may bring it.
	neighbours int
	// minSurvivors, under distributed DP, is the fewest inputs a sum may
	// hold and still carry the noise promised: fewer, and this participant
	// does not reveal its shares.
	minSurvivors int
}

// session names the round attempt a task belongs to: the key of its state
// here, and what advertisements are signed for.
func session(t *pb.Task) []byte {
	return protocol.SecAggSession(t.GetJobId(), t.GetRound(), t.GetAttempt(), t.GetSecagg().GetGroup())
}

func secAggRound(t *pb.Task) *pb.SecAggRound {
	return &pb.SecAggRound{JobId: t.GetJobId(), Round: t.GetRound(), Attempt: t.GetAttempt()}
}

// startSecure weights, clips and quantises a trained update (or, under
// distributed DP, clips, scales and noises it), makes this round's protocol
// client and advertises its keys (phase 0). work is the share of the
// task's epochs done; it scales the update's weight.
func (p *Participant) startSecure(ctx context.Context, client pb.ParticipantServiceClient, t *pb.Task, delta []float32, work float64) error {
	st := t.GetSecagg()
	n := int(st.GetN())
	switch {
	case len(st.GetCohort()) != n || int(st.GetIndex()) >= n:
		return fmt.Errorf("secure aggregation task: cohort of %d names for %d clients, index %d", len(st.GetCohort()), n, st.GetIndex())
	case st.GetCohort()[st.GetIndex()] != p.name:
		return fmt.Errorf("secure aggregation task: client %d is %q, not this participant (%q)", st.GetIndex(), st.GetCohort()[st.GetIndex()], p.name)
	case st.GetLength() != uint64(len(delta))+1:
		return fmt.Errorf("secure aggregation task: vectors of %d values; this update has %d (+1 weight)", st.GetLength(), len(delta))
	case !(st.GetWeightScale() >= 1):
		return fmt.Errorf("secure aggregation task: weight scale %v", st.GetWeightScale())
	}
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return err
	}
	rng := mrand.New(mrand.NewChaCha8(seed))
	var q []uint32
	minSurvivors := 0
	if d := t.GetDp(); d.GetMode() == "distributed" {
		// The plan is derived here from the job's z and clip and the
		// round's smallest sum, not taken from the coordinator; a sum of
		// fewer survivors is refused at unmasking.
		minSurvivors = int(d.GetMinClients())
		if minSurvivors < 2 || minSurvivors > n {
			return fmt.Errorf("distributed DP: a sum of at least %d inputs from a cohort of %d", minSurvivors, n)
		}
		plan, err := dp.PlanDistributed(len(delta), n, minSurvivors, d.GetClip(), d.GetNoiseMultiplier())
		if err != nil {
			return fmt.Errorf("distributed DP: %w", err)
		}
		if q, err = plan.Encode(delta, rng); err != nil {
			return fmt.Errorf("distributed DP: %w", err)
		}
		q = append(q, 1) // every client counts once
	} else {
		quant, err := secagg.NewQuantizer(st.GetClip(), n)
		if err != nil {
			return fmt.Errorf("secure aggregation task: %w", err)
		}
		// The weight w = examples / scale travels masked as the last entry,
		// scaled by clip so that it uses the quantiser's whole range.
		// examples is the declared count: the job's weight scale bounds
		// what it can buy. Partial work weighs its share.
		w := min(1, float64(p.examples())/st.GetWeightScale()) * work
		x := make([]float32, len(delta)+1)
		for i, d := range delta {
			x[i] = float32(w * float64(d))
		}
		x[len(delta)] = float32(w * st.GetClip())
		q = quant.Quantize(x, rng)
	}

	params := secagg.Params{N: n, K: int(st.GetDegree()), T: int(st.GetThreshold()), Length: int(st.GetLength()), GraphSeed: st.GetGraphSeed(),
		Session: session(t)}
	sr := &secureRound{cohort: st.GetCohort(), certs: map[int][]byte{}, minSurvivors: minSurvivors}
	sign := func(msg []byte) ([]byte, error) { return pki.Sign(p.cfg.Cert, msg) }
	verify := func(from int, identity string, msg, sig []byte) bool {
		if from < 0 || from >= len(sr.cohort) || sr.cohort[from] != identity {
			return false
		}
		want := pki.Identity{Role: pki.RoleParticipant, Name: identity}
		return pki.VerifySigned(p.cfg.CA, sr.certs[from], want, msg, sig) == nil
	}
	var err error
	sr.client, err = secagg.NewClient(params, int(st.GetIndex()), p.name, q, sign, verify)
	if err != nil {
		return fmt.Errorf("secure aggregation: %w", err)
	}
	sr.neighbours = len(sr.client.Neighbours())
	ad, err := sr.client.Advertise()
	if err != nil {
		return fmt.Errorf("secure aggregation: %w", err)
	}
	p.mu.Lock()
	if len(p.secure) >= 8 {
		clear(p.secure) // rounds long gone
	}
	p.secure[string(session(t))] = sr
	p.mu.Unlock()
	_, err = client.SecAggAdvertise(ctx, &pb.SecAggAdvertiseRequest{Round: secAggRound(t),
		Advertisement: protocol.AdvertisementToWire(ad, p.cfg.Cert.Certificate[0])})
	return err
}

// secureStep runs one later phase of secure aggregation.
func (p *Participant) secureStep(ctx context.Context, client pb.ParticipantServiceClient, t *pb.Task) error {
	p.mu.Lock()
	sr := p.secure[string(session(t))]
	p.mu.Unlock()
	if sr == nil {
		return fmt.Errorf("secure aggregation %v for round %s, which this participant did not train", t.GetKind(), session(t))
	}
	st := t.GetSecagg()
	switch t.GetKind() {
	case pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS:
		var ads []secagg.Advertisement
		for _, a := range st.GetAdvertisements() {
			from := int(a.GetFrom())
			if from >= len(sr.cohort) {
				return fmt.Errorf("secure aggregation: advertisement from client %d of %d", from, len(sr.cohort))
			}
			sr.certs[from] = a.GetCertificate()
			ads = append(ads, protocol.AdvertisementFromWire(a, sr.cohort[from]))
		}
		shares, err := sr.client.ShareKeys(ads)
		if err != nil {
			return fmt.Errorf("secure aggregation: %w", err)
		}
		reqs, err := protocol.SplitShareKeys(secAggRound(t), protocol.SharesToWire(shares), p.secAggPartBytes())
		if err != nil {
			return fmt.Errorf("secure aggregation: %w", err)
		}
		for _, req := range reqs {
			if _, err := client.SecAggShareKeys(ctx, req); err != nil {
				return err
			}
		}
		return nil
	case pb.TaskKind_TASK_KIND_SECAGG_MASKED_INPUT:
		y, err := sr.client.MaskedInput(protocol.SharesFromWire(st.GetShares()), ints(st.GetSurvivors()))
		if err != nil {
			return fmt.Errorf("secure aggregation: %w", err)
		}
		hdr := &pb.UpdateHeader{JobId: t.GetJobId(), Round: t.GetRound(), Attempt: t.GetAttempt(), BaseModelDigest: t.GetBaseModelDigest(),
			NumParams: uint64(len(y)), Masked: true}
		return UploadMasked(ctx, client, hdr, y)
	case pb.TaskKind_TASK_KIND_SECAGG_UNMASK:
		p.mu.Lock()
		delete(p.secure, string(session(t)))
		p.mu.Unlock()
		if n := len(st.GetSurvivors()); n < sr.minSurvivors {
			return fmt.Errorf("secure aggregation: a sum of %d inputs carries less noise than the job's differential privacy promises (it needs %d): not revealing shares", n, sr.minSurvivors)
		}
		reveals, err := sr.client.Unmask(ints(st.GetSurvivors()))
		if err != nil {
			return fmt.Errorf("secure aggregation: %w", err)
		}
		reqs, err := protocol.SplitUnmask(secAggRound(t), protocol.RevealsToWire(reveals), p.secAggPartBytes())
		if err != nil {
			return fmt.Errorf("secure aggregation: %w", err)
		}
		for _, req := range reqs {
			if _, err := client.SecAggUnmask(ctx, req); err != nil {
				return err
			}
		}
		return nil
	}
	return errors.New("not a secure aggregation task")
}

// secAggPartBytes is the most bytes of one secure-aggregation request.
func (p *Participant) secAggPartBytes() int {
	if p.cfg.SecAggPartBytes > 0 {
		return p.cfg.SecAggPartBytes
	}
	return protocol.SecAggPartBytes
}

// secAggItems is the most advertisements or shares a task of m's round
// attempt may bring this participant, in all its parts: its neighbours in
// that round (0 if it does not take part in it).
func (p *Participant) secAggItems(m *pb.Task) int {
	if m.GetSecagg() == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if sr := p.secure[string(session(m))]; sr != nil {
		return sr.neighbours
	}
	return 0
}

// UploadMasked sends a secure-aggregation masked input: the header (with
// Masked set), then the values as uint32 little endian in chunks.
func UploadMasked(ctx context.Context, client pb.ParticipantServiceClient, hdr *pb.UpdateHeader, y []uint32) error {
	data := make([]byte, 0, 4*len(y))
	for _, v := range y {
		data = binary.LittleEndian.AppendUint32(data, v)
	}
	return uploadBytes(ctx, client, hdr, data)
}

func ints(v []uint32) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}
