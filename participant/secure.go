package participant

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"

	"github.com/accord-fl/accord/aggregate/dp"
	"github.com/accord-fl/accord/aggregate/secagg"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// SecureIdentity is who a participant is in secure aggregation: the name
// its neighbours know it by, the certificate and key it signs its
// advertisements with, and the federation's CA its neighbours'
// certificates must chain to.
type SecureIdentity struct {
	Name string
	Cert tls.Certificate
	CA   *x509.CertPool
	// PartBytes is the most bytes of one secure-aggregation request
	// (0: protocol.SecAggPartBytes).
	PartBytes int
}

// SecureRound is a participant's side of secure aggregation in one round
// attempt: the protocol client, the cohort it was told, and the
// certificates its neighbours advertised with. NewSecureRound starts it;
// Step answers each later phase's task, and forgets the round's secrets
// at unmasking. It is not safe for concurrent use: a participant does one
// task of a round attempt at a time.
type SecureRound struct {
	id     SecureIdentity
	round  *pb.SecAggRound
	client *secagg.Client
	cohort []string
	certs  map[int][]byte
	// neighbours is the client's degree on the round's graph.
	neighbours int
	// minSurvivors, under distributed DP, is the fewest inputs a sum may
	// hold and still carry the noise promised: fewer, and the participant
	// does not reveal its shares.
	minSurvivors int
}

// SecureSession names the round attempt a task belongs to: the key of a
// participant's state for it, and what advertisements are signed for.
func SecureSession(t *pb.Task) string {
	return string(protocol.SecAggSession(t.GetJobId(), t.GetRound(), t.GetAttempt(), t.GetSecagg().GetGroup()))
}

// CheckSecureTask checks that secure-aggregation task t is for the
// participant named name, with vectors of params values and the weight.
func CheckSecureTask(t *pb.Task, name string, params int) error {
	st := t.GetSecagg()
	n := int(st.GetN())
	switch {
	case len(st.GetCohort()) != n || int(st.GetIndex()) >= n:
		return fmt.Errorf("secure aggregation task: cohort of %d names for %d clients, index %d", len(st.GetCohort()), n, st.GetIndex())
	case st.GetCohort()[st.GetIndex()] != name:
		return fmt.Errorf("secure aggregation task: client %d is %q, not this participant (%q)", st.GetIndex(), st.GetCohort()[st.GetIndex()], name)
	case st.GetLength() != uint64(params)+1:
		return fmt.Errorf("secure aggregation task: vectors of %d values; this update has %d (+1 weight)", st.GetLength(), params)
	case !(st.GetWeightScale() >= 1):
		return fmt.Errorf("secure aggregation task: weight scale %v", st.GetWeightScale())
	}
	return nil
}

// SecureInput is the client input of a secure round without distributed
// DP: x = (w·Δ, w·clip) quantised for the round's cohort, where the weight
// w = min(1, examples/scale)·work travels masked as the last entry, scaled
// by clip so that it uses the quantiser's whole range. examples is the
// declared count: the job's weight scale bounds what it can buy; work is
// the share of the task's epochs done.
func SecureInput(st *pb.SecAggTask, delta []float32, examples uint64, work float64, rng *mrand.Rand) ([]uint32, error) {
	quant, err := secagg.NewQuantizer(st.GetClip(), int(st.GetN()))
	if err != nil {
		return nil, fmt.Errorf("secure aggregation task: %w", err)
	}
	w := min(1, float64(examples)/st.GetWeightScale()) * work
	x := make([]float32, len(delta)+1)
	for i, d := range delta {
		x[i] = float32(w * float64(d))
	}
	x[len(delta)] = float32(w * st.GetClip())
	return quant.Quantize(x, rng), nil
}

