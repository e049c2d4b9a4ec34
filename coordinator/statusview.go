package coordinator

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/accord-fl/accord/coordinator/state"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// The status page's JSON (/api/status and /api/jobs/{id}). Each view is
// built from this coordinator's own knowledge: its copy of the replicated
// state, its Raft state and its gossip view. Times are unix milliseconds;
// a field that does not apply is null rather than 0, so that the page can
// tell "no accuracy yet" from 0%.

// StatusView is what /api/status answers.
type StatusView struct {
	AnsweredBy   string          `json:"answered_by"`
	Organization string          `json:"organization"`
	GeneratedAt  int64           `json:"generated_at"`
	Raft         RaftView        `json:"raft"`
	Members      []MemberView    `json:"members"`
	Jobs         []JobSummary    `json:"jobs"`
	Participants ParticipantView `json:"participants"`
}

// RaftView is the answering coordinator's Raft state.
type RaftView struct {
	State        string `json:"state"` // Leader, Follower, Candidate, Shutdown
	Leader       string `json:"leader"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	LastIndex    uint64 `json:"last_index"`
	// LastContactMs is how long ago a follower last heard from the leader
	// (null on the leader, and before any contact).
	LastContactMs *int64 `json:"last_contact_ms"`
	// Serving is what the gRPC health service says: this node leads, or
	// heard from a leader recently.
	Serving bool `json:"serving"`
}

// MemberView is one coordinator: its gossip state and its Raft role.
type MemberView struct {
	Name         string `json:"name"`
	Organization string `json:"organization"`
	GRPCAddress  string `json:"grpc_address"`
	RaftAddress  string `json:"raft_address"`
	// RaftRole is leader, voter, nonvoter or none (gossips but is not in
	// the Raft configuration).
	RaftRole string `json:"raft_role"`
	// Gossip is alive, failed, or unknown (in the Raft configuration but
	// never heard of by gossip).
	Gossip string `json:"gossip"`
	Self   bool   `json:"self"`
}

// JobSummary is one job as the overview lists it.
type JobSummary struct {
	ID                   string   `json:"id"`
	Name                 string   `json:"name"`
	Model                string   `json:"model"`
	Dataset              string   `json:"dataset"`
	Status               string   `json:"status"` // RUNNING, SUCCEEDED, …
	Reason               string   `json:"reason,omitempty"`
	Organization         string   `json:"organization,omitempty"`
	SubmittedBy          string   `json:"submitted_by,omitempty"`
	RoundsCommitted      uint32   `json:"rounds_committed"`
	RoundsLimit          uint32   `json:"rounds_limit"`
	Attempts             int      `json:"attempts"`
	Aborted              int      `json:"aborted"`
	OpenRound            uint32   `json:"open_round,omitempty"`
	TargetAccuracy       float64  `json:"target_accuracy,omitempty"`
	TargetReachedAtRound uint32   `json:"target_reached_at_round,omitempty"`
	InitialAccuracy      *float64 `json:"initial_accuracy"`
	LastAccuracy         *float64 `json:"last_accuracy"`
	Epsilon              *float64 `json:"epsilon"`
	MaxEpsilon           float64  `json:"max_epsilon,omitempty"`
	// Progress is how far the job is toward its end, in [0, 1]: see
	// Progress.
	Progress   float64 `json:"progress"`
	CreatedAt  int64   `json:"created_at"`
	FinishedAt int64   `json:"finished_at,omitempty"`
	// Accuracy is the federated accuracy after each committed round (its
	// last sparklinePoints), for the overview's sparklines.
	Accuracy []AccuracyPoint `json:"accuracy"`
}

// AccuracyPoint is a model's federated accuracy (round 0: the initial
// model).
type AccuracyPoint struct {
	Round    uint32  `json:"round"`
	Accuracy float64 `json:"accuracy"`
}

// JobView is what /api/jobs/{id} answers: the summary, the settings that
// explain it, every committed round's accuracy and the latest attempts.
type JobView struct {
	AnsweredBy  string       `json:"answered_by"`
	GeneratedAt int64        `json:"generated_at"`
	Raft        RaftView     `json:"raft"`
	Members     []MemberView `json:"members"`
	Job         JobSummary   `json:"job"`
	Strategy    string       `json:"strategy"`
	Aggregation string       `json:"aggregation"`
	SecureAgg   string       `json:"secure_aggregation"`
	Cohort      uint32       `json:"participants_per_round"`
	MinCohort   uint32       `json:"min_participants"`
	LocalEpochs uint32       `json:"local_epochs"`
	// Accuracy has every committed round that was evaluated.
	Accuracy []AccuracyPoint `json:"accuracy"`
	// Rounds are the latest attempts (at most roundsShown), newest first;
	// TotalAttempts counts them all.
	Rounds        []RoundView `json:"rounds"`
	TotalAttempts int         `json:"total_attempts"`
}

// RoundView is one attempt at a round.
type RoundView struct {
	Number       uint32   `json:"number"`
	Attempt      uint32   `json:"attempt"`
	Status       string   `json:"status"` // OPEN, COMMITTED, ABORTED
	Cohort       int      `json:"cohort"`
	Contributors int      `json:"contributors"`
	Examples     uint64   `json:"examples"`
	Accuracy     *float64 `json:"accuracy"`
	Loss         *float64 `json:"loss"`
	Reporters    uint32   `json:"reporters"`
	Epsilon      *float64 `json:"epsilon"`
	OpenedAt     int64    `json:"opened_at"`
	Deadline     int64    `json:"deadline"`
	ClosedAt     int64    `json:"closed_at,omitempty"`
	DurationMs   int64    `json:"duration_ms,omitempty"`
	Digest       string   `json:"digest,omitempty"`
	Reason       string   `json:"reason,omitempty"`
}

// ParticipantView counts the federation's participants by region.
// Which are connected is the leader's knowledge (a follower only relays
// task streams), so on a follower the connected counts are null and
// ConnectedKnownBy names the leader whose page has them.
type ParticipantView struct {
	Registered       int          `json:"registered"`
	Connected        *int         `json:"connected"`
	ConnectedKnownBy string       `json:"connected_known_by"`
	Regions          []RegionView `json:"regions"`
}

// RegionView is one region's participants.
type RegionView struct {
	Region        string `json:"region"`
	Registered    int    `json:"registered"`
	Connected     *int   `json:"connected"`
	Organizations int    `json:"organizations"`
	Examples      uint64 `json:"examples"`
}

const (
	// sparklinePoints is how many of a job's latest rounds the overview's
	// sparkline shows.
	sparklinePoints = 200
	// roundsShown is how many of a job's latest attempts its page lists.
	roundsShown = 500
)

// Progress is how far a job is toward its end, in [0, 1]: it ends after
// limit committed rounds or once its federated accuracy reaches target
// (if positive), whichever comes first, so progress is the larger of
// committed/limit and the share of the way from the initial model's
// accuracy to the target that the last round has come.
func Progress(committed, limit uint32, initial, last, target float64) float64 {
	p := 0.0
	if limit > 0 {
		p = float64(committed) / float64(limit)
	}
	if target > 0 && last > 0 {
		span := target - initial
		if span <= 0 {
			span = target
			initial = 0
		}
		p = max(p, (last-initial)/span)
	}
	return min(max(p, 0), 1)
}

// shortStatus is a status enum's name without its prefix
// (JOB_STATUS_RUNNING → RUNNING).
func shortStatus(s interface{ String() string }, prefix string) string {
	return strings.TrimPrefix(s.String(), prefix)
}

func ptr[T any](v T) *T { return &v }

// raftView is this coordinator's Raft state now.
func (c *Coordinator) raftView() RaftView {
	_, leader := c.raft.LeaderWithID()
	v := RaftView{
		State: c.raft.State().String(), Leader: string(leader), Term: c.raft.CurrentTerm(),
		CommitIndex: c.raft.CommitIndex(), AppliedIndex: c.raft.AppliedIndex(), LastIndex: c.raft.LastIndex(),
		Serving: c.serving(),
	}
	if c.raft.State() != raft.Leader {
		if t := c.raft.LastContact(); !t.IsZero() {
			v.LastContactMs = ptr(time.Since(t).Milliseconds())
		}
	}
	return v
}

// memberViews are the coordinators gossip and the Raft configuration
// know, by name.
func (c *Coordinator) memberViews() []MemberView {
	roles := map[string]string{}
	addrs := map[string]string{}
	if f := c.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			role := "nonvoter"
			if s.Suffrage == raft.Voter {
				role = "voter"
			}
			roles[string(s.ID)], addrs[string(s.ID)] = role, string(s.Address)
		}
	}
	if _, leader := c.raft.LeaderWithID(); leader != "" {
		roles[string(leader)] = "leader"
	}
	out := []MemberView{}
	seen := map[string]bool{}
	for _, m := range c.memberList() {
		seen[m.Name] = true
		out = append(out, MemberView{Name: m.Name, Organization: m.Meta.Org, GRPCAddress: m.Meta.GRPC, RaftAddress: m.Meta.Raft,
			RaftRole: cmp.Or(roles[m.Name], "none"), Gossip: m.State, Self: m.Name == c.cfg.Name})
	}
	for name, role := range roles {
		if !seen[name] {
			out = append(out, MemberView{Name: name, RaftAddress: addrs[name], RaftRole: role, Gossip: "unknown", Self: name == c.cfg.Name})
		}
	}
	slices.SortFunc(out, func(a, b MemberView) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// jobSummary summarises a job (a copy from the FSM).
func jobSummary(j *state.Job) JobSummary {
	s := JobSummary{
		ID: j.ID, Name: j.Spec.Name, Model: j.Spec.Model, Dataset: j.Spec.Dataset,
		Status: shortStatus(j.Status, "JOB_STATUS_"), Reason: j.Reason, Organization: j.Organization, SubmittedBy: j.SubmittedBy,
		RoundsCommitted: j.CommittedRounds, RoundsLimit: j.Spec.Rounds, Attempts: len(j.Rounds),
		TargetAccuracy: j.Spec.TargetAccuracy, TargetReachedAtRound: j.TargetReachedAtRound,
		CreatedAt: j.CreatedAt, FinishedAt: j.FinishedAt,
	}
	if r := j.OpenRound(); r != nil {
		s.OpenRound = r.Number
	}
	for _, r := range j.Rounds {
		if r.Status == pb.RoundStatus_ROUND_STATUS_ABORTED {
			s.Aborted++
		}
	}
	if j.InitialEval != nil && j.InitialEval.Examples > 0 {
		s.InitialAccuracy = ptr(j.InitialEval.Accuracy())
	}
	points := accuracyPoints(j)
	if n := len(points); n > 0 && points[n-1].Round > 0 {
		s.LastAccuracy = ptr(points[n-1].Accuracy)
	}
	if j.Spec.DP != nil {
		s.Epsilon, s.MaxEpsilon = ptr(j.Epsilon()), j.Spec.DP.MaxEpsilon
	}
	var initial, last float64
	if s.InitialAccuracy != nil {
		initial = *s.InitialAccuracy
	}
	if s.LastAccuracy != nil {
		last = *s.LastAccuracy
	}
	s.Progress = Progress(j.CommittedRounds, j.Spec.Rounds, initial, last, j.Spec.TargetAccuracy)
	if j.Status == pb.JobStatus_JOB_STATUS_SUCCEEDED {
		s.Progress = 1
	}
	s.Accuracy = points[max(0, len(points)-sparklinePoints):]
	return s
}

// accuracyPoints are the evaluated models of a job: the initial one, then
// each committed round's, in order.
func accuracyPoints(j *state.Job) []AccuracyPoint {
	var out []AccuracyPoint
	if j.InitialEval != nil && j.InitialEval.Examples > 0 {
		out = append(out, AccuracyPoint{Round: 0, Accuracy: j.InitialEval.Accuracy()})
	}
	for _, r := range j.Rounds {
		if r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED && r.Eval != nil && r.Eval.Examples > 0 {
			out = append(out, AccuracyPoint{Round: r.Number, Accuracy: r.Eval.Accuracy()})
		}
	}
	return out
}

func roundView(r *state.RoundRecord) RoundView {
	v := RoundView{
		Number: r.Number, Attempt: r.Attempt, Status: shortStatus(r.Status, "ROUND_STATUS_"),
		Cohort: len(r.Cohort), Contributors: len(r.Contributors), Examples: r.Examples,
		OpenedAt: r.OpenedAt, Deadline: r.Deadline, ClosedAt: r.ClosedAt, Digest: r.Digest, Reason: r.Reason,
	}
	if r.ClosedAt > 0 {
		v.DurationMs = r.ClosedAt - r.OpenedAt
	}
	if e := r.Eval; e != nil && e.Examples > 0 {
		v.Accuracy, v.Loss, v.Reporters = ptr(e.Accuracy()), ptr(e.LossSum/float64(e.Examples)), e.Reporters
	}
	if r.Epsilon > 0 {
		v.Epsilon = ptr(r.Epsilon)
	}
	return v
}

// participantView counts participants by region; connected counts only
// where this node leads.
func (c *Coordinator) participantView() ParticipantView {
	leads := c.IsLeader()
	type acc struct {
		RegionView
		orgs      map[string]bool
		connected int
	}
	by := map[string]*acc{}
	v := ParticipantView{Regions: []RegionView{}}
	connected := 0
	for _, p := range c.fsm.Participants() {
		region := cmp.Or(p.Region, "(none)")
		a := by[region]
		if a == nil {
			a = &acc{RegionView: RegionView{Region: region}, orgs: map[string]bool{}}
			by[region] = a
		}
		a.Registered++
		a.Examples += p.Examples
		a.orgs[p.Organization] = true
		if ok, _ := c.sessions.status(p.ID); ok {
			a.connected++
			connected++
		}
		v.Registered++
	}
	if leads {
		v.Connected = &connected
		v.ConnectedKnownBy = c.cfg.Name
	} else {
		_, leader := c.raft.LeaderWithID()
		v.ConnectedKnownBy = string(leader)
	}
	for _, a := range by {
		a.Organizations = len(a.orgs)
		if leads {
			a.Connected = ptr(a.connected)
		}
		v.Regions = append(v.Regions, a.RegionView)
	}
	slices.SortFunc(v.Regions, func(a, b RegionView) int { return strings.Compare(a.Region, b.Region) })
	return v
}

// statusView is /api/status now.
func (c *Coordinator) statusView() StatusView {
	v := StatusView{
		AnsweredBy: c.cfg.Name, Organization: c.org, GeneratedAt: time.Now().UnixMilli(),
		Raft: c.raftView(), Members: c.memberViews(), Participants: c.participantView(), Jobs: []JobSummary{},
	}
	for _, j := range c.fsm.Jobs() {
		v.Jobs = append(v.Jobs, jobSummary(j))
	}
	slices.Reverse(v.Jobs) // newest first
	return v
}

// jobView is /api/jobs/{id} now.
func (c *Coordinator) jobView(id string) (JobView, error) {
	j, err := c.fsm.JobView(id)
	if err != nil {
		return JobView{}, err
	}
	v := JobView{
		AnsweredBy: c.cfg.Name, GeneratedAt: time.Now().UnixMilli(), Raft: c.raftView(), Members: c.memberViews(),
		Job: jobSummary(j), Strategy: cmp.Or(j.Spec.Strategy, "fedavg"), Aggregation: cmp.Or(j.Spec.Aggregation.Rule, "fedavg"),
		SecureAgg: cmp.Or(j.Spec.SecureAggregation.Mode, "none"), Cohort: j.Spec.ParticipantsPerRound,
		MinCohort: j.Spec.MinParticipants, LocalEpochs: j.Spec.LocalEpochs,
		Accuracy: accuracyPoints(j), TotalAttempts: len(j.Rounds), Rounds: []RoundView{},
	}
	v.Job.Accuracy = nil // the full series is in v.Accuracy
	for i := len(j.Rounds) - 1; i >= 0 && len(v.Rounds) < roundsShown; i-- {
		v.Rounds = append(v.Rounds, roundView(j.Rounds[i]))
	}
	if v.Accuracy == nil {
		v.Accuracy = []AccuracyPoint{}
	}
	return v, nil
}
