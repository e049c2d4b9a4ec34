package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/accord-fl/accord/coordinator"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// Watching a job: `accord job watch ID` asks a coordinator for the job
// every --interval and for its rounds when they may have changed. On a
// terminal it redraws one line in place, a progress bar toward the job's
// end (its round limit or its target accuracy, whichever comes first);
// otherwise (a pipe, a file, CI) it prints one line per closed round
// attempt, or with --json one JSON object per line. It exits 0 once the
// job SUCCEEDED, 1 once it FAILED or was CANCELLED.

const (
	// watchUnavailableFor is how long watch rides out coordinators that
	// do not answer (a leader election, a restart) before giving up.
	watchUnavailableFor = time.Minute
	// watchRoundsEvery is how often the rounds are listed even when the
	// job's committed count has not moved, to report aborted attempts.
	watchRoundsEvery = 10 * time.Second
)

func (m *Main) runJobWatch(ctx context.Context, args []string) error {
	var interval time.Duration
	c, pos, asJSON, err := m.adminCommand("job watch", "ID [--interval 2s] [--json]", args, func(fs *flag.FlagSet) {
		fs.DurationVar(&interval, "interval", 2*time.Second, "how often to ask the coordinator")
	})
	if err != nil {
		return err
	}
	defer c.conn.Close()
	if len(pos) != 1 {
		return usageError{fmt.Errorf("job watch: name one job ID")}
	}
	if interval < 100*time.Millisecond {
		return usageError{fmt.Errorf("--interval %s: want at least 100ms", interval)}
	}
	w := &watcher{out: m.Stdout, json: asJSON, width: 80}
	if f, ok := m.Stdout.(*os.File); ok && !asJSON && term.IsTerminal(int(f.Fd())) {
		w.tty = true
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			w.width = cols
		}
	}
	return w.watch(ctx, c.client, pos[0], interval)
}

// watcher follows one job and reports it to out.
type watcher struct {
	out   io.Writer
	tty   bool // redraw one line in place
	json  bool // JSON lines
	width int  // the terminal's columns

	job       *pb.Job
	attempts  []*pb.Round // every attempt listed so far
	printed   int         // attempts reported (closed ones, in order)
	lastDrawn string
}

// watch polls until the job ends or ctx is done.
func (w *watcher) watch(ctx context.Context, client pb.AdminServiceClient, id string, interval time.Duration) error {
	var lastOK, lastRounds time.Time
	lastOK = time.Now()
	committed := uint32(0)
	for first := true; ; first = false {
		listed, err := w.poll(ctx, client, id, interval, first || time.Since(lastRounds) >= watchRoundsEvery, &committed)
		switch {
		case err == nil:
			lastOK = time.Now()
			if listed {
				lastRounds = time.Now()
			}
		case ctx.Err() != nil:
			return w.stopped(id, ctx.Err())
		case w.job != nil && watchRetryable(err) && time.Since(lastOK) < watchUnavailableFor:
			// Once the job was seen: a first call that fails is a wrong
			// address or certificate, and retrying would only hide it.
			w.note(fmt.Sprintf("no answer from the coordinator (%s); retrying", status.Code(err)))
		default:
			w.finishLine()
			return fmt.Errorf("watching job %s: %w", id, err)
		}
		if w.job != nil {
			switch w.job.Status {
			case pb.JobStatus_JOB_STATUS_SUCCEEDED:
				return w.end(nil)
			case pb.JobStatus_JOB_STATUS_FAILED, pb.JobStatus_JOB_STATUS_CANCELLED:
				return w.end(fmt.Errorf("job %s %s: %s", w.job.Id, shortJobStatus(w.job.Status), orDefault(w.job.Reason, "no reason given")))
			}
		}
		select {
		case <-ctx.Done():
			return w.stopped(id, ctx.Err())
		case <-time.After(interval):
		}
	}
}

// poll asks for the job and, when its committed rounds moved, it ended,
// or listRounds is set, for its rounds (then listed is true); it reports
// what is new.
func (w *watcher) poll(ctx context.Context, client pb.AdminServiceClient, id string, interval time.Duration, listRounds bool, committed *uint32) (listed bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, max(5*time.Second, 2*interval))
	defer cancel()
	j, err := client.GetJob(cctx, &pb.GetJobRequest{JobId: id})
	if err != nil {
		return false, err
	}
	if w.job == nil {
		w.job = j
		w.header()
	}
	w.job = j
	ended := j.Status != pb.JobStatus_JOB_STATUS_RUNNING && j.Status != pb.JobStatus_JOB_STATUS_PENDING_APPROVAL
	if !listRounds && !ended && j.CommittedRounds == *committed {
		w.draw()
		return false, nil
	}
	var all []*pb.Round
	for token := ""; ; {
		page, err := client.ListRounds(cctx, &pb.ListRoundsRequest{JobId: id, IncludeAborted: true, PageToken: token})
		if err != nil {
			return false, err
		}
		all = append(all, page.Rounds...)
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	*committed = j.CommittedRounds
	w.attempts = all
	w.report()
	w.draw()
	return true, nil
}

