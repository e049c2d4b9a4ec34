package scenarios

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/participant"
	"github.com/accord-fl/accord/participant/data"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// Report is what a run prints with --json.
type Report struct {
	Scenario             string  `json:"scenario"`
	JobID                string  `json:"job_id"`
	JobStatus            string  `json:"job_status"`
	JobReason            string  `json:"job_reason"`
	RoundsCommitted      uint32  `json:"rounds_committed"`
	RoundsAborted        int     `json:"rounds_aborted"`
	FinalAccuracy        float64 `json:"final_accuracy"`
	BestAccuracy         float64 `json:"best_accuracy"`
	TargetAccuracy       float64 `json:"target_accuracy"`
	TargetReachedAtRound *uint32 `json:"target_reached_at_round"`
	// TargetReachedAtSeconds is the wall time from the start to the
	// round that reached the target.
	TargetReachedAtSeconds *float64 `json:"target_reached_at_seconds"`
	// MeanRoundSeconds is the mean of the committed rounds' durations.
	MeanRoundSeconds float64                      `json:"mean_round_seconds"`
	WallSeconds      float64                      `json:"wall_seconds"`
	ModelDigests     map[string]map[uint32]string `json:"model_digests"`
	InvariantsOK     bool                         `json:"invariants_ok"`
	InvariantsError  string                       `json:"invariants_error,omitempty"`
	Participants     int                          `json:"participants"`
	Kernel           string                       `json:"kernel"`
	Seed             uint64                       `json:"seed"`
	// NetworkModel is whether the run modelled the network.
	NetworkModel bool `json:"network_model"`
	// Runner is "in-process" or "processes"; Network how links were
	// shaped ("netsim", "namespaces", "proxies" or "none") and
	// NetworkNote what that left out.
	Runner      string `json:"runner"`
	Network     string `json:"network"`
	NetworkNote string `json:"network_note,omitempty"`
	// InvariantsChecked names what InvariantsOK covers.
	InvariantsChecked []string      `json:"invariants_checked"`
	Rounds            []RoundReport `json:"rounds"`
	// Aborted lists the aborted round attempts.
	Aborted []AbortReport `json:"aborted,omitempty"`
	// Attempts lists every round attempt, committed or aborted, in the
	// order they closed; AttemptsAtDeadline counts those that waited for
	// their deadline.
	Attempts           []AttemptReport `json:"attempts"`
	AttemptsAtDeadline int             `json:"attempts_at_deadline"`
	// Events are the timeline's events and what each did.
	Events []EventReport `json:"events,omitempty"`
	// LinkBytes is the bytes carried on each region link, "from→to"
	// (with a network model).
	LinkBytes map[string]uint64 `json:"link_bytes,omitempty"`
	// WithoutNetwork is the same scenario on plain loopback (compare:
	// without_network).
	WithoutNetwork *Baseline `json:"without_network,omitempty"`
	// Serve is what accord serve answered (the serve section).
	Serve *ServeReport `json:"serve,omitempty"`
}

// AbortReport is one aborted round attempt: why, its cohort's size, how
// many had answered, and how long it ran.
type AbortReport struct {
	Round             uint32  `json:"round"`
	Attempt           uint32  `json:"attempt"`
	Reason            string  `json:"reason"`
	Cohort            int     `json:"cohort"`
	Responders        int     `json:"responders"`
	Seconds           float64 `json:"seconds"`
	SecondsSinceStart float64 `json:"seconds_since_start"`
}

// AttemptReport is one round attempt, committed or aborted.
type AttemptReport struct {
	Round   uint32 `json:"round"`
	Attempt uint32 `json:"attempt"`
	// Status is "committed" or "aborted"; Reason why it closed when it
	// did (the updates wanted arrived, stragglers, the deadline…) or why
	// it aborted.
	Status string `json:"status"`
	Reason string `json:"reason"`
	// Cohort is how many were selected, Responders how many answered
	// (a committed attempt's contributors), Silent who had sent nothing
	// when it closed (as first listed: a late update moves its sender
	// out of it later).
	Cohort     int      `json:"cohort"`
	Responders int      `json:"responders"`
	Silent     []string `json:"silent,omitempty"`
	// Seconds is from opening to closing, DeadlineSeconds from opening to
	// the deadline; AtDeadline whether it closed only at its deadline.
	Seconds         float64 `json:"seconds"`
	DeadlineSeconds float64 `json:"deadline_seconds"`
	AtDeadline      bool    `json:"at_deadline"`
}

