package schedule

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/accord-fl/accord/aggregate/dp"
	"github.com/accord-fl/accord/aggregate/secagg"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// secPhase is where a round with secure aggregation stands.
type secPhase int

const (
	phaseAdvertise   secPhase = iota // training, then advertising keys
	phaseShareKeys                   // sending encrypted shares
	phaseMaskedInput                 // uploading masked inputs
	phaseUnmask                      // revealing shares
	phaseDone                        // the sum is known
)

func (p secPhase) String() string {
	return [...]string{"advertise-keys", "share-keys", "masked-input", "unmask", "done"}[p]
}

// SecureRound is the leader's side of secure aggregation for one round
// attempt: it feeds the clients' messages to a secagg.Server, closes each
// phase when everyone it waits for has answered, has disconnected, or its
// deadline passes, and says which tasks start the next phase. Like round it
// does no I/O and takes time as an argument. It only ever holds public keys,
// encrypted shares, masked inputs and, at the end, the sum.
type SecureRound struct {
	// group is this group's number in grouped mode, from 1 (0: the cohort
	// is one group); err is why it failed, once it has.
	group         uint32
	err           error
	params        secagg.Params
	server        *secagg.Server
	quant         secagg.Quantizer
	clip          float64
	weightScale   float64
	ca            *x509.CertPool
	ids           []string // client index → participant
	index         map[string]int
	phase         secPhase
	Deadline      time.Time // of the current phase
	phaseStart    time.Time
	phaseDeadline time.Duration
	waiting       map[int]bool                    // clients the current phase still waits for
	receiving     map[int]bool                    // masked inputs admitted, not yet added
	advertised    map[int]*pb.SecAggAdvertisement // relayed to neighbours
	parts         map[int]*protocol.PartSeq       // share-keys or unmask messages coming in parts, by client
	survivors     []int                           // who completed masked input
	sum           []uint32
	// plan, under distributed DP, is how clients clip, scale and noise
	// their updates.
	plan *dp.DistributedPlan
	// minInputs is the fewest masked inputs worth unmasking: the job's
	// min_participants when the cohort is one group. Fewer abort the round
	// before anything is unmasked.
	minInputs int
	// wanted closes the advertise-keys phase (training) once that many
	// advertised, and at least the threshold (0: off); straggler and
	// budget set the straggler rule of every phase but unmasking
	// (stragglersCut; straggler 0: off; budget counts in advertise-keys
	// only, where training happens).
	wanted    int
	straggler float64
	budget    time.Duration
	// members are the clients the current phase started with; arrived
	// the times since phaseStart at which their answers were seen, in
	// order; seen who of them those are.
	members []int
	arrived []time.Duration
	seen    map[int]bool
	// late are clients whose message for a phase came after they had been
	// left out of the protocol when it closed without them.
	late map[int]bool
	// notes say how each phase that closed without every member closed.
	notes []string
}

// newSecureRound prepares secure aggregation of vectors of length values
// (the model's parameters; one more entry carries the weight) over cohort,
// one group of a round (group 0: the whole cohort). Training and
// advertising keys share the round's deadline. With distributed DP (priv
// set) clients add the noise its plan gives them.
func newSecureRound(sa state.SecureAggregation, session []byte, group uint32, cohort []string, length int, weightScale float64, now, trainDeadline time.Time, ca *x509.CertPool, priv *state.DifferentialPrivacy, minInputs int) (*SecureRound, error) {
	k, t, err := sa.Graph(len(cohort))
	if err != nil {
		return nil, err
	}
	minInputs = max(minInputs, t, 2)
	var plan *dp.DistributedPlan
	if priv != nil && priv.Mode == state.DPDistributed {
		// The noise is sized for the smallest sum the round may commit;
		// clients refuse to unmask a smaller one.
		pl, err := dp.PlanDistributed(length, len(cohort), minInputs, priv.Clip, priv.NoiseMultiplier)
		if err != nil {
			return nil, fmt.Errorf("distributed DP: %w", err)
		}
		plan = &pl
	}
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	p := secagg.Params{N: len(cohort), K: k, T: t, Length: length + 1, GraphSeed: binary.LittleEndian.Uint64(seed[:]), Session: session}
	server, err := secagg.NewServer(p)
	if err != nil {
		return nil, err
	}
	quant, err := secagg.NewQuantizer(sa.EffectiveClip(), len(cohort))
	if err != nil {
		return nil, err
	}
	s := &SecureRound{
		group: group, plan: plan, minInputs: minInputs,
		params: p, server: server, quant: quant, clip: sa.EffectiveClip(), weightScale: weightScale, ca: ca,
		ids: slices.Clone(cohort), index: map[string]int{}, Deadline: trainDeadline, phaseDeadline: sa.EffectivePhaseDeadline(), phaseStart: now,
		waiting: map[int]bool{}, receiving: map[int]bool{}, advertised: map[int]*pb.SecAggAdvertisement{},
		parts: map[int]*protocol.PartSeq{}, seen: map[int]bool{}, late: map[int]bool{},
	}
	for i, id := range cohort {
		s.index[id] = i
		s.waiting[i] = true
		s.members = append(s.members, i)
	}
	return s, nil
}

