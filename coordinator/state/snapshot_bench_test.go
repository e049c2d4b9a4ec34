package state

import (
	"fmt"
	"testing"

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// jobWithHistory is a running job whose first rounds committed rounds are
// written into an FSM's state directly, with round rounds+1 open, as a
// leader finds it on every tick while the round's updates arrive.
func jobWithHistory(f *FSM, id string, rounds int) *Job {
	spec := DefaultJobSpec()
	spec.Rounds = 1_000_000
	j := &Job{ID: id, Spec: spec, Status: pb.JobStatus_JOB_STATUS_RUNNING, InitialDigest: "sha256:initial"}
	cohort := make([]string, 10)
	for i := range cohort {
		cohort[i] = fmt.Sprintf("participant-%03d", i)
	}
	for n := 1; n <= rounds+1; n++ {
		r := &RoundRecord{Number: uint32(n), Attempt: 1, Status: pb.RoundStatus_ROUND_STATUS_COMMITTED, Cohort: cohort,
			Contributors: cohort, BaseDigest: fmt.Sprintf("sha256:%064d", n-1), Digest: fmt.Sprintf("sha256:%064d", n),
			OpenedAt: int64(n) * 1000, Deadline: int64(n)*1000 + 60_000, ClosedAt: int64(n)*1000 + 500, Examples: 6000,
			Eval: &Evaluation{Reporters: 10, Examples: 1000, Correct: 970}}
		if n == rounds+1 {
			r.Status, r.Contributors, r.Digest, r.ClosedAt, r.Examples, r.Eval = pb.RoundStatus_ROUND_STATUS_OPEN, nil, "", 0, 0, nil
		}
		j.Rounds = append(j.Rounds, r)
	}
	j.CommittedRounds = uint32(rounds)
	f.mu.Lock()
	f.st.Jobs[id] = j
	f.mu.Unlock()
	return j
}

// BenchmarkSnapshotCapture is FSM.Snapshot, the part of a Raft snapshot
// that holds the FSM's lock (applies wait for it), after 10 and 10,000
// committed rounds; Persist, outside the lock, writes the jobs.
//
//	go test -run '^$' -bench SnapshotCapture ./coordinator/
func BenchmarkSnapshotCapture(b *testing.B) {
	for _, rounds := range []int{10, 10_000} {
		b.Run(fmt.Sprintf("rounds=%d", rounds), func(b *testing.B) {
			f := NewFSM(nil)
			jobWithHistory(f, "job-000000000001", rounds)
			for b.Loop() {
				if _, err := f.Snapshot(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
