package processes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/accord-fl/accord/coordinator/coordtest"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// cluster is a federation of real processes in a temporary folder.
type cluster struct {
	t     *testing.T
	bin   string
	dir   string
	coord []*proc
	parts []*exec.Cmd
}

// proc is one coordinator process and the arguments to restart it.
type proc struct {
	name   string
	args   []string
	cmd    *exec.Cmd
	grpc   string
	gossip string
	log    *os.File
}

// run runs the binary to completion and returns its standard output.
func (c *cluster) run(args ...string) (string, error) {
	cmd := exec.Command(c.bin, args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "ACCORD_CA=pki/ca.crt", "ACCORD_CERT=pki/ops.crt", "ACCORD_KEY=pki/ops.key")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("accord %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func (c *cluster) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

func (c *cluster) start(p *proc) {
	c.t.Helper()
	cmd := exec.Command(c.bin, p.args...)
	cmd.Dir = c.dir
	cmd.Stderr, cmd.Stdout = p.log, p.log
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	p.cmd = cmd
}

func (c *cluster) kill(p *proc) {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
		p.cmd = nil
	}
}

// newCluster starts three coordinators and the participants; extra, if set,
// gives participant i more arguments.
func newCluster(t *testing.T, participants int, extra func(i int) []string) *cluster {
	dir := t.TempDir()
	c := &cluster{t: t, bin: coordtest.BuildAccord(t), dir: dir}
	t.Cleanup(func() {
		for _, p := range c.coord {
			c.kill(p)
			p.log.Close()
		}
		for _, p := range c.parts {
			p.Process.Signal(syscall.SIGKILL)
			p.Wait()
		}
	})
	c.must("pki", "init", "--dir", "pki")
	c.must("pki", "issue", "--dir", "pki", "--role", "admin", "--name", "ops", "--org", "ops")
	orgs := []string{"charite", "aphp", "riken"}
	for i, org := range orgs {
		name := fmt.Sprintf("coord-%d", i+1)
		c.must("pki", "issue", "--dir", "pki", "--role", "coordinator", "--name", name, "--org", org)
		log, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		c.coord = append(c.coord, &proc{name: name, grpc: coordtest.FreeLoopback(t), gossip: coordtest.FreeLoopback(t), log: log})
	}
	for i, p := range c.coord {
		p.args = []string{"coordinator", "--name", p.name, "--data-dir", "data/" + p.name, "--bootstrap-expect", "3",
			"--grpc-addr", p.grpc, "--raft-addr", coordtest.FreeLoopback(t), "--gossip-addr", p.gossip, "--gossip-key", "pki/gossip.key",
			"--ca", "pki/ca.crt", "--cert", "pki/" + p.name + ".crt", "--key", "pki/" + p.name + ".key", "--log-level", "info"}
		var join []string
		for j, q := range c.coord {
			if j != i {
				join = append(join, q.gossip)
			}
		}
		p.args = append(p.args, "--join", strings.Join(join, ","))
		c.start(p)
	}
	var addrs []string
	for _, p := range c.coord {
		addrs = append(addrs, p.grpc)
	}
	for i := range participants {
		name := fmt.Sprintf("site-%d", i+1)
		c.must("pki", "issue", "--dir", "pki", "--role", "participant", "--name", name, "--org", "hospital-"+name)
		cmd := exec.Command(c.bin, "participant", "--coordinator", strings.Join(addrs, ","), "--data", "mnist",
			"--shard", fmt.Sprintf("%d/%d", i+1, participants), "--examples", "600", "--log-level", "warn",
			"--ca", "pki/ca.crt", "--cert", "pki/"+name+".crt", "--key", "pki/"+name+".key")
		if extra != nil {
			cmd.Args = append(cmd.Args, extra(i)...)
		}
		cmd.Dir = dir
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c.parts = append(c.parts, cmd)
	}
	return c
}

// waitParticipants waits for n participants to connect (they load MNIST
// first).
func (c *cluster) waitParticipants(n int) {
	c.t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, _ := c.run("participants", "list", "--json", "--coordinator", c.leader(10*time.Second).grpc)
		if strings.Count(out, `"connected": true`) >= n {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("participants did not connect:\n%s", out)
		}
	}
}

// waitJob waits for a job to end.
func (c *cluster) waitJob(id string, timeout time.Duration) jobOut {
	c.t.Helper()
	var j jobOut
	for deadline := time.Now().Add(timeout); ; time.Sleep(200 * time.Millisecond) {
		var err error
		if j, err = c.job(id); err == nil && j.Status != 1 {
			return j
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("job still running: %+v", j)
		}
	}
}