// trainTask is the secure-aggregation part of id's training task.
func (s *SecureRound) trainTask(id string) *pb.SecAggTask {
	return &pb.SecAggTask{
		N: uint32(s.params.N), Degree: uint32(min(s.params.K, s.params.N-1)), Threshold: uint32(s.params.T),
		Length: uint64(s.params.Length), GraphSeed: s.params.GraphSeed, Cohort: s.ids, Index: uint32(s.index[id]),
		Clip: s.clip, WeightScale: s.weightScale, Group: s.group,
	}
}

// expect checks that from may send the current phase's message now and
// returns its client index.
func (s *SecureRound) expect(from string, phase secPhase) (int, error) {
	i, ok := s.index[from]
	switch {
	case !ok:
		return 0, fmt.Errorf("%w: %s is not in the round's cohort", ErrNotInCohort, from)
	case phase < s.phase && !slices.Contains(s.members, i):
		// Left out when that phase closed without it: late, not silent.
		s.late[i] = true
		return 0, fmt.Errorf("%w: the %s phase closed before %s's message came; the protocol went on without it", ErrRoundClosed, phase, from)
	case s.phase != phase:
		return 0, fmt.Errorf("%w: a %s message during the %s phase", ErrWrongPhase, phase, s.phase)
	case !s.waiting[i] || s.receiving[i]:
		return 0, fmt.Errorf("%w: %s message from %s", ErrDuplicate, phase, from)
	}
	return i, nil
}

// secaggErr maps the protocol's refusals to the coordinator's errors.
func secaggErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, secagg.ErrPhase):
		return fmt.Errorf("%w: %w", ErrWrongPhase, err)
	default:
		return fmt.Errorf("%w: %w", state.ErrBadUpdate, err)
	}
}

// Advertise takes a client's signed keys, after checking that its
// certificate is the federation's, names the sender and signed them.
// Its signature was checked by checkAdvertisement.
func (s *SecureRound) Advertise(c CheckedAdvertisement) error {
	from, a := c.from, c.wire
	i, err := s.expect(from, phaseAdvertise)
	if err != nil {
		return err
	}
	if c.group != s {
		return fmt.Errorf("%w: an advertisement checked for another group", state.ErrBadUpdate)
	}
	if err := s.server.ReceiveAdvertisement(c.ad); err != nil {
		return secaggErr(err)
	}
	s.advertised[i] = a
	delete(s.waiting, i)
	return nil
}

// CheckAdvertisement checks that an advertisement names from's client
// index and is signed by from's certificate, issued by the federation. It
// reads only what never changes in a secure round, so the participant
// service runs it without the leader's lock (the X.509 checks are its
// costly part).
func (s *SecureRound) CheckAdvertisement(from string, a *pb.SecAggAdvertisement) (CheckedAdvertisement, error) {
	i, ok := s.index[from]
	switch {
	case !ok:
		return CheckedAdvertisement{}, fmt.Errorf("%w: %s is not in this secure-aggregation group", ErrNotInCohort, from)
	case a.GetFrom() != uint32(i):
		return CheckedAdvertisement{}, fmt.Errorf("%w: advertisement from client %d; %s is client %d", state.ErrBadUpdate, a.GetFrom(), from, i)
	}
	ad := protocol.AdvertisementFromWire(a, from)
	want := pki.Identity{Role: pki.RoleParticipant, Name: from}
	if err := pki.VerifySigned(s.ca, a.GetCertificate(), want, ad.SignedBytes(s.params), ad.Sig); err != nil {
		return CheckedAdvertisement{}, fmt.Errorf("%w: advertisement: %w", state.ErrBadUpdate, err)
	}
	return CheckedAdvertisement{group: s, from: from, wire: a, ad: ad}, nil
}