// attemptReport is r as the report lists it.
func attemptReport(r *pb.Round) AttemptReport {
	status := "committed"
	if r.Status == pb.RoundStatus_ROUND_STATUS_ABORTED {
		status = "aborted"
	}
	return AttemptReport{Round: r.Number, Attempt: r.Attempt, Status: status, Reason: r.Reason, Cohort: len(r.Cohort),
		Responders: len(r.Responders), Silent: r.Silent, Seconds: float64(r.ClosedUnixMs-r.OpenedUnixMs) / 1000,
		DeadlineSeconds: float64(r.DeadlineUnixMs-r.OpenedUnixMs) / 1000, AtDeadline: r.ClosedUnixMs >= r.DeadlineUnixMs}
}

// inProcessScale multiplies Raft's timeouts for coordinators run in the
// scenario's own process (inProcessTimings).
const inProcessScale = 3

// inProcessTimings gives coordinators that share their process with the
// scenario's simulated participants Raft's timeouts tripled (heartbeat and
// election 3 s, lease 1.5 s). The participants' training keeps every core
// busy, and on a loaded two-core machine Raft's own goroutines then waited
// past the 500 ms lease: the leader stepped down every few rounds (the
// FedAvg CNN run lost 13 attempts of 20 rounds to leader changes, each
// discarding the cohort's training). Coordinators in their own processes
// (--processes, deployments) keep Raft's defaults; a scenario that names
// raft_profile gets that profile.
func inProcessTimings(cfg *coordinator.Config) {
	cfg.HeartbeatTimeout *= inProcessScale
	cfg.ElectionTimeout *= inProcessScale
	cfg.LeaderLeaseTimeout *= inProcessScale
}

// RoundReport is one committed round.
type RoundReport struct {
	Round             uint32   `json:"round"`
	Attempt           uint32   `json:"attempt"`
	Cohort            int      `json:"cohort"`
	Contributors      int      `json:"contributors"`
	Accuracy          float64  `json:"accuracy"`
	Loss              float64  `json:"loss"`
	FederatedAccuracy *float64 `json:"federated_accuracy,omitempty"`
	Seconds           float64  `json:"seconds"`
	// SecondsSincePrevious is from the previous round's commit to this
	// one's (the first: from its opening), failed attempts included.
	SecondsSincePrevious float64 `json:"seconds_since_previous"`
	ModelDigest          string  `json:"model_digest"`
	SecondsSinceStart    float64 `json:"seconds_since_start"`
	// Epsilon is the job's differential-privacy ε after the round (jobs
	// with dp).
	Epsilon float64 `json:"epsilon,omitempty"`
	// ContributorsByRegion counts the contributors per region;
	// AccuracyByRegion is the accuracy on each region's own test data
	// (scenarios with several regions).
	ContributorsByRegion map[string]int `json:"contributors_by_region"`
	// SimulatedTime is the round's time on the job's simulated clock.
	SimulatedTime    string             `json:"simulated_time,omitempty"`
	AccuracyByRegion map[string]float64 `json:"accuracy_by_region,omitempty"`
}

// Options are a run's outputs.
type Options struct {
	// Progress receives one line per committed round (nil: none).
	Progress io.Writer
	// Logger receives the components' logs (nil: discarded).
	Logger *slog.Logger
	// WorkDir holds the coordinators' data (empty: a temporary folder,
	// removed afterwards).
	WorkDir string
	// NoNetwork runs without the scenario's network model (every link
	// loopback), to measure what geography costs.
	NoNetwork bool
	// roundsPage is the page size the runner lists rounds with (0: the
	// coordinator's default); tests make it small.
	roundsPage uint32
}

// participantData is one participant's training and validation examples.
type participantData struct {
	train, validation *model.Dataset
}

