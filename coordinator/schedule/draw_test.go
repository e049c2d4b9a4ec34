package schedule

import (
	"fmt"
	"slices"
	"testing"

	"github.com/accord-fl/accord/coordinator/state"
)

// TestChooseWeighted: without weights the choice is the one choose always
// made; with them it is reproducible from the seed, and a participant at
// the floor weight is drawn less often than the others but not never.
func TestChooseWeighted(t *testing.T) {
	ids := names("p", 10)
	for seed := range uint64(20) {
		if a, b := chooseWeighted(ids, 5, nil, seededRand(seed, 1, 1)), choose(ids, 5, seededRand(seed, 1, 1)); !slices.Equal(a, b) {
			t.Fatalf("seed %d: unweighted %v; choose %v", seed, a, b)
		}
	}
	weights := map[string]float64{"p0": state.MinSelectionWeight, "p1": 0.5}
	if a, b := chooseWeighted(ids, 5, weights, seededRand(7, 3, 1)), chooseWeighted(ids, 5, weights, seededRand(7, 3, 1)); !slices.Equal(a, b) {
		t.Fatalf("the same seed drew %v and %v", a, b)
	}
	const draws = 4000
	count := map[string]int{}
	for i := range uint64(draws) {
		for _, id := range chooseWeighted(ids, 5, weights, seededRand(1, i, 1)) {
			count[id]++
		}
	}
	reliable := float64(count["p9"]) / draws
	floor := float64(count["p0"]) / draws
	half := float64(count["p1"]) / draws
	t.Logf("chosen in 5 of 10: weight 1 %.3f, weight 0.5 %.3f, weight 0.1 %.3f", reliable, half, floor)
	if !(floor > 0.02 && floor < half && half < reliable) {
		t.Errorf("shares chosen: weight 0.1 %.3f, 0.5 %.3f, 1 %.3f; want 0.02 < w0.1 < w0.5 < w1", floor, half, reliable)
	}
}

// names returns n participant names with a prefix.
func names(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}
