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

	"google.golang.org/grpc"

	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/participant"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// TestJobWatchHelp: job watch -h prints its usage and exits 0; a missing
// ID or a too short interval is a usage error.
func TestJobWatchHelp(t *testing.T) {
	var out, errb bytes.Buffer
	err := NewMain(&out, &errb).Run(t.Context(), []string{"job", "watch", "-h"})
	if exitCode(err) != 0 || !strings.Contains(errb.String(), "usage: accord job watch ID") || !strings.Contains(errb.String(), "-interval") {
		t.Errorf("job watch -h: exit %d (%v), printed\n%s%s; want exit 0 and the usage with --interval", exitCode(err), err, out.String(), errb.String())
	}
	for _, args := range [][]string{{"job", "watch", "--coordinator", "127.0.0.1:1"}, {"job", "watch", "job-0123456789ab", "--interval", "1ms"}} {
		dir := t.TempDir()
		for _, f := range []string{"ca", "cert", "key"} {
			args = append(args, "--"+f, filepath.Join(dir, f))
		}
		err := NewMain(&out, &errb).Run(t.Context(), args)
		if exitCode(err) != 2 && !strings.Contains(err.Error(), "--ca") {
			t.Errorf("accord %s: exit %d (%v); want a usage error", strings.Join(args, " "), exitCode(err), err)
		}
	}
}

// TestProgressLine: the terminal line has the status, a bar toward the
// job's end that fits the terminal, the rounds, the last accuracy against
// the target, and ε; details give way to the bar on a narrow terminal, and
// the bar to the numbers on a very narrow one.
func TestProgressLine(t *testing.T) {
	job := func(status pb.JobStatus, committed, rounds uint32, target float64) *pb.Job {
		return &pb.Job{Id: "job-0123456789ab", Status: status, CommittedRounds: committed, Spec: &pb.JobSpec{Rounds: rounds, TargetAccuracy: target}}
	}
	private := job(pb.JobStatus_JOB_STATUS_RUNNING, 30, 100, 0.9)
	private.Privacy = &pb.Privacy{Epsilon: 2.345}
	cases := []struct {
		name   string
		job    *pb.Job
		accs   []float64
		width  int
		want   []string
		not    []string
		barLen int // -1: no bar; 0: any
	}{
		{"rounds", job(pb.JobStatus_JOB_STATUS_RUNNING, 5, 20, 0), []float64{0.5, 0.8}, 100,
			[]string{"job-0123456789ab RUNNING [", "]  25%  round 5/20  acc 80.00%"}, nil, 40},
		{"accuracy ahead, measured from the first round's", job(pb.JobStatus_JOB_STATUS_RUNNING, 2, 20, 0.9), []float64{0.3, 0.6}, 100,
			[]string{" 50%  round 2/20  acc 60.00% (target 90.00%)"}, nil, 0},
		{"no evaluation yet", job(pb.JobStatus_JOB_STATUS_RUNNING, 0, 20, 0.9), nil, 100,
			[]string{"  0%  round 0/20 (target 90.00%)"}, []string{"acc"}, 0},
		{"privacy", private, []float64{0.5}, 120, []string{"(target 90.00%)  ε 2.35"}, nil, 0},
		{"80 columns: the bar stays, details go", private, []float64{0.5}, 80, []string{"]  30%  round 30/100  acc 50.00%"}, []string{"ε", "target"}, 0},
		{"succeeded early", job(pb.JobStatus_JOB_STATUS_SUCCEEDED, 7, 20, 0.9), []float64{0.91}, 100, []string{"SUCCEEDED", "100%"}, nil, 0},
		{"pending", job(pb.JobStatus_JOB_STATUS_PENDING_APPROVAL, 0, 20, 0), nil, 100, []string{"waiting for approvals"}, nil, -1},
		{"very narrow", job(pb.JobStatus_JOB_STATUS_RUNNING, 5, 20, 0), []float64{0.8}, 50, []string{"job-0123456789ab RUNNING  25%  round 5/20"}, nil, -1},
	}
	for _, c := range cases {
		got := progressLine(c.job, c.accs, c.width)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", c.name, got, w)
			}
		}
		for _, w := range c.not {
			if strings.Contains(got, w) {
				t.Errorf("%s: %q has %q", c.name, got, w)
			}
		}
		if n := len([]rune(got)); n > c.width {
			t.Errorf("%s: %q is %d columns; want at most %d", c.name, got, n, c.width)
		}
		open, end := strings.Index(got, "["), strings.Index(got, "]")
		switch {
		case c.barLen < 0 && open >= 0:
			t.Errorf("%s: %q has a bar; want none", c.name, got)
		case c.barLen >= 0 && open < 0:
			t.Errorf("%s: %q has no bar", c.name, got)
		case c.barLen > 0:
			if bar := []rune(got[open+1 : end]); len(bar) != c.barLen || strings.Count(string(bar), "█") != c.barLen/4 {
				t.Errorf("%s: bar %q; want %d cells, a quarter full", c.name, string(bar), c.barLen)
			}
		}
	}
}

