package scenarios

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/accord-fl/accord/internal/freeport"
	"github.com/accord-fl/accord/netsim"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// processRun starts a run's processes and stops them at the end.
type processRun struct {
	sc       *Scenario
	work     string
	binary   string
	logLevel string
	fed      *processPKI
	net      *processNet

	coords, parts, all []*proc
}

// startCoordinators starts a coordinator process for each of the
// scenario's: every one joins the others by gossip, and they form one
// Raft cluster once all have met. It returns them and their gRPC
// addresses.
func (pr *processRun) startCoordinators(say func(string, ...any)) (*procCluster, []string, error) {
	sc := pr.sc
	type addrs struct{ grpc, raft, gossip string }
	caddrs := make([]addrs, len(sc.Coordinators))
	for k, cs := range sc.Coordinators {
		if pr.net.ns != nil {
			host := pr.net.ns.host(cs.Region)
			port := nsBasePort + 10*k
			caddrs[k] = addrs{net.JoinHostPort(host, strconv.Itoa(port)), net.JoinHostPort(host, strconv.Itoa(port+1)), net.JoinHostPort(host, strconv.Itoa(port+2))}
			continue
		}
		var a [3]string
		for i := range a {
			var err error
			if a[i], err = freeport.Loopback(); err != nil {
				return nil, nil, err
			}
		}
		caddrs[k] = addrs{a[0], a[1], a[2]}
	}
	cl := &procCluster{say: say, cuts: map[string]bool{}, cutter: pr.net.cutter}
	var grpcAddrs []string
	for k, cs := range sc.Coordinators {
		grpcAddrs = append(grpcAddrs, caddrs[k].grpc)
		host, _, _ := net.SplitHostPort(caddrs[k].grpc)
		tlsFlags, err := pr.fed.issue(pki.Identity{Role: pki.RoleCoordinator, Name: cs.Name, Organization: cs.Organization}, host, "127.0.0.1", "localhost")
		if err != nil {
			return nil, nil, err
		}
		args := []string{"coordinator", "--name", cs.Name, "--data-dir", filepath.Join(pr.work, "coordinators", cs.Name),
			"--grpc-addr", caddrs[k].grpc, "--raft-addr", caddrs[k].raft, "--gossip-addr", caddrs[k].gossip,
			"--gossip-key", pr.fed.gossipKey, "--log-level", pr.logLevel}
		args = append(args, tlsFlags...)
		if len(sc.Coordinators) == 1 {
			args = append(args, "--bootstrap")
		} else {
			args = append(args, "--bootstrap-expect", strconv.Itoa(len(sc.Coordinators)))
			var join []string
			for j := range sc.Coordinators {
				if j != k {
					join = append(join, caddrs[j].gossip)
				}
			}
			args = append(args, "--join", strings.Join(join, ","))
		}
		if sc.RaftProfile != "" {
			args = append(args, "--raft-profile", sc.RaftProfile)
		}
		p := &proc{name: cs.Name, argv: append(pr.net.command(cs.Region, pr.binary), args...), log: filepath.Join(pr.work, "logs", cs.Name+".log")}
		cl.coords = append(cl.coords, p)
		cl.region = append(cl.region, cs.Region)
		pr.coords = append(pr.coords, p)
		pr.all = append(pr.all, p)
		if err := p.start(); err != nil {
			return nil, nil, err
		}
	}
	return cl, grpcAddrs, nil
}