// split loads the dataset and splits it per the scenario: training data by
// the partition, and the held-out test set into equal validation shards, so
// that evaluating on every participant is evaluating on the whole test set.
func split(ctx context.Context, sc *Scenario) ([]participantData, *model.Dataset, error) {
	if sc.Participants.Data.Dataset == "synthetic" {
		return splitSynthetic(sc)
	}
	train, test, err := data.LoadMNISTFromModule(ctx)
	if err != nil {
		return nil, nil, err
	}
	n := sc.ParticipantCount()
	d := sc.Participants.Data
	var parts [][]int
	switch {
	case slices.ContainsFunc(sc.Participants.Groups, GroupSpec.skewed):
		parts, err = byCountry(train.Y, sc.Participants.Groups, d.Seed)
	case d.Partition == "iid":
		parts, err = data.IID(train.Len(), n, d.Seed)
	case d.Partition == "pathological":
		parts, err = data.Pathological(train.Y, n, 2, d.Seed)
	case d.Partition == "dirichlet":
		parts, err = data.Dirichlet(train.Y, n, d.Alpha, 10, d.Seed)
	}
	if err != nil {
		return nil, nil, err
	}
	valParts, err := data.IID(test.Len(), n, d.Seed+1)
	if err != nil {
		return nil, nil, err
	}
	out := make([]participantData, n)
	for k := range n {
		idx := parts[k]
		if m := d.ExamplesPerParticipant; m > 0 && len(idx) > m {
			// A random subset: a Dirichlet or shard partition lists a
			// participant's examples label by label, so its first m would
			// keep only the first labels.
			idx = slices.Clone(idx)
			rand.New(rand.NewPCG(d.Seed, uint64(k))).Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
			idx = idx[:m]
		}
		out[k] = participantData{train: train.Subset(idx), validation: test.Subset(valParts[k])}
	}
	return out, test, nil
}

// byCountry deals MNIST's training examples to the participants group by
// group: a group with labels draws from those labels only (the country's
// own label mix), and one with examples gives each institution a size
// drawn log-uniformly in [min, max]; other groups share what is left
// evenly. No example goes to two institutions.
func byCountry(labels []int32, groups []GroupSpec, seed uint64) ([][]int, error) {
	rng := rand.New(rand.NewPCG(seed, 0x636f756e747279)) // "country"
	order := rng.Perm(len(labels))
	used := make([]bool, len(labels))
	take := func(allowed []int32, want int) []int {
		var out []int
		for _, i := range order {
			if len(out) == want {
				break
			}
			if !used[i] && (len(allowed) == 0 || slices.Contains(allowed, labels[i])) {
				used[i] = true
				out = append(out, i)
			}
		}
		return out
	}
	// Shaped groups first, so that the even share of the others is what
	// they leave.
	parts := make([][][]int, len(groups))
	taken, even := 0, 0
	for gi, g := range groups {
		if !g.skewed() {
			even += g.Count
			continue
		}
		for range g.Count {
			want := len(labels) // as many as the labels allow, shared below
			switch len(g.Examples) {
			case 1:
				want = g.Examples[0]
			case 2:
				lo, hi := math.Log(float64(g.Examples[0])), math.Log(float64(g.Examples[1]))
				want = int(math.Round(math.Exp(lo + rng.Float64()*(hi-lo))))
			}
			parts[gi] = append(parts[gi], []int{want})
		}
	}
	// A group with labels but no sizes shares its labels' examples evenly
	// among its institutions.
	for gi, g := range groups {
		if !g.skewed() {
			continue
		}
		for k := range parts[gi] {
			want := parts[gi][k][0]
			if len(g.Examples) == 0 {
				avail := 0
				for i, l := range labels {
					if !used[i] && slices.Contains(g.Labels, l) {
						avail++
					}
				}
				want = avail / (g.Count - k)
			}
			parts[gi][k] = take(g.Labels, want)
			if len(parts[gi][k]) == 0 {
				return nil, fmt.Errorf("participants.groups[%d] (%s): no examples left for institution %d", gi, g.Region, k+1)
			}
			taken += len(parts[gi][k])
		}
	}
	if even > 0 {
		share := (len(labels) - taken) / even
		if share < 1 {
			return nil, fmt.Errorf("participants: the shaped groups take %d of %d examples, leaving none for %d institutions", taken, len(labels), even)
		}
		for gi, g := range groups {
			if g.skewed() {
				continue
			}
			for range g.Count {
				parts[gi] = append(parts[gi], take(nil, share))
			}
		}
	}
	var out [][]int
	for _, p := range parts {
		out = append(out, p...)
	}
	return out, nil
}

