package scenarios

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/accord-fl/accord/adminauth"
	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// ProcessNetwork is how RunProcesses models the network between regions.
type ProcessNetwork string

// The ways RunProcesses can model the network.
const (
	// ProcessNetworkAuto uses network namespaces when they work (root, the
	// ip and tc commands, and netem if a link has latency, jitter or
	// loss), and proxies otherwise.
	ProcessNetworkAuto ProcessNetwork = ""
	// ProcessNetworkNamespaces puts each region in its own Linux network
	// namespace, joined by veth pairs that tc shapes: every link is
	// modelled, the coordinators' own included, and partitions cut them
	// all. The run fails if they cannot be made.
	ProcessNetworkNamespaces ProcessNetwork = "namespaces"
	// ProcessNetworkProxies shapes only the participants' links, through a
	// netsim proxy per region and coordinator in the runner; the
	// coordinators reach each other on plain loopback, and a partition
	// cuts only the participants' links.
	ProcessNetworkProxies ProcessNetwork = "proxies"
	// processNetworkNone is plain loopback: the scenario models no network
	// and cuts no region.
	processNetworkNone ProcessNetwork = "none"
)

var (
	// ErrNoNamespaces is RunProcesses's error when ProcessNetworkNamespaces
	// is asked for and network namespaces cannot be made here.
	ErrNoNamespaces = errors.New("network namespaces unavailable")
	// errNoLeader: no coordinator process became leader.
	errNoLeader = errors.New("no coordinator became leader")
)

// ProcessOptions configure RunProcesses.
type ProcessOptions struct {
	// Binary is the accord executable the coordinators and participants
	// run (the CLI passes its own, os.Executable).
	Binary string
	// Progress receives one line per committed round and what the runner
	// does (nil: none).
	Progress io.Writer
	// WorkDir holds the certificates, the participants' data files, the
	// coordinators' data folders and every process's log, logs/NAME.log
	// (empty: a temporary folder, removed afterwards).
	WorkDir string
	// NoNetwork runs without the scenario's network model: no link is
	// shaped (partitions still cut).
	NoNetwork bool
	// Network chooses how links are modelled (ProcessNetworkAuto: the
	// best that works here).
	Network ProcessNetwork
	// LogLevel is the processes' log level (empty: warn).
	LogLevel string
	// Details, if set, receives how the run was made, beyond the Report.
	Details *ProcessDetails
}

// ProcessDetails is how RunProcesses ran a scenario.
type ProcessDetails struct {
	// Network is how the network was modelled: namespaces, proxies or
	// none; NetworkNote says what that covers, and why the runner fell
	// back to proxies if it did.
	Network     ProcessNetwork
	NetworkNote string
	// InvariantsChecked are the invariants the runner checked (it sees the
	// coordinators through their admin API only).
	InvariantsChecked []string
}

// nsBasePort+10k, +1 and +2 are coordinator k's gRPC, Raft and gossip
// ports in a network namespace (each region has its own address, so ports
// only need to differ within a region).
const nsBasePort = 7700

