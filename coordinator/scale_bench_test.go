package coordinator_test

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// The scale benchmark's model: the 2NN (mlp:784-200-200-10).
const scaleModel = "mlp:784-200-200-10"

// scaleParams is the model's parameter count (199,210).
var scaleParams = model.MustParseSpec(scaleModel).NumParams()

// BenchmarkScale is issue 16's scale benchmark. Three real accord
// coordinator processes (the binary built from this tree) on loopback,
// and ACCORD_SCALE_PARTICIPANTS (default 1,000) lightweight participants
// in the benchmark's process (coordtest.Light: real gRPC over mutual TLS,
// the task stream, the base model's download, the upload or every phase
// of the SecAgg+ client with its real cryptography, but a precomputed
// update instead of training), participant i connected to coordinator
// i mod 3; followers relay theirs to the leader. Four configurations:
// cohorts of 100 and 1,000 of those connected, plain and SecAgg+ (the
// graph ChooseGraph derives from the job's defaults: dropout 0.1, no
// corrupt clients). Each job wants exactly its cohort and waits for every
// member: max_over_selection 1 (no over-selection), straggler_factor −1
// (no straggler cut), min_participants = the cohort, so each round has
// exactly 100 or 1,000 contributors, which the benchmark checks.
//
// Each configuration gets a fresh cluster and fleet, then runs one
// warm-up round and ACCORD_SCALE_ROUNDS (default 5) measured rounds. It
// reports, per measured round: the round's time from the round records
// (opened → closed, as `accord round list` shows them), the wall time
// between commits as the benchmark saw them (when the next round's
// first task reached a participant, so that watching costs the
// coordinators nothing), the leader process's
// CPU-seconds (utime + stime from /proc/PID/stat), and its peak resident
// set during the job (VmHWM from /proc/PID/status, reset through
// /proc/PID/clear_refs once every participant is connected), next to the
// goals: peak ≤ 4 × the model's bytes + 1 MiB per contributor, and a
// round of 1,000 contributors in ≤ 3 s plain, ≤ 6 s SecAgg+.
//
//	go test -run '^$' -bench Scale -benchtime 1x -timeout 60m ./coordinator/
//
// The participants take turns: ACCORD_SCALE_SLOTS (default 16) do a
// task at once (coordtest.FleetConfig.Slots), as participants that train
// for different times reach the coordinators spread out. With 0, all
// 1,000 download and upload at the same instant: on a 2-core machine the
// coordinators then starve their own Raft heartbeats, the leader steps
// down mid-round, and the round is lost.
//
// ACCORD_SCALE_INPROCESS=1 runs the coordinators in the benchmark's
// process instead (coordtest.NewCluster), so that -cpuprofile sees the
// leader's code: then the CPU and memory figures are the whole process's,
// participants included.
func BenchmarkScale(b *testing.B) {
	if testing.Short() {
		b.Skip("starts 3 coordinator processes and 1,000 participants")
	}
	opts := scaleOptionsFromEnv(b)
	bin := ""
	if !opts.inProcess {
		bin = coordtest.BuildAccord(b)
	}
	var results []scaleResult
	for _, secure := range []bool{false, true} {
		for _, cohort := range []int{100, 1000} {
			if cohort > opts.participants && cohort != 100 {
				continue // the cohort of 100 is all of them already
			}
			cfg := scaleConfig{cohort: min(cohort, opts.participants), secure: secure}
			b.Run(cfg.name(), func(b *testing.B) {
				for range b.N {
					r := runScale(b, bin, opts, cfg)
					r.report(b)
					results = append(results, r)
				}
			})
		}
	}
	printScaleTable(opts, results)
}

// scaleOptions are the benchmark's settings from the environment.
type scaleOptions struct {
	participants, rounds, slots int
	inProcess                   bool
}

func scaleOptionsFromEnv(b *testing.B) scaleOptions {
	o := scaleOptions{participants: 1000, rounds: 5, slots: 16, inProcess: os.Getenv("ACCORD_SCALE_INPROCESS") == "1"}
	for _, v := range []struct {
		env      string
		dst      *int
		smallest int
	}{{"ACCORD_SCALE_PARTICIPANTS", &o.participants, 3}, {"ACCORD_SCALE_ROUNDS", &o.rounds, 1}, {"ACCORD_SCALE_SLOTS", &o.slots, 0}} {
		if s := os.Getenv(v.env); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < v.smallest {
				b.Fatalf("%s=%q: want a count of at least %d", v.env, s, v.smallest)
			}
			*v.dst = n
		}
	}
	return o
}

// scaleConfig is one configuration: a cohort size, plain or SecAgg+.
type scaleConfig struct {
	cohort int
	secure bool
}