// NewSecureRound makes the client of task t's round attempt for input (a
// checked task's: CheckSecureTask) and its key pairs. minSurvivors is
// the smallest sum it will help unmask (0: any the protocol allows).
func NewSecureRound(t *pb.Task, id SecureIdentity, input []uint32, minSurvivors int) (*SecureRound, error) {
	st := t.GetSecagg()
	params := secagg.Params{N: int(st.GetN()), K: int(st.GetDegree()), T: int(st.GetThreshold()), Length: int(st.GetLength()),
		GraphSeed: st.GetGraphSeed(), Session: protocol.SecAggSession(t.GetJobId(), t.GetRound(), t.GetAttempt(), st.GetGroup())}
	s := &SecureRound{id: id, cohort: st.GetCohort(), certs: map[int][]byte{}, minSurvivors: minSurvivors,
		round: &pb.SecAggRound{JobId: t.GetJobId(), Round: t.GetRound(), Attempt: t.GetAttempt()}}
	if s.id.PartBytes <= 0 {
		s.id.PartBytes = protocol.SecAggPartBytes
	}
	sign := func(msg []byte) ([]byte, error) { return pki.Sign(id.Cert, msg) }
	verify := func(from int, identity string, msg, sig []byte) bool {
		if from < 0 || from >= len(s.cohort) || s.cohort[from] != identity {
			return false
		}
		want := pki.Identity{Role: pki.RoleParticipant, Name: identity}
		return pki.VerifySigned(id.CA, s.certs[from], want, msg, sig) == nil
	}
	var err error
	if s.client, err = secagg.NewClient(params, int(st.GetIndex()), id.Name, input, sign, verify); err != nil {
		return nil, fmt.Errorf("secure aggregation: %w", err)
	}
	s.neighbours = len(s.client.Neighbours())
	return s, nil
}

// Neighbours is the client's degree on the round's graph: the most
// advertisements or shares a task may bring it.
func (s *SecureRound) Neighbours() int { return s.neighbours }

// Advertise sends the client's signed public keys (phase 0).
func (s *SecureRound) Advertise(ctx context.Context, client pb.ParticipantServiceClient) error {
	ad, err := s.client.Advertise()
	if err != nil {
		return fmt.Errorf("secure aggregation: %w", err)
	}
	_, err = client.SecAggAdvertise(ctx, &pb.SecAggAdvertiseRequest{Round: s.round,
		Advertisement: protocol.AdvertisementToWire(ad, s.id.Cert.Certificate[0])})
	return err
}

