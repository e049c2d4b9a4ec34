package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/participant"
	"github.com/accord-fl/accord/pki"
)

// cliFederation is a one-coordinator cluster and an admin's certificate
// files, for running CLI commands against it.
type cliFederation struct {
	t        *testing.T
	tc       *coordtest.Cluster
	dir      string
	tlsFlags []string
}

func newCLIFederation(t *testing.T) *cliFederation {
	t.Helper()
	tc := coordtest.NewCluster(t, 1)
	tc.Leader(5 * time.Second)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tc.CA.Cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	cert, key, err := tc.CA.IssueToDir(dir, pki.Identity{Role: pki.RoleAdmin, Name: "ops", Organization: "org1"}, pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &cliFederation{t: t, tc: tc, dir: dir, tlsFlags: []string{"--coordinator", tc.Addrs()[0], "--ca", caFile, "--cert", cert, "--key", key}}
}

// run runs accord with args and the admin's flags; it returns stdout,
// stderr and the error.
func (f *cliFederation) run(args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	err := NewMain(&out, &errb).Run(f.t.Context(), append(args, f.tlsFlags...))
	return out.String(), errb.String(), err
}

// file writes a file into the federation's folder and returns its path.
func (f *cliFederation) file(name, body string) string {
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// startParticipants runs n participant daemons holding "blobs" (8
// features, 3 classes) until the test ends.
func (f *cliFederation) startParticipants(n int) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	f.t.Cleanup(func() { cancel(); wg.Wait() })
	for i := range n {
		name := "site-" + string(rune('1'+i))
		cert, err := f.tc.CA.Issue(pki.Identity{Role: pki.RoleParticipant, Name: name, Organization: "hospital-" + name})
		if err != nil {
			f.t.Fatal(err)
		}
		p, err := participant.New(participant.Config{Coordinators: f.tc.Addrs(), Cert: cert, CA: f.tc.CA.Pool(), Dataset: "blobs",
			Train: waitBlobs(120, uint64(i)), Validation: waitBlobs(40, uint64(100+i)), MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
		if err != nil {
			f.t.Fatal(err)
		}
		wg.Go(func() { p.Run(ctx) })
	}
}

// waitBlobs is a 3-class problem in 8 dimensions that logistic regression solves.
func waitBlobs(n int, seed uint64) *model.Dataset {
	rng := rand.New(rand.NewPCG(seed, 9))
	const d, classes = 8, 3
	ds := &model.Dataset{X: make([]float32, n*d), Y: make([]int32, n), Features: d, Classes: classes}
	for i := range n {
		c := rng.IntN(classes)
		ds.Y[i] = int32(c)
		for j := range d {
			centre := 0.0
			if j%classes == c {
				centre = 2.5
			}
			ds.X[i*d+j] = float32(centre + rng.NormFloat64())
		}
	}
	return ds
}

const blobsJobFile = `name: blobs
model: logreg:8-3
dataset: blobs
rounds: 2
target_accuracy: 0
participants_per_round: 2
min_participants: 2
evaluate_fraction: 0
round_deadline: 20s
`

// TestSubmitWaitAndModelPull runs what an operator runs by hand: commands
// that wait for the coordinators and participants, a job submitted with
// --wait that returns once a round is committed (or with the job's reason
// when it fails), and model pull, which refuses a job with nothing trained
// unless --round 0 asks for the initial model.
func TestSubmitWaitAndModelPull(t *testing.T) {
	f := newCLIFederation(t)
	if _, errb, err := f.run("members", "list", "--wait-for", "1"); err != nil {
		t.Fatalf("members list --wait-for 1: %v\n%s", err, errb)
	}
	good := f.file("job.yaml", blobsJobFile)
	bad := f.file("bad.yaml", strings.Replace(blobsJobFile, "logreg:8-3", "logreg:5-3", 1)+"max_attempts: 2\n")

	// Nothing trained yet: model pull refuses, unless --round 0.
	out, errb, err := f.run("job", "submit", good)
	if err != nil {
		t.Fatalf("job submit: %v\n%s", err, errb)
	}
	idle := strings.TrimSpace(out)
	model := filepath.Join(f.dir, "model.safetensors")
	if _, _, err := f.run("model", "pull", idle, "--out", model); err == nil || !strings.Contains(err.Error(), "--round 0") {
		t.Errorf("model pull of a job with no committed round: %v; want a refusal pointing at --round 0", err)
	}
	if _, err := os.Stat(model); err == nil {
		t.Errorf("model pull wrote %s for a job with nothing trained", model)
	}
	if out, _, err := f.run("model", "pull", idle, "--round", "0", "--out", model); err != nil || !strings.Contains(out, "round 0") {
		t.Errorf("model pull --round 0: %q, %v; want the initial model written", out, err)
	}

	// A job submitted with --wait before anyone can tell it cannot run:
	// it fails once the participants say why, and --wait says so.
	type result struct {
		out, errb string
		err       error
	}
	failed := make(chan result, 1)
	go func() {
		out, errb, err := f.run("job", "submit", bad, "--wait")
		failed <- result{out, errb, err}
	}()
	waitForJobs(t, f, 2) // submitted before any participant registers
	f.startParticipants(2)
	if _, errb, err := f.run("participants", "list", "--wait-for", "2"); err != nil {
		t.Fatalf("participants list --wait-for 2: %v\n%s", err, errb)
	}
	r := <-failed
	if r.err == nil || !strings.Contains(r.err.Error(), "JOB_STATUS_FAILED") || !strings.Contains(r.err.Error(), "shape mismatch: dataset has 8 features and 3 classes") ||
		!strings.HasPrefix(r.out, "job-") {
		t.Errorf("job submit --wait of a job no participant can train: %q, %v; want its ID, then an error with the participants' reason", r.out, r.err)
	}
	// Now that they registered, the coordinators know: refused at once.
	if _, _, err := f.run("job", "submit", bad); err == nil || !strings.Contains(err.Error(), "takes 5 features and 3 classes") {
		t.Errorf("job submit of a model that fits no participant's data: %v; want a refusal naming its sizes", err)
	}

	// --wait returns once a round is committed; model pull then writes it.
	out, errb, err = f.run("job", "submit", good, "--wait")
	if err != nil {
		t.Fatalf("job submit --wait: %v\n%s", err, errb)
	}
	id := strings.TrimSpace(out)
	if j, err := f.tc.Leader(time.Second).FSM().Job(id); err != nil || j.CommittedRounds < 1 {
		t.Fatalf("job submit --wait returned with job %s at %d committed rounds (%v)", id, j.CommittedRounds, err)
	}
	if out, _, err := f.run("model", "pull", id, "--out", model); err != nil || strings.Contains(out, "round 0") || !strings.Contains(out, "round ") {
		t.Errorf("model pull after --wait: %q, %v; want a trained round", out, err)
	}

	// --wait=done returns when the job ends.
	out, errb, err = f.run("job", "submit", good, "--wait=done", "--json")
	if err != nil || !strings.Contains(out, `"status": "JOB_STATUS_SUCCEEDED"`) || !strings.Contains(out, `"committed_rounds": 2`) {
		t.Errorf("job submit --wait=done --json: %q, %v\n%s; want SUCCEEDED after 2 rounds", out, err, errb)
	}
	if _, _, err := f.run("job", "submit", good, "--wait=soon"); err == nil || exitCode(err) != 2 {
		t.Errorf("--wait=soon: %v; want a usage error", err)
	}
}

// waitForJobs waits until the coordinator holds n jobs.
func waitForJobs(t *testing.T, f *cliFederation, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); len(f.tc.Leader(time.Second).FSM().Jobs()) < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d jobs submitted", n)
		}
	}
}

// TestPKIInitKeepsKeysOutOfTheSourceTree: pki init writes into
// federation/pki by default, and refuses a folder of Go source files.
func TestPKIInitKeepsKeysOutOfTheSourceTree(t *testing.T) {
	t.Chdir(t.TempDir())
	run := func(args ...string) error {
		return NewMain(new(bytes.Buffer), new(bytes.Buffer)).Run(context.Background(), args)
	}
	if err := run("pki", "init"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("federation", "pki", "ca.key")); err != nil {
		t.Errorf("pki init without --dir: %v; want the CA in federation/pki", err)
	}
	if err := run("pki", "issue", "--role", "admin", "--name", "ops", "--org", "o"); err != nil {
		t.Errorf("pki issue without --dir: %v; want it to find the CA in federation/pki", err)
	}
	if err := os.MkdirAll("src/pki", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("src/pki/pki.go", []byte("package pki\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := run("pki", "init", "--dir", "src/pki")
	if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "pki.go") {
		t.Errorf("pki init into a folder of Go source: %v; want a usage error naming it", err)
	}
	if _, err := os.Stat("src/pki/ca.key"); err == nil {
		t.Error("pki init wrote a CA key beside pki.go")
	}
}