func (c scaleConfig) mode() string {
	if c.secure {
		return state.ModeSecAggPlus
	}
	return "plain"
}

// name is the sub-benchmark's name ('+' would need escaping in -bench).
func (c scaleConfig) name() string {
	return fmt.Sprintf("%s/cohort=%d", strings.ReplaceAll(c.mode(), "+", "plus"), c.cohort)
}

// spec is the job: the 2NN, every cohort member waited for (no
// over-selection, no straggler cut), no evaluation, rounds rounds.
func (c scaleConfig) spec(rounds int) state.JobSpec {
	s := state.DefaultJobSpec()
	s.Name, s.Model = "scale-"+strings.ReplaceAll(c.name(), "/", "-"), scaleModel
	s.Rounds, s.TargetAccuracy, s.EvaluateFraction = uint32(rounds), 0, 0
	s.ParticipantsPerRound, s.MinParticipants = uint32(c.cohort), uint32(c.cohort)
	s.MaxOverSelection, s.StragglerFactor = 1, -1
	s.RoundDeadline = state.Duration(2 * time.Minute)
	if c.secure {
		s.SecureAggregation = state.SecureAggregation{Mode: state.ModeSecAggPlus, PhaseDeadline: state.Duration(time.Minute)}
	}
	return s
}

// roundGoal is the round time the issue asks for at 1,000 contributors.
func (c scaleConfig) roundGoal() time.Duration {
	if c.secure {
		return 6 * time.Second
	}
	return 3 * time.Second
}

// memoryGoal is the leader's peak memory the issue allows: 4 × the
// model's bytes + 1 MiB per contributor.
func (c scaleConfig) memoryGoal() int64 { return 4*int64(scaleParams)*4 + int64(c.cohort)<<20 }

// roundGoalMet says whether a mean round time meets the round-time goal,
// which the issue sets for 1,000 contributors only ("—" otherwise).
func (c scaleConfig) roundGoalMet(mean float64) string {
	if c.cohort != 1000 {
		return "—"
	}
	return met(mean <= c.roundGoal().Seconds())
}

// scaleCluster is the three coordinators: real processes, or in the
// benchmark's process.
type scaleCluster interface {
	addrs() []string
	ca() *pki.CA
	admin(i int) pb.AdminServiceClient
	leader() int
	name(i int) string
	// pid is the process whose CPU time and memory coordinator i's are.
	pid(i int) int
}

type processCluster struct{ *coordtest.Processes }

func (p processCluster) addrs() []string                   { return p.Addrs() }
func (p processCluster) ca() *pki.CA                       { return p.CA }
func (p processCluster) admin(i int) pb.AdminServiceClient { return p.Admin(i) }
func (p processCluster) leader() int                       { return p.Leader(time.Minute) }
func (p processCluster) name(i int) string                 { return p.Name(i) }
func (p processCluster) pid(i int) int                     { return p.Pid(i) }

type inProcessCluster struct {
	*coordtest.Cluster
	admins []pb.AdminServiceClient
}

func (c inProcessCluster) addrs() []string                   { return c.Addrs() }
func (c inProcessCluster) ca() *pki.CA                       { return c.CA }
func (c inProcessCluster) admin(i int) pb.AdminServiceClient { return c.admins[i] }
func (c inProcessCluster) leader() int                       { return c.Index(c.Leader(time.Minute)) }
func (c inProcessCluster) name(i int) string                 { return c.Cfg(i).Name }
func (c inProcessCluster) pid(int) int                       { return os.Getpid() }

func newScaleCluster(b *testing.B, bin string) scaleCluster {
	if bin != "" {
		return processCluster{coordtest.StartProcesses(b, bin, 3)}
	}
	// A coordinator's own timings (Raft's, the leader's tick), not the
	// test kit's short ones.
	tc := coordtest.NewCluster(b, 3, func(cfg *coordinator.Config) {
		d := coordinator.DefaultConfig()
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = d.HeartbeatTimeout, d.ElectionTimeout, d.LeaderLeaseTimeout
		cfg.CommitTimeout, cfg.Tick = d.CommitTimeout, d.Tick
	})
	c := inProcessCluster{Cluster: tc}
	for i := range 3 {
		c.admins = append(c.admins, tc.Admin(i, "ops"))
	}
	return c
}

// scaleResult is one configuration's measurement.
type scaleResult struct {
	cfg                 scaleConfig
	opts                scaleOptions
	leader              string
	k, t                int     // SecAgg+'s graph degree and threshold
	rounds              int     // measured
	mean, max           float64 // seconds, open → closed in the records
	wall                float64 // seconds a round, commit to commit as seen
	cpu                 float64 // the leader's CPU-seconds a round
	rssBefore, peak     int64   // bytes
	peakSinceStart      bool    // the peak could not be reset before the job
	aborted, late, done int64
}