// splitSynthetic generates FedProx's Synthetic(α,β): one device per
// participant, each split 90/10 into training and validation data; the
// test set is every device's validation data together.
func splitSynthetic(sc *Scenario) ([]participantData, *model.Dataset, error) {
	d := sc.Participants.Data
	cfg := data.DefaultSynthetic(d.Synthetic.Alpha, d.Synthetic.Beta, d.Seed)
	cfg.Devices = sc.ParticipantCount()
	devices, err := data.Synthetic(cfg)
	if err != nil {
		return nil, nil, err
	}
	out := make([]participantData, len(devices))
	test := &model.Dataset{Features: cfg.Features, Classes: cfg.Classes}
	for k, dev := range devices {
		train, val := data.Split(dev, 0.9, d.Seed+uint64(k))
		if m := d.ExamplesPerParticipant; m > 0 && train.Len() > m {
			train = train.Subset(seq(m))
		}
		out[k] = participantData{train: train, validation: val}
		test.X = append(test.X, val.X...)
		test.Y = append(test.Y, val.Y...)
	}
	return out, test, nil
}

// seq is 0, 1, …, n−1.
func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// Run runs a scenario to the end of its job and reports.
func Run(ctx context.Context, sc *Scenario, opts Options) (*Report, error) {
	start := time.Now()
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var progress io.Writer = io.Discard
	if opts.Progress != nil {
		progress = &lockedWriter{w: opts.Progress} // participants write to it too
	}
	say := func(format string, args ...any) { fmt.Fprintf(progress, format+"\n", args...) }
	if t := time.Duration(sc.Timeout); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	work := opts.WorkDir
	if work == "" {
		dir, err := os.MkdirTemp("", "accord-scenario-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		work = dir
	}

	shards, test, err := split(ctx, sc)
	if err != nil {
		return nil, err
	}
	regionTests := regionTestSets(sc, shards, test)
	ca, err := pki.NewCA(sc.Name)
	if err != nil {
		return nil, err
	}
	network := sc.network(sc.Job.Seed)
	if opts.NoNetwork {
		network = (&Scenario{}).network(sc.Job.Seed)
	}

	// Coordinators: they find each other by gossip and form one Raft cluster.
	gossipKey, err := pki.NewGossipKey()
	if err != nil {
		return nil, err
	}
	cl := &inProcess{net: network, nodes: make([]*coordinator.Coordinator, len(sc.Coordinators))}
	defer cl.shutdown()
	for i, cs := range sc.Coordinators {
		cert, err := ca.Issue(pki.Identity{Role: pki.RoleCoordinator, Name: cs.Name, Organization: cs.Organization})
		if err != nil {
			return nil, err
		}
		cfg := coordinator.DefaultConfig()
		cfg.Name, cfg.DataDir, cfg.Cert, cfg.CA, cfg.Logger = cs.Name, filepath.Join(work, cs.Name), cert, ca.Pool(), logger
		cfg.GRPCAddr, cfg.RaftAddr, cfg.GossipAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		cfg.GossipKey, cfg.Network = gossipKey, network.Endpoint(cs.Region)
		// Loopback gossip probes in a few milliseconds; a modelled WAN
		// needs memberlist's own timings.
		cfg.FastGossip = sc.Network == nil || opts.NoNetwork
		if sc.RaftProfile != "" {
			if err := cfg.SetProfile(sc.RaftProfile); err != nil {
				return nil, err
			}
		} else {
			inProcessTimings(&cfg)
		}
		if len(sc.Coordinators) == 1 {
			cfg.Bootstrap = true
		} else {
			cfg.BootstrapExpect = len(sc.Coordinators)
		}
		for _, c := range cl.running() {
			cfg.Join = append(cfg.Join, c.GossipAddr())
		}
		cfg.Tick = 20 * time.Millisecond
		cl.configs = append(cl.configs, cfg)
		cl.region = append(cl.region, cs.Region)
		if err := cl.start(ctx, i); err != nil {
			return nil, err
		}
	}
	var addrs []string
	for _, c := range cl.running() {
		addrs = append(addrs, c.Addr())
	}
	tl := newTimeline(sc, cl, start, func(format string, args ...any) { say(format, args...) })
	finished := false
	defer func() {
		if !finished { // a run that fails stops the timeline's goroutines too
			tl.finish()
		}
	}()

	// Participants: many train at once, so each matrix product gets one thread.
	model.SetThreads(1)
	pctx, stopParticipants := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopParticipants(); wg.Wait() }()
	drops := newDropper(sc.Faults, sc.Job.Seed, int(sc.Job.ParticipantsPerRound))
	compute := make(chan struct{}, runtime.GOMAXPROCS(0))
	attackers := byzantine(sc)
	if len(attackers) > 0 {
		say("scenario %s: %d Byzantine participants: %s", sc.Name, len(attackers), strings.Join(slices.Sorted(maps.Keys(attackers)), ", "))
	}
	k := 0
	for _, g := range sc.Participants.Groups {
		near := nearest(network, g.Region, sc.Coordinators, addrs)
		for _, name := range g.names() {
			cert, err := ca.Issue(pki.Identity{Role: pki.RoleParticipant, Name: name, Organization: name})
			if err != nil {
				return nil, err
			}
			own, kill := context.WithCancel(pctx)
			events := tl.faultAt(name, g.Region)
			p, err := participant.New(participant.Config{
				Coordinators: near, Cert: cert, CA: ca.Pool(), Region: g.Region, Dataset: sc.Participants.Data.Dataset,
				Availability: sc.region(g.Region).availability(),
				Dial:         network.Endpoint(g.Region).GRPCDialer(),
				Train:        shards[k].train, Validation: shards[k].validation, Logger: logger,
				MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
				BeforeUpload: func(t *pb.Task) error {
					if err := tl.upload(name, g.Region, t); err != nil {
						return err
					}
					return drops.check(name, t)
				},
				Compute: compute,
				FaultAt: func(t *pb.Task) (float64, time.Duration) {
					flip, delay := events(t)
					if f := attackers[name]; f != 0 {
						flip = f
					}
					return flip, delay
				},
				AfterTask: func(t *pb.Task) {
					if drops.kill(t) {
						say("round %3d: %s killed after sharing its keys", t.Round, name)
						kill()
					}
				},
			})
			if err != nil {
				kill()
				return nil, err
			}
			k++
			wg.Go(func() { defer kill(); p.Run(own) })
		}
	}

	// The operator, who reaches whichever coordinator answers.
	adminCert, err := ca.Issue(pki.Identity{Role: pki.RoleAdmin, Name: "operator", Organization: sc.Coordinators[0].Organization})
	if err != nil {
		return nil, err
	}
	admin, err := dialAdmins(addrs, adminCert, ca)
	if err != nil {
		return nil, err
	}
	defer admin.close()
	admin.leader = func() int { return cl.index(cl.leader()) }
	if err := waitConnected(ctx, admin, sc.ParticipantCount()); err != nil {
		return nil, err
	}
	regionOf, err := participantRegions(ctx, admin)
	if err != nil {
		return nil, err
	}
	resp, err := submitWithRetry(ctx, admin, sc.Job.ToProto())
	if err != nil {
		return nil, err
	}
	cl.mu.Lock()
	cl.jobID = resp.JobId
	cl.mu.Unlock()
	say("scenario %s: %d coordinators, %d participants, job %s (%s)", sc.Name, len(sc.Coordinators), sc.ParticipantCount(), resp.JobId, sc.Job.Model)

	rep := &Report{Scenario: sc.Name, JobID: resp.JobId, TargetAccuracy: sc.Job.TargetAccuracy, Participants: sc.ParticipantCount(),
		Kernel: model.Backend(), ModelDigests: map[string]map[uint32]string{}, Seed: sc.Job.Seed, NetworkModel: sc.Network != nil && !opts.NoNetwork,
		Runner: "in-process", Network: "netsim", InvariantsChecked: []string{"DESIGN.md's invariants (coordinator.CheckInvariants) on every running coordinator's state"}}
	sv, err := startServeInProcess(ctx, sc, ca, addrs, resp.JobId, test, start, logger, say)
	if err != nil {
		return nil, err
	}
	defer sv.close()
	w := &watcher{sc: sc, admin: admin, jobID: resp.JobId, tl: tl, start: start, say: say, test: test, regionTests: regionTests,
		regionOf: regionOf, pageSize: opts.roundsPage, poll: 100 * time.Millisecond}
	if _, err := w.run(ctx, rep); err != nil {
		return nil, err
	}
	rep.Events, finished = tl.finish(), true
	nodes := cl.running()
	if invErr := coordinator.WaitInvariants(nodes, 30*time.Second); invErr != nil {
		rep.InvariantsError = invErr.Error()
	} else {
		rep.InvariantsOK = true
	}
	sv.finish(ctx, rep)
	for _, c := range nodes {
		j, err := c.FSM().Job(resp.JobId)
		if err != nil {
			return nil, err
		}
		digests := map[uint32]string{}
		for _, r := range j.Rounds {
			if r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED {
				digests[r.Number] = r.Digest
			}
		}
		rep.ModelDigests[c.Name()] = digests
	}
	if rep.NetworkModel {
		rep.LinkBytes = map[string]uint64{}
		for pair, n := range network.Bytes() {
			rep.LinkBytes[pair[0]+"→"+pair[1]] = n
		}
	}
	rep.WallSeconds = time.Since(start).Seconds()
	say("job %s: %s after %d rounds (%s); final test accuracy %.2f%%, wall time %.1fs, invariants ok: %v",
		resp.JobId, rep.JobStatus, rep.RoundsCommitted, rep.JobReason, 100*rep.FinalAccuracy, rep.WallSeconds, rep.InvariantsOK)
	return rep, nil
}