// CheckedAdvertisement is an advertisement whose signature
// checkAdvertisement verified for one group: the only kind advertise
// takes.
type CheckedAdvertisement struct {
	group *SecureRound
	from  string
	wire  *pb.SecAggAdvertisement
	ad    secagg.Advertisement
}

// ShareKeys takes a client's encrypted shares for its neighbours, or part
// part of parts of them: the client has shared its keys once the last part
// came. It may send at most one share per neighbour, so at most that many
// parts; each part's shares are checked as they come.
func (s *SecureRound) ShareKeys(from string, in []*pb.SecAggShare, part, parts uint32) error {
	i, err := s.expect(from, phaseShareKeys)
	if err != nil {
		return err
	}
	return s.takePart(i, part, parts, len(in), len(s.server.Neighbours(i)), func(last bool) error {
		return s.server.ReceiveSharesPart(i, protocol.SharesFromWire(in), last)
	})
}

// takePart hands client i's part (of parts, carrying items items, of a
// message of at most maxItems in all) to take, once its place in the
// sequence checks; after the last part the client has answered the phase.
// A refused part changes nothing.
func (s *SecureRound) takePart(i int, part, parts uint32, items, maxItems int, take func(last bool) error) error {
	seq := s.parts[i]
	if seq == nil {
		seq = &protocol.PartSeq{}
	}
	last, err := seq.Check(part, parts, items, maxItems)
	if err != nil {
		return fmt.Errorf("%s message from %s: %w", s.phase, s.ids[i], err)
	}
	if err := take(last); err != nil {
		return secaggErr(err)
	}
	seq.Advance(parts)
	if !last {
		s.parts[i] = seq
		return nil
	}
	delete(s.parts, i)
	delete(s.waiting, i)
	return nil
}

// admitMasked reserves from's slot for a masked input of n values.
func (s *SecureRound) admitMasked(from string, n uint64) error {
	i, err := s.expect(from, phaseMaskedInput)
	if err != nil {
		return err
	}
	if n != uint64(s.params.Length) {
		return fmt.Errorf("%w: masked input of %d values; the round's vectors have %d", state.ErrBadUpdate, n, s.params.Length)
	}
	s.receiving[i] = true
	return nil
}

// ReleaseMasked gives back a slot admitMasked reserved.
func (s *SecureRound) ReleaseMasked(from string) { delete(s.receiving, s.index[from]) }

// AddMasked sums an admitted masked input.
func (s *SecureRound) AddMasked(from string, y []uint32) error {
	i := s.index[from]
	delete(s.receiving, i)
	if s.phase != phaseMaskedInput {
		s.late[i] = true
		return fmt.Errorf("%w: the masked-input phase closed while %s's input was arriving", ErrRoundClosed, from)
	}
	if err := s.server.ReceiveMaskedInput(i, y); err != nil {
		return secaggErr(err)
	}
	delete(s.waiting, i)
	return nil
}

// Unmask takes a survivor's revealed shares, or part part of parts of
// them, as shareKeys takes shares: at most one share of itself and of each
// neighbour.
func (s *SecureRound) Unmask(from string, in []*pb.SecAggReveal, part, parts uint32) error {
	i, err := s.expect(from, phaseUnmask)
	if err != nil {
		return err
	}
	reveals, err := protocol.RevealsFromWire(in)
	if err != nil {
		return fmt.Errorf("%w: %w", state.ErrBadUpdate, err)
	}
	return s.takePart(i, part, parts, len(in), len(s.server.Neighbours(i))+1, func(last bool) error {
		return s.server.ReceiveRevealsPart(i, reveals, last)
	})
}

// advance closes the current phase if everyone it waits for answered, the
// rest have disconnected (live says who is connected), it closes early
// (closeEarly: the advertisements wanted arrived, or stragglers held it
// too long) or its deadline passed. It first notes, at now, the answers
// that came since it last looked. It returns the tasks that open the next
// phase, by participant. An error means too few clients survived: the
// round must be aborted, the error says why.
func (s *SecureRound) advance(now time.Time, live func(id string) bool) (pb.TaskKind, map[string]*pb.SecAggTask, error) {
	if !s.closing(now, live) {
		return 0, nil, nil
	}
	return s.closePhase(now)
}

