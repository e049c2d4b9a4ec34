package state

import (
	"math"
)

// Over-selection and the selection weighting: how many participants a
// round draws, and how likely each is to be drawn. Both are functions of
// the job's replicated record, so every leader makes the same choice from
// the same seed (see DESIGN.md, "Rounds on the leader").

// observedWindow is how many of a job's latest attempts that recorded who
// answered give its observed dropout rate.
const observedWindow = 5

// selectionWindow is how many of a job's attempts that recorded who
// answered, before its latest, give a participant's selection weight.
const selectionWindow = 10

// MinSelectionWeight is the floor of a participant's selection weight: one
// that was silent in every recent attempt is still drawn about a tenth as
// often as one that always answered, so nobody is starved.
const MinSelectionWeight = 0.1

// recentAnswered returns the job's latest n attempts that recorded who
// answered them, newest first.
func (j *Job) recentAnswered(n int) []*RoundRecord {
	var out []*RoundRecord
	for i := len(j.Rounds) - 1; i >= 0 && len(out) < n; i-- {
		if r := j.Rounds[i]; r.answersKnown() {
			out = append(out, r)
		}
	}
	return out
}

// observedDropout is the share of cohort members recorded silent in the
// job's last observedWindow attempts that recorded who answered (0 before
// any). A member whose update arrived after its round closed is late, not
// silent: it does not count.
func (j *Job) observedDropout() float64 {
	silent, chosen := 0, 0
	for _, r := range j.recentAnswered(observedWindow) {
		silent += len(r.Silent)
		chosen += len(r.Cohort)
	}
	if chosen == 0 {
		return 0
	}
	return float64(silent) / float64(chosen)
}

// expectedDropout is the share of a cohort the leader expects not to
// answer: the job's expected_dropout, else its secure_aggregation
// dropout_rate when set, else the rate observed in its recent attempts.
func (j *Job) expectedDropout() float64 {
	s := j.Spec
	switch {
	case s.ExpectedDropout > 0:
		return s.ExpectedDropout
	case s.SecureAggregation.Enabled() && s.SecureAggregation.DropoutRate > 0:
		return s.SecureAggregation.DropoutRate
	}
	return j.observedDropout()
}

// CohortSize is how many of available candidates a round that wants
// updates selects: ⌈wanted / (1 − rate)⌉ for the expected dropout rate,
// at most max_over_selection × wanted, at least wanted, and never more than
// are available (nor than a secure round takes).
func (j *Job) CohortSize(wanted, available int) int {
	rate := j.expectedDropout()
	n := wanted
	if rate > 0 && rate < 1 {
		// The small epsilon keeps 6 / (1 − 1/3) at 9, not 10.
		n = int(math.Ceil(float64(wanted)/(1-rate) - 1e-9))
	}
	n = min(n, int(math.Floor(float64(wanted)*j.Spec.maxOverSelection()+1e-9)))
	n = max(n, wanted)
	if j.Spec.SecureAggregation.Enabled() {
		n = min(n, MaxSecureCohort)
	}
	return min(n, available)
}

// SelectionWeights gives each participant a weight from its record on the
// job: over the selectionWindow attempts that recorded who answered before
// the job's latest one, a participant chosen c times and silent in m of
// them weighs (1 + c − m) / (1 + c), and never less than
// minSelectionWeight. One never chosen, or never silent, weighs 1. A late
// update is an answer; the latest attempt does not count yet, since the
// next round opens as it closes, while its late updates may still be on
// their way. It returns nil when everyone weighs 1.
func (j *Job) SelectionWeights() map[string]float64 {
	settled := j.recentAnswered(selectionWindow + 1)
	if len(settled) > 0 {
		settled = settled[1:]
	}
	chosen, missed := map[string]int{}, map[string]int{}
	for _, r := range settled {
		for _, id := range r.Cohort {
			chosen[id]++
		}
		for _, id := range r.Silent {
			missed[id]++
		}
	}
	if len(missed) == 0 {
		return nil
	}
	w := map[string]float64{}
	for id, m := range missed {
		c := chosen[id]
		w[id] = max(MinSelectionWeight, float64(1+c-m)/float64(1+c))
	}
	return w
}