// startParticipants starts a participant process for each of the
// scenario's: in its region, its data in CSV files, its faults as flags,
// the nearest coordinator first.
func (pr *processRun) startParticipants(shards []participantData, linkModel *netsim.Network, grpcAddrs []string) ([]*proc, error) {
	sc := pr.sc
	faults := newProcessFaults(sc)
	k := 0
	for _, g := range sc.Participants.Groups {
		targets := grpcAddrs
		if pr.net.mode == ProcessNetworkProxies {
			var err error
			if targets, err = pr.net.proxies(g.Region, sc.Coordinators, grpcAddrs); err != nil {
				return nil, err
			}
		}
		near := nearest(linkModel, g.Region, sc.Coordinators, targets)
		for _, name := range g.names() {
			dataFlags, err := participantDataFlags(filepath.Join(pr.work, "data", name), sc.Participants.Data.Dataset, shards[k])
			if err != nil {
				return nil, fmt.Errorf("participant %s: %w", name, err)
			}
			k++
			tlsFlags, err := pr.fed.issue(pki.Identity{Role: pki.RoleParticipant, Name: name, Organization: name})
			if err != nil {
				return nil, err
			}
			args := []string{"participant", "--coordinator", strings.Join(near, ","), "--region", g.Region, "--log-level", pr.logLevel}
			if pr.net.mode == ProcessNetworkProxies {
				// The coordinators' own addresses would bypass the proxies.
				args = append(args, "--pin-coordinators")
			}
			if a := pr.sc.region(g.Region).availability(); a != nil {
				args = append(args, "--working-hours", fmt.Sprintf("%d-%d", a.FromHour, a.ToHour), "--time-zone", a.TimeZone)
			}
			args = append(append(append(args, dataFlags...), tlsFlags...), faults.flags(name, g.Region)...)
			p := &proc{name: name, argv: append(pr.net.command(g.Region, pr.binary), args...), log: filepath.Join(pr.work, "logs", name+".log")}
			pr.parts = append(pr.parts, p)
			pr.all = append(pr.all, p)
			if err := p.start(); err != nil {
				return nil, err
			}
		}
	}
	return pr.parts, nil
}

// stop ends every process: the participants first, then the coordinators.
func (pr *processRun) stop() {
	stopAll(pr.parts, 10*time.Second)
	stopAll(pr.coords, 10*time.Second)
}

// proc is one child process, a coordinator or a participant, with the
// command line that starts it (again).
type proc struct {
	name string
	argv []string // the whole command line: [ip netns exec NS] accord …
	log  string   // its standard output and error go here

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has ended
	err    error         // how it ended
	killed bool          // by the runner
}

// start starts the process; its output is appended to its log.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !closed(p.done) {
		return fmt.Errorf("%s is running", p.name)
	}
	log, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.err, p.killed = cmd, done, nil, false
	go func() {
		err := cmd.Wait()
		log.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// running reports whether the process runs.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !closed(p.done)
}

// exited reports how the process ended, if it ended without the runner
// killing it.
func (p *proc) exited() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || !closed(p.done) || p.killed {
		return false, nil
	}
	return true, p.err
}

// kill sends SIGKILL and waits for the process to end.
func (p *proc) kill() error {
	p.mu.Lock()
	if p.cmd == nil || closed(p.done) {
		p.mu.Unlock()
		return fmt.Errorf("%s is not running", p.name)
	}
	p.killed = true
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
	return nil
}

// stop asks the process to end (SIGTERM) and kills it after grace.
func (p *proc) stop(grace time.Duration) {
	p.mu.Lock()
	if p.cmd == nil || closed(p.done) {
		p.mu.Unlock()
		return
	}
	p.killed = true
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// tail is the last lines of the process's log.
func (p *proc) tail(lines int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// stopAll stops processes concurrently.
func stopAll(ps []*proc, grace time.Duration) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() { p.stop(grace) })
	}
	wg.Wait()
}

// procCluster is the processes runner's coordinators, as the timeline
// acts on them (cluster): SIGKILL, a restart on the same command line and
// data folder, and partitions of the network model. Every question goes to
// the coordinator concerned over its own connection, so that each answers
// from its own state.
type procCluster struct {
	coords  []*proc
	region  []string
	clients []pb.AdminServiceClient // one per coordinator, its own view
	// cutter partitions regions (nil: the run has no network model, and
	// the scenario no partition).
	cutter interface {
		setCut(region string, on bool) error
	}
	say func(format string, args ...any)

	mu    sync.Mutex
	jobID string

	lmu       sync.Mutex // serialises leader lookups
	cuts      map[string]bool
	leaderAt  time.Time
	leaderWas string
}

