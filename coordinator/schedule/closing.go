package schedule

import (
	"slices"
	"time"

	"github.com/accord-fl/accord/coordinator/state"
)

// minStragglerWait is the least time a round or a secure-aggregation phase
// runs before the straggler rule may close it: below it, scheduling and
// network jitter, not slow members, set the spread of answer times.
const minStragglerWait = 2 * time.Second

// stragglersCut is the straggler rule: a round (or phase) that waits for
// size members, of which those in arrived answered (their times since it
// opened, in order), stops waiting once at least half of them answered —
// so its median member's time m is known — and it has run
// max(minStragglerWait, factor × m) plus budget (the job's local time
// budget: a member that runs out of it sends its partial work at about
// that time). factor 0 turns the rule off.
func stragglersCut(arrived []time.Duration, size int, factor float64, budget, elapsed time.Duration) bool {
	if factor <= 0 || size <= 0 || len(arrived) < (size+1)/2 {
		return false
	}
	wait := max(minStragglerWait, time.Duration(factor*float64(median(arrived, size))))
	return elapsed >= wait+budget
}

// median is the time the median member of size took, given the answer
// times in arrived (those that did not answer count as slower than all):
// the ⌈size/2⌉-th smallest, or 0 if fewer answered.
func median(arrived []time.Duration, size int) time.Duration {
	m := (size + 1) / 2
	if m < 1 || len(arrived) < m {
		return 0
	}
	sorted := slices.Sorted(slices.Values(arrived))
	return sorted[m-1]
}

// roundDuration prints d to the millisecond, as abort reasons give times.
func roundDuration(d time.Duration) string { return d.Round(time.Millisecond).String() }

// WithReasons appends to an abort reason why cohort members refused or
// failed the round's task, if any did.
func WithReasons(reason string, reasons map[string]string) string {
	if s := state.RefusalSummary(reasons); s != "" {
		return reason + "; " + s
	}
	return reason
}