// watchBlobs is a 3-class problem in 8 dimensions that logistic regression
// solves.
func watchBlobs(n int, seed uint64) *model.Dataset {
	rng := rand.New(rand.NewPCG(seed, 9))
	ds := &model.Dataset{X: make([]float32, n*8), Y: make([]int32, n), Features: 8, Classes: 3}
	for i := range n {
		c := rng.IntN(3)
		ds.Y[i] = int32(c)
		for j := range 8 {
			centre := 0.0
			if j%3 == c {
				centre = 2.5
			}
			ds.X[i*8+j] = float32(centre + rng.NormFloat64())
		}
	}
	return ds
}

// TestJobWatch: watch prints one line per committed round off a terminal
// and exits 0 when the job succeeds; it exits non-zero, naming the status,
// when the job is cancelled; --json prints one object a line.
func TestJobWatch(t *testing.T) {
	tc := coordtest.NewCluster(t, 1)
	tc.Leader(5 * time.Second)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	for i := range 3 {
		cert, err := tc.CA.Issue(pki.Identity{Role: pki.RoleParticipant, Name: "p" + string(rune('a'+i)), Organization: "org1"})
		if err != nil {
			t.Fatal(err)
		}
		p, err := participant.New(participant.Config{Coordinators: tc.Addrs(), Cert: cert, CA: tc.CA.Pool(), Region: "eu", Dataset: "blobs",
			Train: watchBlobs(120, uint64(i)), Validation: watchBlobs(40, uint64(100+i)), MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { p.Run(ctx) })
	}
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tc.CA.Cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	cert, key, err := tc.CA.IssueToDir(dir, pki.Identity{Role: pki.RoleAdmin, Name: "ops", Organization: "org1"}, pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	admin := tc.AdminOf(0, "ops", "org1")
	submit := func(dataset string, rounds uint32) string {
		spec := state.DefaultJobSpec()
		spec.Name, spec.Model, spec.Dataset, spec.Rounds, spec.TargetAccuracy = "blobs", "logreg:8-3", dataset, rounds, 0
		spec.ParticipantsPerRound, spec.MinParticipants = 3, 2
		resp, err := admin.SubmitJob(t.Context(), &pb.SubmitJobRequest{Spec: spec.ToProto()})
		if err != nil {
			t.Fatal(err)
		}
		return resp.JobId
	}
	watchTo := func(ctx context.Context, out *syncBuffer, id string, extra ...string) error {
		return NewMain(out, out).Run(ctx, append([]string{"job", "watch", id, "--interval", "100ms",
			"--coordinator", tc.Addrs()[0], "--ca", caFile, "--cert", cert, "--key", key}, extra...))
	}
	watch := func(ctx context.Context, id string, extra ...string) (string, error) {
		var out syncBuffer
		err := watchTo(ctx, &out, id, extra...)
		return out.String(), err
	}

	id := submit("blobs", 3)
	out, err := watch(t.Context(), id)
	if err != nil {
		t.Fatalf("watching a job that succeeds: %v\n%s", err, out)
	}
	for _, want := range []string{"job " + id + " (blobs): logreg:8-3 on blobs, up to 3 rounds, no target accuracy",
		"round 1/3 committed: ", "round 2/3 committed: ", "round 3/3 committed", "job " + id + " SUCCEEDED after 3 rounds, accuracy"} {
		if !strings.Contains(out, want) {
			t.Errorf("watch output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "committed:"); n != 3 {
		t.Errorf("watch printed %d committed rounds; want each of the 3 once:\n%s", n, out)
	}
	out, err = watch(t.Context(), id, "--json")
	if err != nil || strings.Count(out, `{"event":"round"`) != 3 || !strings.Contains(out, `{"event":"end"`) {
		t.Errorf("watch --json: %v\n%s; want 3 round lines and an end line", err, out)
	}
	// round list --all: every attempt with its cohort, responders, silent
	// members, duration and why it closed.
	var list syncBuffer
	if err := NewMain(&list, &list).Run(t.Context(), []string{"round", "list", id, "--all",
		"--coordinator", tc.Addrs()[0], "--ca", caFile, "--cert", cert, "--key", key}); err != nil {
		t.Fatalf("round list --all: %v\n%s", err, list.String())
	}
	t.Logf("round list --all:\n%s", list.String())
	for _, want := range []string{"COHORT  RESPONDERS  SILENT", "COMMITTED", "every cohort member's update arrived"} {
		if !strings.Contains(list.String(), want) {
			t.Errorf("round list --all lacks %q:\n%s", want, list.String())
		}
	}

	// A long job is cancelled while watched.
	stuck := submit("blobs", 100000)
	errc := make(chan error, 1)
	var stuckOut syncBuffer
	go func() { errc <- watchTo(t.Context(), &stuckOut, stuck) }()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stuckOut.String(), "job "+stuck+" ("); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("watch printed no header within 10 s:\n%s", stuckOut.String())
		}
	}
	if _, err := admin.CancelJob(t.Context(), &pb.CancelJobRequest{JobId: stuck}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil || exitCode(err) == 0 || !strings.Contains(err.Error(), "CANCELLED") || !strings.Contains(stuckOut.String(), "CANCELLED after ") {
			t.Errorf("watching a cancelled job: exit %d (%v)\n%s; want a non-zero exit naming CANCELLED", exitCode(err), err, stuckOut.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("watch did not end within 20 s of the job's cancellation")
	}

	// An unknown job is an error at once.
	if out, err := watch(t.Context(), "job-0123456789ab"); err == nil || !strings.Contains(err.Error(), "job-0123456789ab") {
		t.Errorf("watching an unknown job: %v\n%s; want an error naming it", err, out)
	}
}

// syncBuffer is a bytes.Buffer that a test may read while a command
// writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fakeJobs is an admin client whose job advances one round per GetJob.
type fakeJobs struct {
	pb.AdminServiceClient // nil: only GetJob and ListRounds are called
	mu                    sync.Mutex
	calls                 int
	rounds                uint32
	final                 pb.JobStatus
}

func (f *fakeJobs) GetJob(ctx context.Context, in *pb.GetJobRequest, _ ...grpc.CallOption) (*pb.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	j := &pb.Job{Id: in.JobId, Status: pb.JobStatus_JOB_STATUS_RUNNING, CommittedRounds: uint32(min(f.calls-1, int(f.rounds))),
		Spec: &pb.JobSpec{Name: "fake", Model: "logreg:8-3", Dataset: "blobs", Rounds: f.rounds, TargetAccuracy: 0.9}}
	if j.CommittedRounds == f.rounds {
		j.Status, j.Reason = f.final, "the end"
	}
	return j, nil
}

func (f *fakeJobs) ListRounds(ctx context.Context, in *pb.ListRoundsRequest, _ ...grpc.CallOption) (*pb.ListRoundsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &pb.ListRoundsResponse{}
	for n := uint32(1); n <= uint32(min(f.calls-1, int(f.rounds))); n++ {
		out.Rounds = append(out.Rounds, &pb.Round{JobId: in.JobId, Number: n, Attempt: 1, Status: pb.RoundStatus_ROUND_STATUS_COMMITTED,
			Contributors: []string{"a", "b"}, Evaluation: &pb.Evaluation{Examples: 100, Correct: uint64(20 * n)}})
	}
	return out, nil
}

// TestJobWatchOnATerminal: on a terminal, watch redraws one line in place
// (carriage return, erase line) with the bar, then ends it with a newline
// and the job's end; a FAILED job exits non-zero.
func TestJobWatchOnATerminal(t *testing.T) {
	for _, final := range []pb.JobStatus{pb.JobStatus_JOB_STATUS_SUCCEEDED, pb.JobStatus_JOB_STATUS_FAILED} {
		var out bytes.Buffer
		w := &watcher{out: &out, tty: true, width: 100}
		err := w.watch(t.Context(), &fakeJobs{rounds: 4, final: final}, "job-0123456789ab", time.Millisecond)
		if (err != nil) != (final == pb.JobStatus_JOB_STATUS_FAILED) {
			t.Errorf("%s: watch returned %v", final, err)
		}
		got := out.String()
		if n := strings.Count(got, "\r\x1b[2K"); n < 4 {
			t.Errorf("%s: the line was drawn %d times; want once a round:\n%q", final, n, got)
		}
		if strings.Contains(got, "committed:") {
			t.Errorf("%s: committed rounds scrolled on a terminal:\n%q", final, got)
		}
		for _, want := range []string{"round 2/4  acc 40.00% (target 90.00%)", "round 4/4  acc 80.00%",
			"\njob job-0123456789ab " + strings.TrimPrefix(final.String(), "JOB_STATUS_") + " after 4 rounds, accuracy 80.00%: the end\n"} {
			if !strings.Contains(got, want) {
				t.Errorf("%s: output lacks %q:\n%q", final, want, got)
			}
		}
	}
}
