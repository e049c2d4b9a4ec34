package scenarios

import (
	"context"
	"fmt"
	"time"

	"github.com/accord-fl/accord/model"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// watcher follows a job to its end, as both runners do: it lists the
// rounds, evaluates every committed model on the test set (and on each
// region's own), reports aborted attempts, fires the timeline's commit
// events and prints a line per round.
type watcher struct {
	sc          *Scenario
	admin       *admins
	jobID       string
	tl          *timeline
	start       time.Time
	say         func(format string, args ...any)
	test        *model.Dataset
	regionTests map[string]*model.Dataset
	regionOf    map[string]string // participant ID → region
	// pageSize is ListRounds' page size (0: the coordinator's default).
	pageSize uint32
	// poll is the time between listings.
	poll time.Duration
	// fireOnSight, for runners without participant hooks, fires a round's
	// open and upload events when the round is first listed.
	fireOnSight bool
	// beforePoll, if set, runs before every listing.
	beforePoll func()
}

// run watches until the job ends and its committed rounds are all in rep;
// it returns the job as it ended.
func (w *watcher) run(ctx context.Context, rep *Report) (*pb.Job, error) {
	spec := model.MustParseSpec(w.sc.Job.Model)
	seen := map[uint32]bool{}           // committed rounds reported
	listed := map[uint32]bool{}         // rounds seen at all
	seenAborted := map[[2]uint32]bool{} // aborted (round, attempt) reported
	seenClosed := map[[2]uint32]bool{}  // closed (round, attempt) listed in rep.Attempts
	var lastClosed int64                // the last committed round's close, unix ms
	var pageToken string
	for {
		if w.beforePoll != nil {
			w.beforePoll()
		}
		job, err := w.admin.GetJob(ctx, &pb.GetJobRequest{JobId: w.jobID})
		if err != nil {
			return nil, fmt.Errorf("watching job: %w", err)
		}
		// Rounds come in pages of 500: read on from the page holding the
		// rounds not yet seen (a job past 500 rounds once stalled the
		// runner on its first page).
		rounds, err := w.admin.ListRounds(ctx, &pb.ListRoundsRequest{JobId: w.jobID, IncludeAborted: true, PageToken: pageToken, PageSize: w.pageSize})
		if err != nil {
			return nil, fmt.Errorf("watching rounds: %w", err)
		}
		if rounds.NextPageToken != "" {
			pageToken = rounds.NextPageToken
		}
		for _, r := range rounds.Rounds {
			if w.fireOnSight && !listed[r.Number] {
				w.tl.fireRound(r.Number, PhaseOpen)
				w.tl.fireRound(r.Number, PhaseUpload)
			}
			listed[r.Number] = true
			key := [2]uint32{r.Number, r.Attempt}
			if r.Status != pb.RoundStatus_ROUND_STATUS_OPEN && !seenClosed[key] {
				seenClosed[key] = true
				a := attemptReport(r)
				rep.Attempts = append(rep.Attempts, a)
				if a.AtDeadline {
					rep.AttemptsAtDeadline++
				}
			}
			if r.Status == pb.RoundStatus_ROUND_STATUS_ABORTED && !seenAborted[key] {
				seenAborted[key] = true
				rep.RoundsAborted++
				rep.Aborted = append(rep.Aborted, AbortReport{Round: r.Number, Attempt: r.Attempt, Reason: r.Reason, Cohort: len(r.Cohort),
					Responders: len(r.Responders), Seconds: float64(r.ClosedUnixMs-r.OpenedUnixMs) / 1000, SecondsSinceStart: time.Since(w.start).Seconds()})
				w.say("round %3d attempt %d aborted after %.2fs (cohort %d, %d answered): %s", r.Number, r.Attempt,
					float64(r.ClosedUnixMs-r.OpenedUnixMs)/1000, len(r.Cohort), len(r.Responders), r.Reason)
			}
			if r.Status != pb.RoundStatus_ROUND_STATUS_COMMITTED || seen[r.Number] {
				continue
			}
			seen[r.Number] = true
			rr, err := w.evaluate(ctx, r, spec)
			if err != nil {
				return nil, err
			}
			prevClosed := r.OpenedUnixMs
			if len(rep.Rounds) > 0 {
				prevClosed = lastClosed
			}
			lastClosed = r.ClosedUnixMs
			rr.SecondsSincePrevious = float64(r.ClosedUnixMs-prevClosed) / 1000
			rr.SecondsSinceStart = time.Since(w.start).Seconds()
			rep.Rounds = append(rep.Rounds, rr)
			rep.BestAccuracy = max(rep.BestAccuracy, rr.Accuracy)
			marker := ""
			if rep.TargetReachedAtRound == nil && w.sc.Job.TargetAccuracy > 0 && rr.Accuracy >= w.sc.Job.TargetAccuracy {
				n := r.Number
				rep.TargetReachedAtRound, rep.TargetReachedAtSeconds = &n, &rr.SecondsSinceStart
				marker = "  ← target reached"
			}
			privacy, clock := "", ""
			if r.Epsilon > 0 {
				privacy = fmt.Sprintf("  ε %.3f", r.Epsilon)
			}
			if r.SimulatedUnixMs != 0 {
				clock = "  at " + time.UnixMilli(r.SimulatedUnixMs).UTC().Format("Mon 15:04 UTC")
			}
			w.say("round %3d  cohort %3d  contributors %3d  test accuracy %6.2f%%  loss %.4f  round %.2fs%s%s%s  (%s)",
				r.Number, len(r.Cohort), len(r.Contributors), 100*rr.Accuracy, rr.Loss, rr.Seconds, clock, privacy, marker, r.Reason)
			w.tl.commit(r.Number)
		}
		if job.Status != pb.JobStatus_JOB_STATUS_RUNNING {
			// Pick up rounds committed since the last listing, then stop.
			if uint32(len(rep.Rounds)) >= job.CommittedRounds {
				rep.JobStatus, rep.JobReason, rep.RoundsCommitted = job.Status.String(), job.Reason, job.CommittedRounds
				rep.summarise()
				return job, nil
			}
			if rounds.NextPageToken != "" {
				continue // more pages to read now
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("scenario %s did not finish: %w", w.sc.Name, ctx.Err())
		case <-time.After(w.poll):
		}
	}
}

// evaluate pulls a committed round's model and evaluates it on the test
// set and on each region's own test data.
func (w *watcher) evaluate(ctx context.Context, r *pb.Round, spec model.Spec) (RoundReport, error) {
	params, err := pull(ctx, w.admin, w.jobID, r.Number, r.ModelDigest)
	if err != nil {
		return RoundReport{}, err
	}
	m := &model.Model{Spec: spec, Params: params}
	met, err := model.Evaluate(ctx, m, w.test)
	if err != nil {
		return RoundReport{}, err
	}
	rr := RoundReport{Round: r.Number, Attempt: r.Attempt, Cohort: len(r.Cohort), Contributors: len(r.Contributors),
		Accuracy: met.Accuracy, Loss: met.Loss, Seconds: float64(r.ClosedUnixMs-r.OpenedUnixMs) / 1000,
		ModelDigest: r.ModelDigest, Epsilon: r.Epsilon, ContributorsByRegion: map[string]int{}}
	if r.SimulatedUnixMs != 0 {
		rr.SimulatedTime = time.UnixMilli(r.SimulatedUnixMs).UTC().Format(time.RFC3339)
	}
	for _, id := range r.Contributors {
		rr.ContributorsByRegion[w.regionOf[id]]++
	}
	if len(w.regionTests) > 1 {
		rr.AccuracyByRegion = map[string]float64{}
		for region, ds := range w.regionTests {
			rm, err := model.Evaluate(ctx, m, ds)
			if err != nil {
				return RoundReport{}, err
			}
			rr.AccuracyByRegion[region] = rm.Accuracy
		}
	}
	return rr, nil
}

// summarise fills the figures computed from the rounds.
func (rep *Report) summarise() {
	n := len(rep.Rounds)
	if n == 0 {
		return
	}
	rep.FinalAccuracy = rep.Rounds[n-1].Accuracy
	var sum float64
	for _, r := range rep.Rounds {
		sum += r.Seconds
	}
	rep.MeanRoundSeconds = sum / float64(n)
}