// regionTestSets is each region's own test data, when the scenario has
// several: MNIST test examples of the labels its institutions hold (every
// label if one of its groups is not skewed), at most 2000; for the
// synthetic dataset, its devices' validation data.
func regionTestSets(sc *Scenario, shards []participantData, test *model.Dataset) map[string]*model.Dataset {
	regions := map[string][]GroupSpec{}
	var order []string
	for _, g := range sc.Participants.Groups {
		if _, ok := regions[g.Region]; !ok {
			order = append(order, g.Region)
		}
		regions[g.Region] = append(regions[g.Region], g)
	}
	if len(order) < 2 {
		return nil
	}
	out := map[string]*model.Dataset{}
	if sc.Participants.Data.Dataset == "synthetic" {
		k := 0
		for _, g := range sc.Participants.Groups {
			ds := out[g.Region]
			if ds == nil {
				ds = &model.Dataset{Features: test.Features, Classes: test.Classes}
				out[g.Region] = ds
			}
			for range g.Count {
				ds.X = append(ds.X, shards[k].validation.X...)
				ds.Y = append(ds.Y, shards[k].validation.Y...)
				k++
			}
		}
		return out
	}
	for _, r := range order {
		var labels []int32
		all := false
		for _, g := range regions[r] {
			all = all || len(g.Labels) == 0
			labels = append(labels, g.Labels...)
		}
		var idx []int
		for i, y := range test.Y {
			if len(idx) == 2000 {
				break
			}
			if all || slices.Contains(labels, y) {
				idx = append(idx, i)
			}
		}
		out[r] = test.Subset(idx)
	}
	return out
}