// RunProcesses runs a scenario as real processes: accord coordinator and
// accord participant processes of opts.Binary, which the runner
// provisions (a federation CA, certificates, a gossip key, each
// participant's data as CSV files holding exactly the examples the
// in-process runner gives it), watches and reports on as Run does, so that
// the same scenario and seed reach the same models. The network model is
// Linux network namespaces shaped by tc when they can be made here, and
// otherwise proxies on the participants' links only (opts.Network).
//
// The timeline acts on the processes: kill_coordinator is SIGKILL,
// restart_coordinator starts the same command line on the same data
// folder, partition cuts the region's routes (or its proxied links).
// Events of the participants (dropout, hostile, straggler) and the faults
// become participant fault flags, decided ahead by the same draws as in
// process. Events of phase open and upload fire when the runner first
// sees their round open (it polls every 50ms), not at the exact moment the
// first participant trains or uploads as in process; commit events fire
// when the runner sees the commit, as in process.
func RunProcesses(ctx context.Context, sc *Scenario, opts ProcessOptions) (*Report, error) {
	start := time.Now()
	if err := checkProcesses(sc); err != nil {
		return nil, err
	}
	if opts.Binary == "" {
		return nil, errors.New("RunProcesses: no accord binary to run")
	}
	var progress io.Writer = io.Discard
	if opts.Progress != nil {
		progress = &lockedWriter{w: opts.Progress}
	}
	say := func(format string, args ...any) { fmt.Fprintf(progress, format+"\n", args...) }
	if t := time.Duration(sc.Timeout); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	work := opts.WorkDir
	if work == "" {
		dir, err := os.MkdirTemp("", "accord-processes-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		work = dir
	}
	work, err := filepath.Abs(work)
	if err != nil {
		return nil, err
	}
	logLevel := opts.LogLevel
	if logLevel == "" {
		logLevel = "warn"
	}
	for _, d := range []string{"logs", "data", "pki"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o700); err != nil {
			return nil, err
		}
	}

	shards, test, err := split(ctx, sc)
	if err != nil {
		return nil, err
	}
	regionTests := regionTestSets(sc, shards, test)
	fed, err := newProcessPKI(filepath.Join(work, "pki"), sc.Name)
	if err != nil {
		return nil, err
	}

	// The network: every region named, and the unnamed one if a
	// coordinator or a group has no region.
	linkModel := sc.network(sc.Job.Seed)
	if opts.NoNetwork {
		linkModel = (&Scenario{}).network(sc.Job.Seed)
	}
	regions := sc.regions()
	if slices.ContainsFunc(sc.Coordinators, func(c CoordinatorSpec) bool { return c.Region == "" }) ||
		slices.ContainsFunc(sc.Participants.Groups, func(g GroupSpec) bool { return g.Region == "" }) {
		regions = append(regions, "")
	}
	netw, err := setUpProcessNetwork(ctx, sc, opts, regions, linkModel)
	if err != nil {
		return nil, err
	}
	defer netw.close()
	say("scenario %s: real processes; network: %s (%s)", sc.Name, netw.mode, netw.note)
	if opts.Details != nil {
		*opts.Details = ProcessDetails{Network: netw.mode, NetworkNote: netw.note, InvariantsChecked: processInvariants}
	}

	// Coordinators, then the operator's connections (one per coordinator,
	// each reached from inside the coordinator's region when regions are
	// namespaces), then participants once a coordinator leads.
	pr := &processRun{sc: sc, work: work, binary: opts.Binary, logLevel: logLevel, fed: fed, net: netw}
	defer pr.stop()
	cl, grpcAddrs, err := pr.startCoordinators(say)
	if err != nil {
		return nil, err
	}
	adminCert, err := fed.ca.Issue(pki.Identity{Role: pki.RoleAdmin, Name: "operator", Organization: sc.Coordinators[0].Organization})
	if err != nil {
		return nil, err
	}
	admin, err := dialProcessAdmins(grpcAddrs, adminCert, fed.ca, netw.dial)
	if err != nil {
		return nil, err
	}
	defer admin.close()
	for _, cc := range admin.conns {
		cl.clients = append(cl.clients, pb.NewAdminServiceClient(cc))
	}
	admin.leader = cl.leaderIndex
	if err := waitProcessLeader(ctx, cl, 2*time.Minute); err != nil {
		return nil, err
	}
	parts, err := pr.startParticipants(shards, linkModel, grpcAddrs)
	if err != nil {
		return nil, err
	}
	if err := waitProcessesConnected(ctx, admin, parts, sc.ParticipantCount()); err != nil {
		return nil, err
	}
	regionOf, err := participantRegions(ctx, admin)
	if err != nil {
		return nil, err
	}
	tl := newTimeline(sc, cl, start, say)
	finished := false
	defer func() {
		if !finished { // a run that fails stops the timeline's goroutines too
			tl.finish()
		}
	}()
	resp, err := submitWithRetry(ctx, admin, sc.Job.ToProto())
	if err != nil {
		return nil, err
	}
	cl.mu.Lock()
	cl.jobID = resp.JobId
	cl.mu.Unlock()
	say("scenario %s: %d coordinator processes, %d participant processes, job %s (%s)", sc.Name, len(sc.Coordinators), len(parts), resp.JobId, sc.Job.Model)

	rep := &Report{Scenario: sc.Name, JobID: resp.JobId, TargetAccuracy: sc.Job.TargetAccuracy, Participants: sc.ParticipantCount(),
		Kernel: model.Backend(), ModelDigests: map[string]map[uint32]string{}, Seed: sc.Job.Seed,
		NetworkModel: sc.Network != nil && !opts.NoNetwork && netw.mode != processNetworkNone}
	spec := model.MustParseSpec(sc.Job.Model)
	seen := map[uint32]bool{}           // committed rounds reported
	opened := map[uint32]bool{}         // rounds whose open and upload events fired
	seenAborted := map[[2]uint32]bool{} // aborted (round, attempt) reported
	exitsSeen := map[string]bool{}
	var job *pb.Job
	var pageToken string
	for {
		for _, p := range pr.all {
			if ok, err := p.exited(); ok && !exitsSeen[p.name] {
				exitsSeen[p.name] = true
				say("%s exited (%v); its log: %s", p.name, err, p.log)
			}
		}
		job, err = admin.GetJob(ctx, &pb.GetJobRequest{JobId: resp.JobId})
		if err != nil {
			return nil, fmt.Errorf("watching job: %w", err)
		}
		rounds, err := admin.ListRounds(ctx, &pb.ListRoundsRequest{JobId: resp.JobId, IncludeAborted: true, PageToken: pageToken})
		if err != nil {
			return nil, fmt.Errorf("watching rounds: %w", err)
		}
		if rounds.NextPageToken != "" {
			pageToken = rounds.NextPageToken
		}
		for _, r := range rounds.Rounds {
			if !opened[r.Number] {
				// The runner sees a round open only when it polls: the
				// open and upload events of the round fire now.
				opened[r.Number] = true
				tl.fireRound(r.Number, PhaseOpen)
				tl.fireRound(r.Number, PhaseUpload)
			}
			if r.Status == pb.RoundStatus_ROUND_STATUS_ABORTED && !seenAborted[[2]uint32{r.Number, r.Attempt}] {
				seenAborted[[2]uint32{r.Number, r.Attempt}] = true
				rep.RoundsAborted++
				rep.Aborted = append(rep.Aborted, AbortReport{Round: r.Number, Attempt: r.Attempt, Reason: r.Reason, SecondsSinceStart: time.Since(start).Seconds()})
				say("round %3d attempt %d aborted: %s", r.Number, r.Attempt, r.Reason)
			}
			if r.Status != pb.RoundStatus_ROUND_STATUS_COMMITTED || seen[r.Number] {
				continue
			}
			seen[r.Number] = true
			rr, err := evaluateRound(ctx, admin, resp.JobId, r, spec, test, regionTests, regionOf)
			if err != nil {
				return nil, err
			}
			rr.SecondsSinceStart = time.Since(start).Seconds()
			rep.Rounds = append(rep.Rounds, rr)
			rep.BestAccuracy = max(rep.BestAccuracy, rr.Accuracy)
			marker := ""
			if rep.TargetReachedAtRound == nil && sc.Job.TargetAccuracy > 0 && rr.Accuracy >= sc.Job.TargetAccuracy {
				n := r.Number
				rep.TargetReachedAtRound, rep.TargetReachedAtSeconds = &n, &rr.SecondsSinceStart
				marker = "  ← target reached"
			}
			privacy := ""
			if r.Epsilon > 0 {
				privacy = fmt.Sprintf("  ε %.3f", r.Epsilon)
			}
			say("round %3d  cohort %3d  contributors %3d  test accuracy %6.2f%%  loss %.4f  round %.2fs%s%s",
				r.Number, len(r.Cohort), len(r.Contributors), 100*rr.Accuracy, rr.Loss, rr.Seconds, privacy, marker)
			tl.commit(r.Number)
		}
		if job.Status != pb.JobStatus_JOB_STATUS_RUNNING {
			if uint32(len(rep.Rounds)) >= job.CommittedRounds {
				break
			}
			if rounds.NextPageToken != "" {
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("scenario %s did not finish: %w", sc.Name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	rep.Events, finished = tl.finish(), true
	rep.JobStatus, rep.JobReason, rep.RoundsCommitted = job.Status.String(), job.Reason, job.CommittedRounds
	if n := len(rep.Rounds); n > 0 {
		rep.FinalAccuracy = rep.Rounds[n-1].Accuracy
		var sum float64
		for _, r := range rep.Rounds {
			sum += r.Seconds
		}
		rep.MeanRoundSeconds = sum / float64(n)
	}
	digests, invErr := cl.checkInvariants(ctx, resp.JobId, 30*time.Second)
	if invErr != nil {
		rep.InvariantsError = invErr.Error()
	} else {
		rep.InvariantsOK = true
	}
	rep.ModelDigests = digests
	if rep.NetworkModel {
		rep.LinkBytes = netw.bytes()
	}
	rep.WallSeconds = time.Since(start).Seconds()
	say("job %s: %s after %d rounds (%s); final test accuracy %.2f%%, wall time %.1fs, invariants ok: %v (checked: %s)",
		resp.JobId, rep.JobStatus, rep.RoundsCommitted, rep.JobReason, 100*rep.FinalAccuracy, rep.WallSeconds, rep.InvariantsOK,
		strings.Join(processInvariants, "; "))
	return rep, nil
}

// evaluateRound pulls a committed round's model and evaluates it on the
// whole test set and on each region's, as Run does.
func evaluateRound(ctx context.Context, admin *admins, jobID string, r *pb.Round, spec model.Spec, test *model.Dataset,
	regionTests map[string]*model.Dataset, regionOf map[string]string) (RoundReport, error) {
	params, err := pull(ctx, admin, jobID, r.Number, r.ModelDigest)
	if err != nil {
		return RoundReport{}, err
	}
	m := &model.Model{Spec: spec, Params: params}
	met, err := model.Evaluate(ctx, m, test)
	if err != nil {
		return RoundReport{}, err
	}
	rr := RoundReport{Round: r.Number, Attempt: r.Attempt, Cohort: len(r.Cohort), Contributors: len(r.Contributors),
		Accuracy: met.Accuracy, Loss: met.Loss, Seconds: float64(r.ClosedUnixMs-r.OpenedUnixMs) / 1000,
		ModelDigest: r.ModelDigest, Epsilon: r.Epsilon, ContributorsByRegion: map[string]int{}}
	for _, id := range r.Contributors {
		rr.ContributorsByRegion[regionOf[id]]++
	}
	if len(regionTests) > 1 {
		rr.AccuracyByRegion = map[string]float64{}
		for region, ds := range regionTests {
			rm, err := model.Evaluate(ctx, m, ds)
			if err != nil {
				return RoundReport{}, err
			}
			rr.AccuracyByRegion[region] = rm.Accuracy
		}
	}
	return rr, nil
}

// checkProcesses refuses what the processes runner cannot do, naming the
// field.
func checkProcesses(sc *Scenario) error {
	for i, f := range sc.Faults {
		if f.Kind == FaultKillAfterShareKeys && int(sc.Job.ParticipantsPerRound) < sc.ParticipantCount() {
			return fieldErrorf(fmt.Sprintf("faults[%d]", i),
				"%s under --processes needs every participant in every cohort (participants_per_round ≥ %d): the processes cannot count who shares keys first; run in-process", f.Kind, sc.ParticipantCount())
		}
	}
	for i, r := range sc.Regions {
		if r.availability() != nil {
			return fieldErrorf(fmt.Sprintf("regions[%d].working_hours", i), "working hours are not supported by --processes yet; run in-process")
		}
	}
	return nil
}

// dialProcessAdmins is dialAdmins through dial.
func dialProcessAdmins(addrs []string, cert tls.Certificate, ca *pki.CA, dial func(context.Context, string) (net.Conn, error)) (*admins, error) {
	a := &admins{}
	for _, addr := range addrs {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(cert, ca.Pool()))),
			grpc.WithChainUnaryInterceptor(adminauth.UnaryClientInterceptor(cert)), grpc.WithContextDialer(dial))
		if err != nil {
			a.close()
			return nil, err
		}
		a.conns = append(a.conns, cc)
	}
	a.AdminServiceClient = pb.NewAdminServiceClient(a)
	return a, nil
}

// waitProcessLeader waits until a coordinator leads; if none does, the
// error holds the end of each coordinator's log.
func waitProcessLeader(ctx context.Context, cl *procCluster, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for cl.leader() == "" {
		if time.Now().After(deadline) || ctx.Err() != nil {
			var logs []string
			for _, p := range cl.coords {
				state := "running"
				if ok, err := p.exited(); ok {
					state = fmt.Sprintf("exited: %v", err)
				}
				logs = append(logs, fmt.Sprintf("%s (%s), %s:\n%s", p.name, state, p.log, p.tail(5)))
			}
			return fmt.Errorf("%w within %s:\n%s", errNoLeader, timeout, strings.Join(logs, "\n"))
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// waitProcessesConnected waits until want participants hold a task
// stream, failing at once if a participant process ends.
func waitProcessesConnected(ctx context.Context, admin *admins, parts []*proc, want int) error {
	for {
		for _, p := range parts {
			if ok, err := p.exited(); ok {
				return fmt.Errorf("participant %s exited before the job (%v):\n%s", p.name, err, p.tail(5))
			}
		}
		n := 0
		if ps, err := admin.ListParticipants(ctx, &pb.ListParticipantsRequest{}); err == nil {
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
			return fmt.Errorf("waiting for %d participants to connect (%d did): %w", want, n, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// RunProcessesAndCompare is RunAndCompare with real processes: with
// compare: without_network and a network model, it runs the scenario a
// second time without the model (a work folder of its own) and puts that
// run's figures in the report's WithoutNetwork.
func RunProcessesAndCompare(ctx context.Context, sc *Scenario, opts ProcessOptions) (*Report, error) {
	rep, err := RunProcesses(ctx, sc, opts)
	if err != nil || sc.Compare != CompareWithoutNetwork || sc.Network == nil || opts.NoNetwork {
		return rep, err
	}
	if opts.Progress != nil {
		fmt.Fprintf(opts.Progress, "scenario %s: again without the network model, to compare\n", sc.Name)
	}
	opts.NoNetwork, opts.Details = true, nil
	if opts.WorkDir != "" {
		opts.WorkDir = filepath.Join(opts.WorkDir, "without-network")
	}
	base, err := RunProcesses(ctx, sc, opts)
	if err != nil {
		return nil, fmt.Errorf("the run without the network model: %w", err)
	}
	rep.WithoutNetwork = &Baseline{RoundsCommitted: base.RoundsCommitted, FinalAccuracy: base.FinalAccuracy, MeanRoundSeconds: base.MeanRoundSeconds,
		TargetReachedAtRound: base.TargetReachedAtRound, TargetReachedAtSeconds: base.TargetReachedAtSeconds, WallSeconds: base.WallSeconds}
	if !base.InvariantsOK {
		rep.InvariantsOK, rep.InvariantsError = false, "the run without the network model: "+base.InvariantsError
	}
	return rep, nil
}