// header introduces the job.
func (w *watcher) header() {
	if w.json {
		return
	}
	j := w.job
	target := "no target accuracy"
	if t := j.Spec.GetTargetAccuracy(); t > 0 {
		target = fmt.Sprintf("target accuracy %.2f%%", 100*t)
	}
	fmt.Fprintf(w.out, "job %s (%s): %s on %s, up to %d rounds, %s\n", j.Id, j.Spec.GetName(), j.Spec.GetModel(), j.Spec.GetDataset(),
		j.Spec.GetRounds(), target)
}

// report prints the attempts that closed since the last report, in order
// (an open attempt holds back those after it). A committed round waits for
// its federated evaluation, which the next round's cohort reports, until
// a later attempt closed or the job ended.
func (w *watcher) report() {
	ended := w.job.Status != pb.JobStatus_JOB_STATUS_RUNNING && w.job.Status != pb.JobStatus_JOB_STATUS_PENDING_APPROVAL
	for w.printed < len(w.attempts) {
		r := w.attempts[w.printed]
		if r.Status == pb.RoundStatus_ROUND_STATUS_OPEN {
			return
		}
		if _, evaluated := accuracyOf(r); r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED && !evaluated && !ended {
			if next := w.printed + 1; next >= len(w.attempts) || w.attempts[next].Status == pb.RoundStatus_ROUND_STATUS_OPEN {
				return
			}
		}
		w.printed++
		switch {
		case w.json:
			b, _ := json.Marshal(map[string]any{"event": "round", "round": r})
			fmt.Fprintln(w.out, string(b))
		case w.tty && r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED:
			// The bar shows committed rounds; only aborts scroll above it.
		default:
			w.clearLine()
			fmt.Fprintln(w.out, roundLine(r, w.job.Spec.GetRounds()))
		}
	}
}

// roundLine is one closed attempt, as watch prints it off a terminal.
func roundLine(r *pb.Round, limit uint32) string {
	if r.Status != pb.RoundStatus_ROUND_STATUS_COMMITTED {
		return fmt.Sprintf("round %d/%d attempt %d %s: %s", r.Number, limit, r.Attempt, shortRoundStatus(r.Status), orDefault(r.Reason, "no reason given"))
	}
	acc := "not evaluated"
	if a, ok := accuracyOf(r); ok {
		acc = fmt.Sprintf("accuracy %.2f%%", 100*a)
	}
	line := fmt.Sprintf("round %d/%d committed: %s, %d contributors", r.Number, limit, acc, len(r.Contributors))
	if r.ClosedUnixMs > r.OpenedUnixMs {
		line += fmt.Sprintf(", %.2f s", float64(r.ClosedUnixMs-r.OpenedUnixMs)/1000)
	}
	if r.Epsilon > 0 {
		line += fmt.Sprintf(", ε %.3g", r.Epsilon)
	}
	return line
}

// lastAccuracy is the accuracy of the job's latest evaluated committed round.
func (w *watcher) lastAccuracy() (float64, bool) {
	for i := len(w.attempts) - 1; i >= 0; i-- {
		if r := w.attempts[i]; r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED {
			if a, ok := accuracyOf(r); ok {
				return a, true
			}
		}
	}
	return 0, false
}

func accuracyOf(r *pb.Round) (float64, bool) {
	e := r.Evaluation
	if e == nil || e.Examples == 0 {
		return 0, false
	}
	return float64(e.Correct) / float64(e.Examples), true
}

// draw redraws the progress line (on a terminal).
func (w *watcher) draw() {
	if !w.tty || w.job == nil {
		return
	}
	line := progressLine(w.job, w.accuracies(), w.width)
	if line == w.lastDrawn {
		return
	}
	fmt.Fprint(w.out, "\r\x1b[2K"+line)
	w.lastDrawn = line
}

// accuracies are the federated accuracies of the committed rounds listed
// so far, in order.
func (w *watcher) accuracies() []float64 {
	var out []float64
	for _, r := range w.attempts {
		if a, ok := accuracyOf(r); ok && r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED {
			out = append(out, a)
		}
	}
	return out
}

