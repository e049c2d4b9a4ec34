package schedule

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/accord-fl/accord/aggregate"
	"github.com/accord-fl/accord/coordinator/state"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// TestPartialWorkWeighsItsShare: an update that completed 2 of 4 local
// epochs (its time budget ran out) weighs half its examples.
func TestPartialWorkWeighsItsShare(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := NewRound("j", 1, 1, []string{"full", "half"}, map[string]uint64{"full": 100, "half": 100}, 1, "d", t0.Add(time.Minute), 2, aggregate.NewFedAvg(1))
	r.epochs = 4
	for _, u := range []struct {
		from  string
		done  uint32
		delta float32
	}{{"full", 0, 3}, {"half", 2, 0}} {
		h := &pb.UpdateHeader{JobId: "j", Round: 1, Attempt: 1, BaseModelDigest: "d", NumParams: 1, Examples: 100, EpochsDone: u.done}
		if err := r.Admit(u.from, h, t0); err != nil {
			t.Fatal(err)
		}
		if err := r.Add(u.from, []float32{u.delta}); err != nil {
			t.Fatal(err)
		}
	}
	delta, err := r.update(nil)
	if err != nil {
		t.Fatal(err)
	}
	// (100·3 + 50·0) / 150 = 2.
	if math.Abs(float64(delta[0])-2) > 1e-6 || r.examples != 150 {
		t.Fatalf("combined update %v from %d examples; want 2 from 150", delta, r.examples)
	}
	h := &pb.UpdateHeader{JobId: "j", Round: 1, Attempt: 1, BaseModelDigest: "d", NumParams: 1, Examples: 100, EpochsDone: 5}
	r2 := NewRound("j", 1, 1, []string{"a"}, map[string]uint64{"a": 1}, 1, "d", t0.Add(time.Minute), 1, aggregate.NewFedAvg(1))
	r2.epochs = 4
	if err := r2.Admit("a", h, t0); !errors.Is(err, state.ErrBadUpdate) {
		t.Fatalf("an update claiming 5 of 4 epochs: %v; want ErrBadUpdate", err)
	}
}

// TestCentralDPClipsAndWeighsEveryoneTheSame: under central DP the leader
// clips each update to the job's L2 norm and weighs every participant 1,
// whatever its example count.
func TestCentralDPClipsAndWeighsEveryoneTheSame(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := NewRound("j", 1, 1, []string{"big", "small"}, map[string]uint64{"big": 1000, "small": 1}, 2, "d", t0.Add(time.Minute), 2, aggregate.NewFedAvg(2))
	r.dpClip = 1
	for from, delta := range map[string][]float32{"big": {30, 40}, "small": {0, 0.5}} {
		h := &pb.UpdateHeader{JobId: "j", Round: 1, Attempt: 1, BaseModelDigest: "d", NumParams: 2, Examples: 7}
		if err := r.Admit(from, h, t0); err != nil {
			t.Fatal(err)
		}
		if err := r.Add(from, delta); err != nil {
			t.Fatal(err)
		}
	}
	delta, err := r.update(nil)
	if err != nil {
		t.Fatal(err)
	}
	// ((0.6, 0.8) + (0, 0.5)) / 2.
	if math.Abs(float64(delta[0])-0.3) > 1e-6 || math.Abs(float64(delta[1])-0.65) > 1e-6 {
		t.Fatalf("combined update %v; want [0.3 0.65]", delta)
	}
}

// TestChooseGroups: random groups deal the cohort out evenly; region
// groups keep each region's members together, and a group that would have
// fewer than 3 members is refused.
func TestChooseGroups(t *testing.T) {
	var connected []string
	regionOf := map[string]string{}
	for _, reg := range []string{"de", "fr", "jp"} {
		for j := range 10 {
			id := fmt.Sprintf("%s-%02d", reg, j)
			connected = append(connected, id)
			regionOf[id] = reg
		}
	}
	region := func(id string) string { return regionOf[id] }
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(ids []string, k int) []string { return choose(ids, k, rng) }

	cohort, groups, err := chooseGroups(connected, 10, 3, state.GroupByRandom, region, pick, rng)
	if err != nil {
		t.Fatal(err)
	}
	if len(cohort) != 10 || len(groups) != 3 || len(groups[0])+len(groups[1])+len(groups[2]) != 10 {
		t.Fatalf("random: cohort %d in groups %v", len(cohort), groups)
	}
	cohort, groups, err = chooseGroups(connected, 10, 3, state.GroupByRegion, region, pick, rng)
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{}
	for _, g := range groups {
		sizes = append(sizes, len(g))
		for _, id := range g {
			if region(id) != region(g[0]) {
				t.Fatalf("group %v mixes regions", g)
			}
		}
	}
	if slices.Compare(sizes, []int{4, 3, 3}) != 0 || len(cohort) != 10 {
		t.Fatalf("region groups of sizes %v (cohort %d); want [4 3 3] of 10", sizes, len(cohort))
	}
	if _, _, err := chooseGroups(connected[:8], 8, 3, state.GroupByRandom, region, pick, rng); err == nil {
		t.Fatal("8 participants in 3 groups: want a refusal (groups of 2)")
	}
}
