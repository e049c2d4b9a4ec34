package state

import (
	"fmt"
	"slices"
	"sort"

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// Retain is a job's retain policy: which committed models every coordinator
// keeps. The others are deleted once the job has committed past them, so
// disk does not grow with every round of every job.
type Retain struct {
	// All keeps every model; the other fields are then ignored.
	All bool `yaml:"all" json:"all,omitempty"`
	// Last keeps the last N committed models (the latest is the next
	// round's base, so at least 1).
	Last uint32 `yaml:"last" json:"last,omitempty"`
	// Every keeps every k-th round's model (round 0, the initial model,
	// included).
	Every uint32 `yaml:"every" json:"every,omitempty"`
	// Best keeps the B models with the best federated accuracy.
	Best uint32 `yaml:"best" json:"best,omitempty"`
}

// DefaultRetain is a job's retain policy when its file names none: the
// last 10 models and the best one.
var DefaultRetain = Retain{Last: 10, Best: 1}

// retain is the job's policy, defaulted.
func (s JobSpec) retain() Retain {
	if s.Retain == nil {
		return DefaultRetain
	}
	return *s.Retain
}

func (r Retain) validate() error {
	if !r.All && r.Last < 1 {
		return fmt.Errorf("%w: retain.last %d: keep at least the last model (or set all: true)", ErrBadJobSpec, r.Last)
	}
	if r.Last > 1_000_000 || r.Every > 1_000_000 || r.Best > 1_000_000 {
		return fmt.Errorf("%w: retain: at most 1000000 each", ErrBadJobSpec)
	}
	return nil
}

func (r *Retain) toProto() *pb.Retain {
	if r == nil {
		return nil
	}
	return &pb.Retain{All: r.All, Last: r.Last, Every: r.Every, Best: r.Best}
}

func retainFromProto(p *pb.Retain) *Retain {
	if p == nil {
		return nil
	}
	return &Retain{All: p.All, Last: p.Last, Every: p.Every, Best: p.Best}
}

// Retained lists the rounds (0: the initial model) whose models the job
// keeps.
func (j *Job) Retained() map[uint32]bool {
	keep := map[uint32]bool{}
	if j.ModelsDeleted {
		return keep
	}
	r := j.Spec.retain()
	n := j.CommittedRounds
	consider := func(i uint32) {
		switch {
		case r.All, n-i < r.Last, r.Every > 0 && i%r.Every == 0:
			keep[i] = true
		}
	}
	consider(0)
	for _, rr := range j.Rounds {
		if rr.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED && rr.Number <= n {
			consider(rr.Number)
		}
	}
	if r.Best > 0 {
		type scored struct {
			round uint32
			acc   float64
		}
		var evals []scored
		if j.InitialEval != nil {
			evals = append(evals, scored{0, j.InitialEval.Accuracy()})
		}
		for _, rr := range j.Rounds {
			if rr.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED && rr.Eval != nil {
				evals = append(evals, scored{rr.Number, rr.Eval.Accuracy()})
			}
		}
		sort.SliceStable(evals, func(a, b int) bool { return evals[a].acc > evals[b].acc })
		for _, e := range evals[:min(len(evals), int(r.Best))] {
			keep[e.round] = true
		}
	}
	return keep
}

// ModelDigests returns the digests of the job's models and server
// optimiser states, kept and deleted.
func (j *Job) ModelDigests() (kept, deleted []string) {
	keep := j.Retained()
	add := func(round uint32, d string) {
		if keep[round] {
			kept = append(kept, d)
		} else {
			deleted = append(deleted, d)
		}
	}
	add(0, j.InitialDigest)
	for _, r := range j.Rounds {
		if r.Status != pb.RoundStatus_ROUND_STATUS_COMMITTED {
			continue
		}
		add(r.Number, r.Digest)
		if r.OptimizerDigest != "" {
			// The server optimiser's state goes with the model it produced.
			add(r.Number, r.OptimizerDigest)
		}
	}
	return kept, deleted
}

// PrunableDigests lists the models that some job named and no job keeps:
// each coordinator deletes them from its store.
func (f *FSM) PrunableDigests() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	keep := map[string]bool{}
	var candidates []string
	for _, j := range f.st.Jobs {
		kept, deleted := j.ModelDigests()
		for _, d := range kept {
			keep[d] = true
		}
		candidates = append(candidates, deleted...)
	}
	out := slices.DeleteFunc(candidates, func(d string) bool { return keep[d] })
	slices.Sort(out)
	return slices.Compact(out)
}

// applyDelete marks a finished job's models deleted (an approved
// delete_job proposal).
func (f *FSM) deleteJobModels(p *Proposal) {
	j := f.st.Jobs[p.JobID]
	if j == nil || j.Running() || j.Status == pb.JobStatus_JOB_STATUS_PENDING_APPROVAL {
		p.Status, p.Outcome = proposalFailed, "job is not finished"
		return
	}
	f.editJob(j).ModelsDeleted = true
	p.Outcome = "models deleted"
}