// progressLine is the line watch redraws on a terminal of width columns:
// status, a bar toward the job's end, rounds, last accuracy (of accs, the
// committed rounds' in order) and ε. The wire does not carry the initial
// model's accuracy, so the accuracy's share of the way to the target is
// measured from the first round's (the status page measures it from the
// initial model's). Details give way to the bar on a narrow terminal, and
// the bar to the numbers on a very narrow one.
func progressLine(j *pb.Job, accs []float64, width int) string {
	target := j.Spec.GetTargetAccuracy()
	var first, last float64
	if n := len(accs); n > 0 {
		first, last = accs[0], accs[n-1]
	}
	p := coordinator.Progress(j.CommittedRounds, j.Spec.GetRounds(), first, last, target)
	if j.Status == pb.JobStatus_JOB_STATUS_SUCCEEDED {
		p = 1
	}
	head := j.Id + " " + shortJobStatus(j.Status)
	if j.Status == pb.JobStatus_JOB_STATUS_PENDING_APPROVAL {
		return head + "  waiting for approvals"
	}
	short := fmt.Sprintf("%3.0f%%  round %d/%d", 100*p, j.CommittedRounds, j.Spec.GetRounds())
	long := short
	if len(accs) > 0 {
		short += fmt.Sprintf("  acc %.2f%%", 100*last)
		long = short
	}
	if target > 0 {
		long += fmt.Sprintf(" (target %.2f%%)", 100*target)
	}
	if pr := j.Privacy; pr != nil && pr.Epsilon > 0 {
		long += fmt.Sprintf("  ε %.3g", pr.Epsilon)
	}
	for _, nums := range []string{long, short} {
		barWidth := min(40, width-len([]rune(head))-len([]rune(nums))-5)
		if barWidth >= 10 {
			filled := int(p*float64(barWidth) + 0.5)
			return head + " [" + strings.Repeat("█", filled) + strings.Repeat("░", barWidth-filled) + "] " + nums
		}
	}
	line := []rune(head + "  " + strings.TrimLeft(long, " "))
	if len(line) > width-1 {
		line = append(line[:max(0, width-2)], '…')
	}
	return string(line)
}

// note shows a passing condition (a retry) without ending the bar.
func (w *watcher) note(msg string) {
	if w.json {
		return
	}
	w.clearLine()
	fmt.Fprintln(w.out, msg)
	w.lastDrawn = ""
	w.draw()
}

// clearLine wipes the progress line before other output.
func (w *watcher) clearLine() {
	if w.tty && w.lastDrawn != "" {
		fmt.Fprint(w.out, "\r\x1b[2K")
		w.lastDrawn = ""
	}
}

// finishLine ends the progress line, keeping it on screen.
func (w *watcher) finishLine() {
	if w.tty && w.lastDrawn != "" {
		fmt.Fprintln(w.out)
		w.lastDrawn = ""
	}
}

// end reports the job's end; err is what watch returns.
func (w *watcher) end(err error) error {
	w.finishLine()
	j := w.job
	if w.json {
		b, _ := json.Marshal(map[string]any{"event": "end", "job": j})
		fmt.Fprintln(w.out, string(b))
		return err
	}
	msg := fmt.Sprintf("job %s %s after %d rounds", j.Id, shortJobStatus(j.Status), j.CommittedRounds)
	if acc, ok := w.lastAccuracy(); ok {
		msg += fmt.Sprintf(", accuracy %.2f%%", 100*acc)
	}
	if j.Reason != "" {
		msg += ": " + j.Reason
	}
	fmt.Fprintln(w.out, msg)
	return err
}

// stopped ends a watch that was interrupted before the job ended.
func (w *watcher) stopped(id string, err error) error {
	w.finishLine()
	st := "unknown"
	if w.job != nil {
		st = shortJobStatus(w.job.Status)
	}
	return fmt.Errorf("stopped watching job %s (it goes on, %s): %w", id, st, err)
}

// watchRetryable reports whether a call may succeed if tried again: no
// leader for now, a coordinator restarting, a slow answer.
func watchRetryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return true
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// shortJobStatus is a job status without its prefix (RUNNING).
func shortJobStatus(s pb.JobStatus) string { return strings.TrimPrefix(s.String(), "JOB_STATUS_") }

// shortRoundStatus is a round status without its prefix (COMMITTED).
func shortRoundStatus(s pb.RoundStatus) string {
	return strings.TrimPrefix(s.String(), "ROUND_STATUS_")
}
