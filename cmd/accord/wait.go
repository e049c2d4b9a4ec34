package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// pollInterval is how often a waiting command asks the coordinators again.
const pollInterval = 500 * time.Millisecond

// defaultListWait bounds members list --wait-for and participants list
// --wait-for unless --wait-timeout says otherwise: long enough for
// coordinators to elect a leader and participants to load their data.
const defaultListWait = 5 * time.Minute

// waitMode is job submit's --wait: "" (do not wait), "round" (until the
// job has a committed round, or ends: what --wait alone asks) or "done"
// (until the job ends).
type waitMode string

func (w *waitMode) String() string {
	if w == nil {
		return ""
	}
	return string(*w)
}

func (w *waitMode) Set(s string) error {
	switch s {
	case "true", "round":
		*w = "round"
	case "false":
		*w = ""
	case "done":
		*w = "done"
	default:
		return fmt.Errorf("%q: want --wait (until a round is committed) or --wait=done (until the job ends)", s)
	}
	return nil
}

// IsBoolFlag lets --wait stand alone, as a boolean flag does.
func (w *waitMode) IsBoolFlag() bool { return true }

// transient reports whether a failed call is worth asking again while
// waiting: no coordinator answered yet, or none knows a leader yet. A
// coordinator that refused this certificate will go on refusing it.
func transient(err error) bool {
	var u *unreachableError
	if errors.As(err, &u) {
		return !u.refused
	}
	return status.Code(err) == codes.Unavailable
}

// waitUntil calls check every pollInterval until it says done, ctx ends or
// timeout passes (0: no limit). Calls that reach no coordinator, or none
// that knows a leader, are asked again. Each new status check reports is
// printed to w, so a long wait shows what it waits for.
func waitUntil(ctx context.Context, w io.Writer, timeout time.Duration, what string, check func(context.Context) (done bool, state string, err error)) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var last string
	for {
		callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		done, state, err := check(callCtx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && transient(err):
			state = err.Error()
		case err != nil:
			if ctx.Err() != nil {
				break
			}
			return err
		case done:
			return nil
		}
		if state != last && state != "" {
			fmt.Fprintf(w, "waiting for %s: %s\n", what, state)
			last = state
		}
		select {
		case <-ctx.Done():
			if timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("gave up waiting for %s after %s (--wait-timeout); last: %s", what, timeout, last)
			}
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// waitJob waits until job id has a committed round (mode "round") or has
// ended, and returns it as last seen.
func (m *Main) waitJob(ctx context.Context, client pb.AdminServiceClient, id string, mode waitMode, timeout time.Duration) (*pb.Job, error) {
	var job *pb.Job
	err := waitUntil(ctx, m.Stderr, timeout, "job "+id, func(ctx context.Context) (bool, string, error) {
		j, err := client.GetJob(ctx, &pb.GetJobRequest{JobId: id})
		if status.Code(err) == codes.NotFound {
			return false, "not on this coordinator yet", nil
		}
		if err != nil {
			return false, "", err
		}
		job = j
		if j.Status != pb.JobStatus_JOB_STATUS_RUNNING && j.Status != pb.JobStatus_JOB_STATUS_PENDING_APPROVAL {
			return true, "", nil
		}
		if mode == "round" && j.CommittedRounds > 0 {
			return true, "", nil
		}
		state := fmt.Sprintf("%s, %d of %d rounds committed", j.Status, j.CommittedRounds, j.Spec.GetRounds())
		if n := len(j.TaskFailures); n > 0 {
			f := j.TaskFailures[n-1]
			state += fmt.Sprintf("; %s reported: %s", f.Participant, f.Reason)
		}
		return false, state, nil
	})
	return job, err
}

// jobEnded turns a job that ended without success into an error carrying
// its reason.
func jobEnded(j *pb.Job) error {
	switch j.Status {
	case pb.JobStatus_JOB_STATUS_FAILED, pb.JobStatus_JOB_STATUS_CANCELLED:
		return fmt.Errorf("job %s %s: %s", j.Id, j.Status, j.Reason)
	}
	return nil
}