type membersOut struct {
	Leader string `json:"leader"`
}

// leader asks any live coordinator who leads.
func (c *cluster) leader(timeout time.Duration) *proc {
	c.t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, p := range c.coord {
			if p.cmd == nil {
				continue
			}
			out, err := c.run("members", "list", "--json", "--coordinator", p.grpc)
			if err != nil {
				continue
			}
			var m membersOut
			if json.Unmarshal([]byte(out), &m) == nil && m.Leader != "" {
				for _, q := range c.coord {
					if q.name == m.Leader && q.cmd != nil {
						return q
					}
				}
			}
		}
	}
	c.t.Fatal("no leader")
	return nil
}

// jobOut is what the tests read of `job show --json` (the API's JSON:
// protojson with the .proto's field names).
type jobOut struct {
	Status          pb.JobStatus
	CommittedRounds uint32
	Reason          string
}

func (c *cluster) job(id string) (jobOut, error) {
	for _, p := range c.coord {
		if p.cmd == nil {
			continue
		}
		out, err := c.run("job", "show", id, "--json", "--coordinator", p.grpc)
		if err != nil {
			continue
		}
		var j pb.Job
		if err := protojson.Unmarshal([]byte(out), &j); err == nil {
			return jobOut{Status: j.Status, CommittedRounds: j.CommittedRounds, Reason: j.Reason}, nil
		}
	}
	return jobOut{}, fmt.Errorf("no coordinator answered for job %s", id)
}

type roundOut struct {
	Number       uint32 `json:"number"`
	ModelDigest  string `json:"model_digest"`
	ModelDeleted bool   `json:"model_deleted"`
}

// checkHistories checks that every coordinator lists the same rounds 1…n
// with the same digests, and serves every model the job keeps with a
// matching digest.
func (c *cluster) checkHistories(id string, n int) {
	c.t.Helper()
	var first []roundOut
	for _, p := range c.coord {
		var rs []roundOut
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			out, err := c.run("round", "list", id, "--json", "--coordinator", p.grpc)
			if err == nil && json.Unmarshal([]byte(out), &rs) == nil && len(rs) == n {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("%s lists %d rounds: %v", p.name, len(rs), err)
			}
		}
		for i, r := range rs {
			if r.Number != uint32(i+1) {
				c.t.Fatalf("%s: round list has a gap or repeat at position %d: round %d", p.name, i, r.Number)
			}
		}
		if first == nil {
			first = rs
		} else if !slices.Equal(first, rs) {
			c.t.Fatalf("%s's round → digest list differs from %s's", p.name, c.coord[0].name)
		}
		kept := 0
		for _, r := range rs {
			if r.ModelDeleted {
				continue
			}
			kept++
			var pulled struct{ Digest string }
			var out string
			var err error
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
				if out, err = c.run("model", "pull", id, "--round", fmt.Sprint(r.Number), "--out", filepath.Join(c.dir, "m.safetensors"), "--json", "--coordinator", p.grpc); err == nil {
					break
				}
			}
			if err != nil || json.Unmarshal([]byte(out), &pulled) != nil || pulled.Digest != r.ModelDigest {
				c.t.Fatalf("pulling round %d from %s: %v (%s)", r.Number, p.name, err, out)
			}
		}
		c.t.Logf("%s: %d rounds, identical; %d kept models pulled with matching digests", p.name, len(rs), kept)
	}
}