// closePhase closes the current phase at now (advance, once closing said
// it may) and returns the tasks that open the next.
func (s *SecureRound) closePhase(now time.Time) (pb.TaskKind, map[string]*pb.SecAggTask, error) {
	early, why := s.closeEarly(now)
	closing := s.phase
	answered := len(s.members) - len(s.waiting)
	switch {
	case early:
	case len(s.waiting) == 0:
	case now.Before(s.Deadline):
		why = fmt.Sprintf("%s: %d of %d answered, the rest disconnected", closing, answered, len(s.members))
	default:
		why = fmt.Sprintf("%s: %d of %d answered by the phase deadline", closing, answered, len(s.members))
	}
	if why != "" {
		s.notes = append(s.notes, why)
	}
	wrap := func(err error) error {
		if early {
			return fmt.Errorf("secure aggregation, %s phase (closed early: %s): %w", closing, strings.TrimPrefix(why, closing.String()+": "), err)
		}
		return fmt.Errorf("secure aggregation, %s phase: %w", closing, err)
	}
	tasks := map[string]*pb.SecAggTask{}
	var kind pb.TaskKind
	switch s.phase {
	case phaseAdvertise:
		ads, err := s.server.CloseAdvertise()
		if err != nil {
			return 0, nil, wrap(err)
		}
		kind = pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS
		for _, a := range ads {
			t := &pb.SecAggTask{}
			for _, v := range s.server.Neighbours(a.From) {
				if ad, ok := s.advertised[v]; ok {
					t.Advertisements = append(t.Advertisements, ad)
				}
			}
			tasks[s.ids[a.From]] = t
		}
	case phaseShareKeys:
		u2, deliver, err := s.server.CloseShareKeys()
		if err != nil {
			return 0, nil, wrap(err)
		}
		s.advertised = nil
		kind = pb.TaskKind_TASK_KIND_SECAGG_MASKED_INPUT
		for _, u := range u2 {
			tasks[s.ids[u]] = &pb.SecAggTask{Survivors: indexes(u2), Shares: protocol.SharesToWire(deliver[u])}
		}
	case phaseMaskedInput:
		u3, err := s.server.CloseMaskedInput()
		if err != nil {
			return 0, nil, wrap(err)
		}
		if len(u3) < s.minInputs {
			return 0, nil, wrap(fmt.Errorf("%d masked inputs; the job needs at least %d", len(u3), s.minInputs))
		}
		s.survivors = u3
		kind = pb.TaskKind_TASK_KIND_SECAGG_UNMASK
		for _, u := range u3 {
			tasks[s.ids[u]] = &pb.SecAggTask{Survivors: indexes(u3)}
		}
	case phaseUnmask:
		sum, err := s.server.Finish()
		if err != nil {
			return 0, nil, wrap(err)
		}
		s.sum = sum
		s.phase = phaseDone
		s.phaseStart = now
		return 0, nil, nil
	}
	s.phase++
	s.phaseStart = now
	s.Deadline = now.Add(s.phaseDeadline)
	s.receiving = map[int]bool{}
	s.waiting = map[int]bool{}
	s.parts = map[int]*protocol.PartSeq{} // a message still in parts came too late
	s.members, s.arrived, s.seen = nil, nil, map[int]bool{}
	for id := range tasks {
		s.waiting[s.index[id]] = true
		s.members = append(s.members, s.index[id])
	}
	slices.Sort(s.members)
	return kind, tasks, nil
}

// closing reports whether the current phase closes at now: every member
// live answered, it may close early (closeEarly), or its deadline passed;
// but not while a masked input is still arriving before the deadline. It
// first notes, at now, the answers that came since it last looked.
func (s *SecureRound) closing(now time.Time, live func(id string) bool) bool {
	if s.phase == phaseDone || len(s.receiving) > 0 && now.Before(s.Deadline) {
		return false
	}
	s.observe(now)
	if early, _ := s.closeEarly(now); !now.Before(s.Deadline) || early {
		return true
	}
	for i := range s.waiting {
		if live(s.ids[i]) {
			return false
		}
	}
	return true
}

// observe notes, at now, the answers of the current phase that came since
// it last looked.
func (s *SecureRound) observe(now time.Time) {
	for _, i := range s.members {
		if !s.waiting[i] && !s.seen[i] {
			s.seen[i] = true
			s.arrived = append(s.arrived, now.Sub(s.phaseStart))
		}
	}
}