// Step does one later phase's task t: it checks the neighbours'
// advertisements and sends them their shares, masks and uploads the
// input, or reveals the shares that unmask the survivors' sum. Requests
// too large for one message go in parts. After unmasking, revealed or
// refused, the round's secrets are gone and every Step fails.
func (s *SecureRound) Step(ctx context.Context, client pb.ParticipantServiceClient, t *pb.Task) error {
	if s.client == nil {
		return errors.New("secure aggregation: this round attempt was unmasked; its secrets are gone")
	}
	st := t.GetSecagg()
	switch t.GetKind() {
	case pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS:
		var ads []secagg.Advertisement
		for _, a := range st.GetAdvertisements() {
			from := int(a.GetFrom())
			if from >= len(s.cohort) {
				return fmt.Errorf("secure aggregation: advertisement from client %d of %d", from, len(s.cohort))
			}
			s.certs[from] = a.GetCertificate()
			ads = append(ads, protocol.AdvertisementFromWire(a, s.cohort[from]))
		}
		shares, err := s.client.ShareKeys(ads)
		if err != nil {
			return fmt.Errorf("secure aggregation: %w", err)
		}
		reqs, err := protocol.SplitShareKeys(s.round, protocol.SharesToWire(shares), s.id.PartBytes)
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
		y, err := s.client.MaskedInput(protocol.SharesFromWire(st.GetShares()), ints(st.GetSurvivors()))
		if err != nil {
			return fmt.Errorf("secure aggregation: %w", err)
		}
		hdr := &pb.UpdateHeader{JobId: t.GetJobId(), Round: t.GetRound(), Attempt: t.GetAttempt(), BaseModelDigest: t.GetBaseModelDigest(),
			NumParams: uint64(len(y)), Masked: true}
		return UploadMasked(ctx, client, hdr, y)
	case pb.TaskKind_TASK_KIND_SECAGG_UNMASK:
		c := s.client
		s.client = nil
		if n := len(st.GetSurvivors()); n < s.minSurvivors {
			return fmt.Errorf("secure aggregation: a sum of %d inputs carries less noise than the job's differential privacy promises (it needs %d): not revealing shares", n, s.minSurvivors)
		}
		reveals, err := c.Unmask(ints(st.GetSurvivors()))
		if err != nil {
			return fmt.Errorf("secure aggregation: %w", err)
		}
		reqs, err := protocol.SplitUnmask(s.round, protocol.RevealsToWire(reveals), s.id.PartBytes)
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
	return fmt.Errorf("secure aggregation: %v is not a task of a later phase", t.GetKind())
}

// startSecure weights, clips and quantises a trained update (or, under
// distributed DP, clips, scales and noises it), makes this round's protocol
// client and advertises its keys (phase 0). work is the share of the
// task's epochs done; it scales the update's weight.
func (p *Participant) startSecure(ctx context.Context, client pb.ParticipantServiceClient, t *pb.Task, delta []float32, work float64) error {
	if err := CheckSecureTask(t, p.name, len(delta)); err != nil {
		return err
	}
	st := t.GetSecagg()
	n := int(st.GetN())
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
		var err error
		if q, err = SecureInput(st, delta, p.examples(), work, rng); err != nil {
			return err
		}
	}
	sr, err := NewSecureRound(t, SecureIdentity{Name: p.name, Cert: p.cfg.Cert, CA: p.cfg.CA, PartBytes: p.cfg.SecAggPartBytes}, q, minSurvivors)
	if err != nil {
		return err
	}
	p.secure.Put(t, sr)
	return sr.Advertise(ctx, client)
}

// SecureRounds are a participant's secure rounds in progress, by round
// attempt: at most a few, the older forgotten when a new one starts. It
// is safe for concurrent use.
type SecureRounds struct {
	mu     sync.Mutex
	keep   int
	rounds map[string]*SecureRound
}

// NewSecureRounds keeps up to keep rounds in progress.
func NewSecureRounds(keep int) *SecureRounds {
	return &SecureRounds{keep: keep, rounds: map[string]*SecureRound{}}
}

// Put keeps the round of task t, forgetting every other if keep are held
// (rounds long gone).
func (s *SecureRounds) Put(t *pb.Task, r *SecureRound) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rounds) >= s.keep {
		clear(s.rounds)
	}
	s.rounds[SecureSession(t)] = r
}

// Step runs task t's later phase on its round, forgetting the round at
// unmasking, whether or not it reveals its shares.
func (s *SecureRounds) Step(ctx context.Context, client pb.ParticipantServiceClient, t *pb.Task) error {
	s.mu.Lock()
	r := s.rounds[SecureSession(t)]
	if t.GetKind() == pb.TaskKind_TASK_KIND_SECAGG_UNMASK {
		delete(s.rounds, SecureSession(t))
	}
	s.mu.Unlock()
	if r == nil {
		return fmt.Errorf("secure aggregation %v for round %s, which this participant did not train", t.GetKind(), SecureSession(t))
	}
	return r.Step(ctx, client, t)
}

// Items is the most advertisements or shares a task of m's round attempt
// may bring, in all its parts: the client's neighbours in that round (0 if
// it does not take part in it).
func (s *SecureRounds) Items(m *pb.Task) int {
	if m.GetSecagg() == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.rounds[SecureSession(m)]; r != nil {
		return r.Neighbours()
	}
	return 0
}

// UploadMasked sends a secure-aggregation masked input: the header (with
// Masked set), then the values as uint32 little endian in chunks.
func UploadMasked(ctx context.Context, client pb.ParticipantServiceClient, hdr *pb.UpdateHeader, y []uint32) error {
	return uploadBytes(ctx, client, hdr, protocol.EncodeUint32(y))
}

func ints(v []uint32) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}