// TestLeaderKilledWithSIGKILL runs a job on three coordinator processes and
// ten participant processes and kills the leader with SIGKILL during it,
// restarting it a few seconds later. The job completes, every coordinator
// lists the same round → digest history with no gap, and every committed
// model can be pulled from every coordinator.
func TestLeaderKilledWithSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes")
	}
	needMNIST(t)
	rounds, kills, model := 8, 1, "logreg:784-10"
	if os.Getenv("ACCORD_PROCESS_FULL") != "" {
		rounds, kills, model = 30, 3, "mlp:784-200-200-10"
	}
	c := newCluster(t, 10, nil)
	c.leader(30 * time.Second)
	jobFile := filepath.Join(c.dir, "job.yaml")
	os.WriteFile(jobFile, []byte(fmt.Sprintf(`name: sigkill
model: %s
dataset: mnist
rounds: %d
target_accuracy: 0
participants_per_round: 10
min_participants: 5
round_deadline: 20s
evaluate_fraction: 1
retain: {all: true}
`, model, rounds)), 0o600)
	c.waitParticipants(10)
	id := strings.TrimSpace(c.must("job", "submit", jobFile, "--coordinator", c.coord[0].grpc))

	for k := 1; k <= kills; k++ {
		at := uint32(k * rounds / (kills + 1))
		for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
			if j, err := c.job(id); err == nil && j.CommittedRounds >= at {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d not committed", at)
			}
		}
		l := c.leader(30 * time.Second)
		t.Logf("SIGKILL %d: leader %s after round %d", k, l.name, at)
		c.kill(l)
		time.Sleep(3 * time.Second)
		c.start(l)
	}
	j := c.waitJob(id, 5*time.Minute)
	if j.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || j.CommittedRounds != uint32(rounds) {
		t.Fatalf("job ended %v after %d rounds (%s); want SUCCEEDED after %d", j.Status, j.CommittedRounds, j.Reason, rounds)
	}

	// Identical histories, no gaps, every model everywhere.
	c.checkHistories(id, rounds)
	t.Logf("%d rounds, identical on 3 coordinators, every model pulled from each", rounds)
}

// TestSecureRoundSurvivesSIGKILLedParticipants: a job with SecAgg+ on three
// coordinator processes and ten participant processes; in round 3, three
// participants SIGKILL themselves right after sending their key shares. The
// round commits with the seven survivors, and the job completes.
func TestSecureRoundSurvivesSIGKILLedParticipants(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes")
	}
	needMNIST(t)
	const rounds, killed = 5, 3
	c := newCluster(t, 10, func(i int) []string {
		if i < killed {
			return []string{"--fault-kill-after-share-keys", "3"}
		}
		return nil
	})
	c.leader(30 * time.Second)
	jobFile := filepath.Join(c.dir, "job.yaml")
	os.WriteFile(jobFile, []byte(fmt.Sprintf(`name: secagg-sigkill
model: logreg:784-10
dataset: mnist
rounds: %d
target_accuracy: 0
participants_per_round: 10
min_participants: 5
round_deadline: 20s
evaluate_fraction: 0
secure_aggregation: {mode: secagg+, dropout_rate: 0.3, phase_deadline: 10s}
`, rounds)), 0o600)
	c.waitParticipants(10)
	id := strings.TrimSpace(c.must("job", "submit", jobFile, "--coordinator", c.coord[1].grpc))
	j := c.waitJob(id, 3*time.Minute)
	if j.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || j.CommittedRounds != rounds {
		t.Fatalf("job ended %v after %d rounds (%s); want SUCCEEDED after %d", j.Status, j.CommittedRounds, j.Reason, rounds)
	}
	out := c.must("round", "list", id, "--json", "--all", "--coordinator", c.leader(10*time.Second).grpc)
	var rs []struct {
		Number       uint32   `json:"number"`
		Attempt      uint32   `json:"attempt"`
		Status       string   `json:"status"`
		Cohort       []string `json:"cohort"`
		Contributors []string `json:"contributors"`
		Reason       string   `json:"reason"`
	}
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatalf("round list: %v\n%s", err, out)
	}
	for _, r := range rs {
		t.Logf("round %d attempt %d: status %s, cohort %d, contributors %d %s", r.Number, r.Attempt, r.Status, len(r.Cohort), len(r.Contributors), r.Reason)
		if r.Number == 3 && (r.Attempt != 1 || len(r.Cohort) != 10 || len(r.Contributors) != 10-killed) {
			t.Errorf("round 3: attempt %d, %d of %d contributed; want attempt 1 committed by %d of 10", r.Attempt, len(r.Contributors), len(r.Cohort), 10-killed)
		}
	}
	for i := range killed {
		if err := c.parts[i].Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("participant %d: %v; want killed", i+1, err)
		}
	}

	// The audit trail of the run, with the CLI: a revocation joins the
	// submission; the log verifies from the CA certificate alone, and an
	// exported copy with one entry altered does not, naming the entry.
	leader := c.leader(10 * time.Second).grpc
	t.Log(strings.TrimSpace(c.must("revoke", "site-1", "--reason", "site closed", "--coordinator", leader)))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		// Every coordinator's copy, compared: a follower may be a moment
		// behind the leader.
		out = c.must("audit", "verify", "--coordinator", c.coord[0].grpc+","+c.coord[1].grpc+","+c.coord[2].grpc)
		if strings.Contains(out, "2 entries") || time.Now().After(deadline) {
			break
		}
	}
	t.Log(strings.TrimSpace(out))
	if !strings.Contains(out, "audit log verifies: 2 entries") {
		t.Errorf("audit verify: %s; want 2 entries verified", out)
	}
	var entries []map[string]any
	if err := json.Unmarshal([]byte(c.must("audit", "list", "--json", "--coordinator", leader)), &entries); err != nil || len(entries) != 2 {
		t.Fatalf("audit list: %d entries (%v)", len(entries), err)
	}
	entries[1]["summary"] = "revoked nobody"
	altered, _ := json.Marshal(entries)
	file := filepath.Join(c.dir, "audit.json")
	os.WriteFile(file, altered, 0o600)
	if _, err := c.run("audit", "verify", "--file", file); err == nil || !strings.Contains(err.Error(), "entry 1:") {
		t.Errorf("audit verify of an altered log: %v; want a failure naming entry 1", err)
	} else {
		t.Logf("altered log: %v", err)
	}
}

