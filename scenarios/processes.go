package scenarios

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"

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
	admin, err := dialAdmins(grpcAddrs, adminCert, fed.ca, grpc.WithContextDialer(netw.dial))
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
		NetworkModel: sc.Network != nil && !opts.NoNetwork && netw.mode != processNetworkNone,
		Runner:       "processes", Network: string(netw.mode), NetworkNote: netw.note, InvariantsChecked: processInvariants}
	sv, err := pr.startServe(ctx, grpcAddrs, resp.JobId, test, start, say)
	if err != nil {
		return nil, err
	}
	defer sv.close()
	exitsSeen := map[string]bool{}
	w := &watcher{sc: sc, admin: admin, jobID: resp.JobId, tl: tl, start: start, say: say, test: test, regionTests: regionTests,
		regionOf: regionOf, poll: 50 * time.Millisecond, fireOnSight: true, beforePoll: func() {
			for _, p := range pr.all {
				if ok, err := p.exited(); ok && !exitsSeen[p.name] {
					exitsSeen[p.name] = true
					say("%s exited (%v); its log: %s", p.name, err, p.log)
				}
			}
		}}
	if _, err := w.run(ctx, rep); err != nil {
		return nil, err
	}
	rep.Events, finished = tl.finish(), true
	digests, invErr := cl.checkInvariants(ctx, resp.JobId, 30*time.Second)
	if invErr != nil {
		rep.InvariantsError = invErr.Error()
	} else {
		rep.InvariantsOK = true
	}
	sv.finish(ctx, rep)
	rep.ModelDigests = digests
	if rep.NetworkModel {
		rep.LinkBytes = netw.bytes()
	}
	rep.WallSeconds = time.Since(start).Seconds()
	say("job %s: %s after %d rounds (%s); final test accuracy %.2f%%, wall time %.1fs, invariants ok: %v (checked: %s)",
		resp.JobId, rep.JobStatus, rep.RoundsCommitted, rep.JobReason, 100*rep.FinalAccuracy, rep.WallSeconds, rep.InvariantsOK,
		strings.Join(rep.InvariantsChecked, "; "))
	return rep, nil
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
	return nil
}

// waitProcessLeader waits until a coordinator leads; if none does, or a
// coordinator exits meanwhile (it cannot have been told to), the error
// holds the end of each coordinator's log.
func waitProcessLeader(ctx context.Context, cl *procCluster, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for cl.leader() == "" {
		exited := false
		for _, p := range cl.coords {
			if ok, _ := p.exited(); ok {
				exited = true
			}
		}
		if exited || time.Now().After(deadline) || ctx.Err() != nil {
			var logs []string
			for _, p := range cl.coords {
				state := "running"
				if ok, err := p.exited(); ok {
					state = fmt.Sprintf("exited: %v", err)
				}
				logs = append(logs, fmt.Sprintf("%s (%s), %s:\n%s", p.name, state, p.log, p.tail(5)))
			}
			why := fmt.Sprintf("within %s", timeout)
			if exited {
				why = "before one led: a coordinator exited"
			}
			return fmt.Errorf("%w %s:\n%s", errNoLeader, why, strings.Join(logs, "\n"))
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
	opts.NoNetwork = true
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