// leaderCacheFor is how long a leader lookup is reused: the runner's
// admin calls ask for the leader before each call.
const leaderCacheFor = 300 * time.Millisecond

func (c *procCluster) index(name string) int {
	return slices.IndexFunc(c.coords, func(p *proc) bool { return p.name == name })
}

func (c *procCluster) names() []string {
	out := make([]string, len(c.coords))
	for i, p := range c.coords {
		out[i] = p.name
	}
	return out
}

func (c *procCluster) regionOf(name string) string {
	if i := c.index(name); i >= 0 {
		return c.region[i]
	}
	return ""
}

func (c *procCluster) live(name string) bool {
	i := c.index(name)
	return i >= 0 && c.coords[i].running()
}

func (c *procCluster) kill(name string) error {
	i := c.index(name)
	if i < 0 {
		return fmt.Errorf("no coordinator %s", name)
	}
	defer c.forgetLeader()
	return c.coords[i].kill()
}

func (c *procCluster) restart(_ context.Context, name string) error {
	i := c.index(name)
	if i < 0 {
		return fmt.Errorf("no coordinator %s", name)
	}
	defer c.forgetLeader()
	return c.coords[i].start()
}

func (c *procCluster) cut(region string)  { c.setCut(region, true) }
func (c *procCluster) heal(region string) { c.setCut(region, false) }

func (c *procCluster) setCut(region string, on bool) {
	c.lmu.Lock()
	c.cuts[region] = on
	c.leaderAt = time.Time{}
	c.lmu.Unlock()
	if c.cutter == nil {
		c.say("partition of %s: this run models no network, nothing is cut", region)
		return
	}
	if err := c.cutter.setCut(region, on); err != nil {
		c.say("partition of %s (cut %v) failed: %v", region, on, err)
	}
}

func (c *procCluster) forgetLeader() {
	c.lmu.Lock()
	c.leaderAt = time.Time{}
	c.lmu.Unlock()
}