// TestRandomCoordinatorsSIGKILLed: during a job on three coordinator
// processes, a coordinator chosen at random (the leader about half the
// time) is SIGKILLed at a random moment and restarted, again and again.
// Every restart succeeds; afterwards every coordinator lists the same
// round → digest history with no gap and serves every retained model with a
// matching digest. make scenarios runs the full version: a 60-round job
// and 20 kills.
func TestRandomCoordinatorsSIGKILLed(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes")
	}
	needMNIST(t)
	// Local epochs make each round last long enough (about a second) for
	// the kills to fall inside the job.
	rounds, kills, model, epochs := 20, 4, "logreg:784-10", 50
	if os.Getenv("ACCORD_PROCESS_FULL") != "" {
		rounds, kills, model, epochs = 60, 20, "mlp:784-200-200-10", 2
	}
	c := newCluster(t, 6, nil)
	c.leader(30 * time.Second)
	jobFile := filepath.Join(c.dir, "job.yaml")
	os.WriteFile(jobFile, []byte(fmt.Sprintf(`name: random-kills
model: %s
dataset: mnist
rounds: %d
target_accuracy: 0
participants_per_round: 6
min_participants: 3
local_epochs: %d
round_deadline: 60s
evaluate_fraction: 0
max_attempts: 100
retain: {last: 5, every: 10}
`, model, rounds, epochs)), 0o600)
	c.waitParticipants(6)
	id := strings.TrimSpace(c.must("job", "submit", jobFile, "--coordinator", c.coord[0].grpc))
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	leaderKills := 0
	for k := 1; k <= kills; k++ {
		// Spread the kills over the job, each at a random moment.
		at := uint32(k * (rounds - 2) / (kills + 1))
		for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
			if j, err := c.job(id); err == nil && j.CommittedRounds >= at {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d not committed before kill %d", at, k)
			}
		}
		time.Sleep(time.Duration(rng.IntN(700)) * time.Millisecond)
		if j, err := c.job(id); err == nil && j.Status != pb.JobStatus_JOB_STATUS_RUNNING {
			t.Fatalf("the job ended (%v, %d rounds) before kill %d; make its rounds longer", j.Status, j.CommittedRounds, k)
		}
		victim := c.coord[rng.IntN(len(c.coord))]
		if rng.IntN(2) == 0 {
			victim = c.leader(30 * time.Second)
		}
		if l := c.leader(30 * time.Second); l == victim {
			leaderKills++
		}
		c.kill(victim)
		c.start(victim)
		// Restarted: it answers, and knows a leader, before the next kill.
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			out, err := c.run("members", "list", "--json", "--coordinator", victim.grpc)
			var m membersOut
			if err == nil && json.Unmarshal([]byte(out), &m) == nil && m.Leader != "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("kill %d: %s did not come back: %v", k, victim.name, err)
			}
		}
		t.Logf("kill %d: %s SIGKILLed and restarted", k, victim.name)
	}
	t.Logf("%d kills, %d of them of the leader", kills, leaderKills)
	j := c.waitJob(id, 10*time.Minute)
	if j.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || j.CommittedRounds != uint32(rounds) {
		t.Fatalf("job ended %v after %d rounds (%s); want SUCCEEDED after %d", j.Status, j.CommittedRounds, j.Reason, rounds)
	}
	c.checkHistories(id, rounds)
}