// closeEarly says whether the current phase may close before every live
// member answered, and why: in advertise-keys (training), once the
// advertisements wanted (and at least the threshold) arrived; in any phase
// but unmasking, once stragglers held it longer than the straggler rule
// allows — then it closes with who answered, and the round aborts if that
// is below the threshold.
func (s *SecureRound) closeEarly(now time.Time) (bool, string) {
	answered := len(s.members) - len(s.waiting)
	if answered == len(s.members) {
		return false, ""
	}
	need := max(s.params.T, 2)
	if s.phase <= phaseMaskedInput {
		need = max(need, s.minInputs)
	}
	if s.phase == phaseAdvertise && s.wanted > 0 && answered >= max(s.wanted, need) {
		return true, fmt.Sprintf("%s: %d of %d answered, the %d wanted", s.phase, answered, len(s.members), s.wanted)
	}
	if s.phase >= phaseUnmask {
		return false, ""
	}
	budget := time.Duration(0)
	if s.phase == phaseAdvertise {
		budget = s.budget
	}
	if !stragglersCut(s.arrived, len(s.members), s.straggler, budget, now.Sub(s.phaseStart)) {
		return false, ""
	}
	return true, fmt.Sprintf("%s: %d of %d answered; stragglers cut after %s, %g× the median member's %s", s.phase, answered, len(s.members),
		roundDuration(now.Sub(s.phaseStart)), s.straggler, roundDuration(median(s.arrived, len(s.members))))
}

// answered returns the clients still in the protocol: once masked inputs
// closed, those whose input made the sum; before, the members of the
// current phase that answered it.
func (s *SecureRound) answered() []int {
	if s.phase >= phaseUnmask {
		return s.survivors
	}
	var out []int
	for _, i := range s.members {
		if !s.waiting[i] {
			out = append(out, i)
		}
	}
	return out
}

func indexes(v []int) []uint32 {
	out := make([]uint32, len(v))
	for i, x := range v {
		out[i] = uint32(x)
	}
	return out
}

// mean turns the unmasked sum into the group's mean update Σ w·Δ / Σ w (or,
// under distributed DP, (Σ clip(Δ) + noise) / clients) and returns it with
// the weight Σ w, who contributed and the examples Σ w stands for; an
// error if fewer than minInputs masked inputs made the sum.
func (s *SecureRound) mean(minInputs int) (delta []float32, weight float64, contributors []string, examples uint64, err error) {
	switch {
	case s.phase != phaseDone:
		return nil, 0, nil, 0, fmt.Errorf("%w: secure aggregation has not finished", state.ErrConflict)
	case len(s.survivors) < minInputs:
		return nil, 0, nil, 0, fmt.Errorf("%d masked inputs; the job needs at least %d", len(s.survivors), minInputs)
	}
	for _, u := range s.survivors {
		contributors = append(contributors, s.ids[u])
	}
	slices.Sort(contributors)
	delta = make([]float32, len(s.sum)-1)
	if s.plan != nil {
		// Every input weighs 1 (the last entry, each client's 1, is not
		// trusted: the survivors are known).
		clients := float64(len(s.survivors))
		for i, v := range s.plan.Decode(s.sum[:len(s.sum)-1]) {
			delta[i] = float32(v / clients)
		}
		return delta, clients, contributors, uint64(len(s.survivors)), nil
	}
	vals := s.quant.Dequantize(s.sum, len(s.survivors))
	weight = vals[len(vals)-1] / s.clip
	if !(weight > 0) {
		return nil, 0, nil, 0, fmt.Errorf("secure aggregation: the survivors' weights sum to %v", weight)
	}
	for i, v := range vals[:len(vals)-1] {
		delta[i] = float32(v / weight)
	}
	return delta, weight, contributors, uint64(math.Round(weight * s.weightScale)), nil
}

// dpTask is the differential privacy a participant applies to its update
// in a round (nil without dp); g is its secure-aggregation group (nil in a
// plain round), whose plan says how small a sum the noise is sized for.
func dpTask(d *state.DifferentialPrivacy, g *SecureRound) *pb.DPTask {
	if d == nil {
		return nil
	}
	t := &pb.DPTask{Mode: d.Mode, Clip: d.Clip, NoiseMultiplier: d.NoiseMultiplier}
	if g != nil && g.plan != nil {
		t.MinClients = uint32(g.plan.Threshold)
	}
	return t
}