// leader asks every running coordinator whom it follows and returns the
// live coordinator most of them name, counting first those outside a
// cut-off region (a cut-off leader believes it leads until it steps down).
func (c *procCluster) leader() string {
	c.lmu.Lock()
	defer c.lmu.Unlock()
	if time.Since(c.leaderAt) < leaderCacheFor {
		return c.leaderWas
	}
	votes, cutVotes := map[string]int{}, map[string]int{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, p := range c.coords {
		if !p.running() {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			m, err := c.clients[i].ListMembers(ctx, &pb.ListMembersRequest{})
			if err != nil || m.Leader == "" || !c.live(m.Leader) {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if c.cuts[c.region[i]] {
				cutVotes[m.Leader]++
			} else {
				votes[m.Leader]++
			}
		})
	}
	wg.Wait()
	if len(votes) == 0 {
		votes = cutVotes
	}
	best := ""
	for _, name := range c.names() { // the scenario's order among equals
		if votes[name] > votes[best] {
			best = name
		}
	}
	c.leaderWas, c.leaderAt = best, time.Now()
	return best
}

// committed is the rounds coordinator name's own state holds committed.
func (c *procCluster) committed(name string) int {
	i := c.index(name)
	c.mu.Lock()
	jobID := c.jobID
	c.mu.Unlock()
	if i < 0 || jobID == "" || !c.coords[i].running() {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	j, err := c.clients[i].GetJob(ctx, &pb.GetJobRequest{JobId: jobID})
	if err != nil {
		return 0
	}
	return int(j.CommittedRounds)
}

// leaderIndex is the leader's index (−1: none known), for the operator's
// connection.
func (c *procCluster) leaderIndex() int { return c.index(c.leader()) }

// rounds lists every attempt of the job in coordinator i's own state.
func (c *procCluster) rounds(ctx context.Context, i int, jobID string) (*pb.Job, []*pb.Round, error) {
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	j, err := c.clients[i].GetJob(actx, &pb.GetJobRequest{JobId: jobID})
	if err != nil {
		return nil, nil, err
	}
	var out []*pb.Round
	token := ""
	for {
		page, err := c.clients[i].ListRounds(actx, &pb.ListRoundsRequest{JobId: jobID, IncludeAborted: true, PageToken: token, PageSize: 5000})
		if err != nil {
			return nil, nil, err
		}
		out = append(out, page.Rounds...)
		if token = page.NextPageToken; token == "" {
			return j, out, nil
		}
	}
}

// processInvariants are the invariants the processes runner checks: it
// sees each coordinator only through its admin API, not its FSM and store
// as the in-process runner does (coordinator.CheckInvariants).
var processInvariants = []string{
	"every running coordinator lists the same attempts of the job (round, attempt, status, model digest, contributors)",
	"committed rounds are 1…n without gaps or repeats on every coordinator, n its committed count",
	"no round is left open once the job has ended",
	"every coordinator serves every retained committed model, hashing to its digest",
}

// checkInvariants checks processInvariants on the running coordinators
// until they hold or timeout passes (followers may still be applying the
// last entries), and returns the last violation. It also returns each
// coordinator's committed round → digest.
func (c *procCluster) checkInvariants(ctx context.Context, jobID string, timeout time.Duration) (map[string]map[uint32]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		digests, err := c.invariantsOnce(ctx, jobID)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return digests, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *procCluster) invariantsOnce(ctx context.Context, jobID string) (map[string]map[uint32]string, error) {
	digests := map[string]map[uint32]string{}
	var first []string
	firstName := ""
	for i, p := range c.coords {
		if !p.running() {
			continue
		}
		j, rounds, err := c.rounds(ctx, i, jobID)
		if err != nil {
			return digests, fmt.Errorf("%s: %w", p.name, err)
		}
		var history []string
		var committed []uint32
		own := map[uint32]string{}
		for _, r := range rounds {
			history = append(history, fmt.Sprintf("%d/%d %v %s %v", r.Number, r.Attempt, r.Status, r.ModelDigest, r.Contributors))
			switch r.Status {
			case pb.RoundStatus_ROUND_STATUS_COMMITTED:
				committed = append(committed, r.Number)
				own[r.Number] = r.ModelDigest
			case pb.RoundStatus_ROUND_STATUS_OPEN:
				if j.Status != pb.JobStatus_JOB_STATUS_RUNNING {
					return digests, fmt.Errorf("%s: job %s ended (%v) with round %d open", p.name, jobID, j.Status, r.Number)
				}
			}
		}
		digests[p.name] = own
		for k, n := range committed {
			if n != uint32(k+1) {
				return digests, fmt.Errorf("%s: job %s: committed rounds %v are not 1…%d without gaps or repeats", p.name, jobID, committed, len(committed))
			}
		}
		if uint32(len(committed)) != j.CommittedRounds {
			return digests, fmt.Errorf("%s: job %s records %d committed rounds but lists %d", p.name, jobID, j.CommittedRounds, len(committed))
		}
		if first == nil {
			first, firstName = history, p.name
		} else if !slices.Equal(first, history) {
			return digests, fmt.Errorf("%s's attempts of job %s differ from %s's (%d and %d attempts)", p.name, jobID, firstName, len(history), len(first))
		}
	}
	for i, p := range c.coords {
		if !p.running() {
			continue
		}
		_, rounds, err := c.rounds(ctx, i, jobID)
		if err != nil {
			return digests, fmt.Errorf("%s: %w", p.name, err)
		}
		for _, r := range rounds {
			if r.Status != pb.RoundStatus_ROUND_STATUS_COMMITTED || r.ModelDeleted {
				continue
			}
			actx, cancel := context.WithTimeout(ctx, attemptTimeout)
			blob, _, err := PullModel(actx, c.clients[i], jobID, r.Number, false)
			cancel()
			if err != nil {
				return digests, fmt.Errorf("%s: %w", p.name, err)
			}
			if got := protocol.Digest(blob); got != r.ModelDigest {
				return digests, fmt.Errorf("%s: job %s round %d: the model it serves hashes to %s, not %s", p.name, jobID, r.Number, got, r.ModelDigest)
			}
		}
	}
	return digests, nil
}