// participantRegions maps participant IDs (as rounds list them) to regions.
func participantRegions(ctx context.Context, admin *admins) (map[string]string, error) {
	ps, err := admin.ListParticipants(ctx, &pb.ListParticipantsRequest{})
	if err != nil {
		return nil, fmt.Errorf("listing participants: %w", err)
	}
	out := map[string]string{}
	for _, p := range ps.Participants {
		out[p.Id] = p.Region
	}
	return out, nil
}

// waitConnected waits until want participants hold a task stream.
func waitConnected(ctx context.Context, admin *admins, want int) error {
	for {
		ps, err := admin.ListParticipants(ctx, &pb.ListParticipantsRequest{})
		if err == nil {
			n := 0
			for _, p := range ps.Participants {
				if p.Connected {
					n++
				}
			}
			if n >= want {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d participants to connect: %w", want, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func submitWithRetry(ctx context.Context, admin *admins, spec *pb.JobSpec) (*pb.SubmitJobResponse, error) {
	for {
		resp, err := admin.SubmitJob(ctx, &pb.SubmitJobRequest{Spec: spec})
		if err == nil || ctx.Err() != nil {
			return resp, err
		}
		if !errors.Is(err, context.DeadlineExceeded) && !isUnavailable(err) {
			return nil, fmt.Errorf("submitting job: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pull downloads a committed model and checks its digest, from another
// coordinator if a stream breaks.
func pull(ctx context.Context, admin *admins, jobID string, round uint32, digest string) ([]float32, error) {
	var blob []byte
	var err error
	for range 2 * len(admin.conns) {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		blob, _, err = PullModel(actx, admin, jobID, round, false)
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		admin.failStream()
	}
	if err != nil {
		return nil, err
	}
	if got := protocol.Digest(blob); got != digest {
		return nil, fmt.Errorf("round %d model hashes to %s, not %s", round, got, digest)
	}
	return protocol.DecodeFloat32(blob)
}

// PullModel downloads a committed model's bytes and its spec.
func PullModel(ctx context.Context, admin pb.AdminServiceClient, jobID string, round uint32, latest bool) ([]byte, *pb.ModelChunk, error) {
	stream, err := admin.PullModel(ctx, &pb.PullModelRequest{JobId: jobID, Round: round, Latest: latest})
	if err != nil {
		return nil, nil, err
	}
	blob, first, err := protocol.ReceiveModel(stream)
	if err != nil {
		return nil, nil, fmt.Errorf("pulling job %s round %d: %w", jobID, round, err)
	}
	return blob, first, nil
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// dropper makes chosen participants of chosen rounds fail after training,
// or kills them after they shared their keys.
type dropper struct {
	faults   []Fault
	seed     uint64
	perRound int

	mu     sync.Mutex
	killed map[uint32]int // round → participants killed in it
}

func newDropper(faults []Fault, seed uint64, perRound int) *dropper {
	return &dropper{faults: faults, seed: seed, perRound: perRound, killed: map[uint32]int{}}
}

// kill reports whether the participant that just completed t must die: the
// first fraction × participants_per_round of a round's cohort to share
// their keys in its first attempt are killed.
func (d *dropper) kill(t *pb.Task) bool {
	if t.Kind != pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS || t.Attempt != 1 {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range d.faults {
		if f.Kind == FaultKillAfterShareKeys && f.Round == t.Round && d.killed[t.Round] < int(math.Round(f.Fraction*float64(d.perRound))) {
			d.killed[t.Round]++
			return true
		}
	}
	return false
}

func (d *dropper) check(name string, t *pb.Task) error {
	for _, f := range d.faults {
		if f.Kind != FaultDropAfterTraining || f.Round != t.Round {
			continue
		}
		h := rand.New(rand.NewPCG(d.seed^uint64(t.Round), hashName(name)))
		if h.Float64() < f.Fraction {
			return fmt.Errorf("scenario fault: %s drops out of round %d after training", name, t.Round)
		}
	}
	return nil
}

// byzantine returns the scenario's sign-flipping participants of its
// faults (sign_flip), each with its factor.
func byzantine(sc *Scenario) map[string]float64 {
	out := map[string]float64{}
	for _, f := range sc.Faults {
		if f.Kind == FaultSignFlip {
			maps.Copy(out, chooseHostile(sc, f.Fraction, f.Scale, f.Region))
		}
	}
	return out
}

// chooseHostile picks round(fraction × participants) participants, in hash
// order (of the job's seed and the name), from region's if it is set, each
// with its factor (scale, 0: 10).
func chooseHostile(sc *Scenario, fraction, scale float64, region string) map[string]float64 {
	var names []string
	for _, g := range sc.Participants.Groups {
		if region == "" || g.Region == region {
			names = append(names, g.names()...)
		}
	}
	key := func(n string) uint64 { return hashName(n) ^ sc.Job.Seed*0x9e3779b97f4a7c15 }
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(key(a), key(b)) })
	if scale == 0 {
		scale = 10
	}
	out := map[string]float64{}
	for _, n := range names[:min(len(names), int(math.Round(fraction*float64(sc.ParticipantCount()))))] {
		out[n] = scale
	}
	return out
}

func hashName(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

func isUnavailable(err error) bool { return status.Code(err) == codes.Unavailable }