// runScale measures one configuration on a fresh cluster and fleet.
func runScale(b *testing.B, bin string, opts scaleOptions, cfg scaleConfig) scaleResult {
	ctx := b.Context()
	cl := newScaleCluster(b, bin)
	leader := cl.leader()
	fleet := coordtest.StartFleet(b, coordtest.FleetConfig{N: opts.participants, Addrs: cl.addrs(), CA: cl.ca(),
		Update: coordtest.NewUpdate(scaleDelta(), 600), Slots: opts.slots})
	defer fleet.Stop()
	waitConnectedWithin(b, cl.admin(leader), opts.participants, 2*time.Minute)

	res := scaleResult{cfg: cfg, opts: opts, leader: cl.name(leader), rounds: opts.rounds}
	if cfg.secure {
		res.k, res.t, _ = cfg.spec(0).SecureAggregation.Graph(cfg.cohort)
	}
	pid := cl.pid(leader)
	before, err := coordtest.MemoryOf(pid)
	if err != nil {
		b.Fatal(err)
	}
	res.rssBefore = before.RSS
	if err := coordtest.ResetPeakRSS(pid); err != nil {
		b.Logf("%v: the peak reported is the process's since it started", err)
		res.peakSinceStart = true
	}
	// One warm-up round, the rounds measured, and one more whose first
	// task marks the last measured round's commit.
	resp, err := cl.admin(leader).SubmitJob(ctx, &pb.SubmitJobRequest{Spec: cfg.spec(opts.rounds + 2).ToProto()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if b.Failed() {
			b.Log(scaleDiagnosis(cl.admin(leader), fleet, resp.JobId))
			if pc, ok := cl.(processCluster); ok {
				for i := range 3 {
					b.Logf("%s's log, last lines:\n%s", pc.Name(i), pc.Tail(i, 15))
				}
			}
		}
	})
	// Round r+1's first task marks round r's commit.
	t0, err := fleet.WaitRound(ctx, 2, 3*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	cpu0, err := coordtest.CPUTime(pid)
	if err != nil {
		b.Fatal(err)
	}
	t1 := t0
	for r := 3; r <= opts.rounds+2; r++ {
		if t1, err = fleet.WaitRound(ctx, uint32(r), 2*time.Minute); err != nil {
			b.Fatal(err)
		}
	}
	res.wall = t1.Sub(t0).Seconds() / float64(opts.rounds)
	cpu1, err := coordtest.CPUTime(pid)
	if err != nil {
		b.Fatal(err)
	}
	res.cpu = (cpu1 - cpu0).Seconds() / float64(opts.rounds)
	after, err := coordtest.MemoryOf(pid)
	if err != nil {
		b.Fatal(err)
	}
	res.peak = after.Peak
	var failed int64
	var last error
	res.done, res.late, failed, last = fleet.Stats()
	if failed > 0 {
		b.Fatalf("%d participant tasks failed; the last: %v", failed, last)
	}
	if l := cl.leader(); l != leader {
		b.Fatalf("leadership moved from %s to %s during the job", cl.name(leader), cl.name(l))
	}
	res.readRecords(b, cl.admin(leader), resp.JobId)
	return res
}

// readRecords reads the measured rounds' times from the job's round
// records and checks that each had the whole cohort as contributors.
func (r *scaleResult) readRecords(b *testing.B, admin pb.AdminServiceClient, jobID string) {
	page, err := admin.ListRounds(b.Context(), &pb.ListRoundsRequest{JobId: jobID, IncludeAborted: true, PageSize: 1000})
	if err != nil {
		b.Fatal(err)
	}
	var secs []float64
	for _, rec := range page.Rounds {
		switch {
		case rec.Status == pb.RoundStatus_ROUND_STATUS_ABORTED:
			r.aborted++
		case rec.Status != pb.RoundStatus_ROUND_STATUS_COMMITTED || rec.Number < 2 || int(rec.Number) > r.rounds+1:
		case len(rec.Contributors) != r.cfg.cohort:
			b.Fatalf("round %d committed with %d contributors; want the cohort, %d (%s)", rec.Number, len(rec.Contributors), r.cfg.cohort, rec.Reason)
		default:
			secs = append(secs, float64(rec.ClosedUnixMs-rec.OpenedUnixMs)/1000)
		}
	}
	if len(secs) != r.rounds {
		b.Fatalf("%d measured rounds in the records; want %d", len(secs), r.rounds)
	}
	for _, s := range secs {
		r.mean += s / float64(len(secs))
	}
	r.max = slices.Max(secs)
}

// report prints the configuration's table and reports its metrics.
func (r scaleResult) report(b *testing.B) {
	b.ReportMetric(r.mean, "s/round")
	b.ReportMetric(r.max, "max-s/round")
	b.ReportMetric(r.wall, "wall-s/round")
	b.ReportMetric(r.cpu, "leader-CPU-s/round")
	b.ReportMetric(float64(r.peak)/(1<<20), "leader-peak-MiB")
	var s strings.Builder
	graph := ""
	if r.cfg.secure {
		graph = fmt.Sprintf("; graph degree %d, threshold %d", r.k, r.t)
	}
	where := "3 coordinator processes; the leader's process"
	if r.opts.inProcess {
		where = "3 coordinators in the benchmark's process; CPU and memory are the whole process's, participants included"
	}
	fmt.Fprintf(&s, "== %s: cohort %d of %d connected%s (%s, %s)\n", r.cfg.mode(), r.cfg.cohort, r.opts.participants, graph, where, r.leader)
	fmt.Fprintf(&s, "  rounds measured          %d (after 1 warm-up; %d aborted attempts)\n", r.rounds, r.aborted)
	fmt.Fprintf(&s, "  round, open → closed     mean %.2f s, max %.2f s (round records)\n", r.mean, r.max)
	fmt.Fprintf(&s, "  round, commit to commit  %.2f s (wall, as the benchmark saw them)\n", r.wall)
	fmt.Fprintf(&s, "  leader CPU per round     %.2f CPU-s\n", r.cpu)
	since := "during the job"
	if r.peakSinceStart {
		since = "since the process started"
	}
	fmt.Fprintf(&s, "  leader peak RSS          %.0f MiB %s (RSS before the job %.0f MiB)\n", mib(r.peak), since, mib(r.rssBefore))
	fmt.Fprintf(&s, "  memory goal              ≤ %.0f MiB (4 × %d × 4 B + 1 MiB × %d): %s\n", mib(r.cfg.memoryGoal()), scaleParams, r.cfg.cohort, met(r.peak <= r.cfg.memoryGoal()))
	fmt.Fprintf(&s, "  round-time goal          ≤ %v at 1,000 contributors, mean: %s\n", r.cfg.roundGoal(), r.cfg.roundGoalMet(r.mean))
	fmt.Print(s.String())
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// printScaleTable prints every configuration measured in one table.
func printScaleTable(opts scaleOptions, results []scaleResult) {
	if len(results) == 0 {
		return
	}
	fmt.Printf("\n== scale: %d participants connected to 3 coordinators, the 2NN (%d parameters)\n", opts.participants, scaleParams)
	fmt.Printf("%-18s %6s %8s %8s %8s %10s %9s %9s %-6s %7s %-6s\n", "config", "rounds", "mean s", "max s", "wall s", "CPU-s/rnd", "peak MiB", "goal MiB", "memory", "goal s", "time")
	for _, r := range results {
		fmt.Printf("%-18s %6d %8.2f %8.2f %8.2f %10.2f %9.0f %9.0f %-6s %7.0f %-6s\n", r.cfg.mode()+"/"+strconv.Itoa(r.cfg.cohort), r.rounds,
			r.mean, r.max, r.wall, r.cpu, mib(r.peak), mib(r.cfg.memoryGoal()), met(r.peak <= r.cfg.memoryGoal()),
			r.cfg.roundGoal().Seconds(), r.cfg.roundGoalMet(r.mean))
	}
}

// scaleDelta is the precomputed update: small, so that its norm is far
// below the job's bound.
func scaleDelta() []float32 {
	d := make([]float32, scaleParams)
	for i := range d {
		d[i] = 1e-4
	}
	return d
}

// scaleDiagnosis says where a job that did not commit stands: the
// participants' tasks and the job's attempts.
func scaleDiagnosis(admin pb.AdminServiceClient, fleet *coordtest.Fleet, jobID string) string {
	var s strings.Builder
	done, late, failed, last := fleet.Stats()
	fmt.Fprintf(&s, "participants: %d tasks done, %d late, %d failed (last: %v); task stream: %v\n", done, late, failed, last, fleet.Err())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	page, err := admin.ListRounds(ctx, &pb.ListRoundsRequest{JobId: jobID, IncludeAborted: true, PageSize: 1000})
	if err != nil {
		fmt.Fprintf(&s, "rounds: %v\n", err)
		return s.String()
	}
	for _, r := range page.Rounds {
		fmt.Fprintf(&s, "round %d/%d %v: cohort %d, contributors %d, responders %d, silent %d, late %d, open %.1f s: %s\n", r.Number, r.Attempt, r.Status,
			len(r.Cohort), len(r.Contributors), len(r.Responders), len(r.Silent), len(r.Late), float64(cmp.Or(r.ClosedUnixMs, time.Now().UnixMilli())-r.OpenedUnixMs)/1000, r.Reason)
	}
	return s.String()
}
