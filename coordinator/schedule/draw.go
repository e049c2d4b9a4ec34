package schedule

import (
	"cmp"
	"encoding/binary"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
)

// Every random choice the leader makes is drawn from the job's seed.

// seededRand returns a generator seeded from a job's seed and the given
// numbers, so every choice the leader makes is reproducible.
func seededRand(seed uint64, parts ...uint64) *rand.Rand {
	h := fnv.New64a()
	for _, p := range append([]uint64{seed}, parts...) {
		h.Write(binary.LittleEndian.AppendUint64(nil, p))
	}
	return rand.New(rand.NewPCG(h.Sum64(), seed))
}

// TaskSeed is the seed of a participant's local training in a round
// attempt of a job with the given seed, as the leader sends it: anyone can
// reproduce a round's training from it.
func TaskSeed(jobSeed uint64, round, attempt uint32, participant string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(participant))
	return seededRand(jobSeed, uint64(round), uint64(attempt), h.Sum64()).Uint64()
}

// choose picks k of the sorted ids with rng.
func choose(ids []string, k int, rng *rand.Rand) []string {
	ids = slices.Clone(ids)
	rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	ids = ids[:min(k, len(ids))]
	slices.Sort(ids)
	return ids
}

// chooseWeighted picks k of the sorted ids with rng, each draw taking a
// remaining id with probability proportional to its weight (absent from
// weights: 1), by Efraimidis and Spirakis's keys u^(1/w): the k largest
// keys win. With no weights it is choose, so a job whose participants all
// answer draws the cohorts it always did.
func chooseWeighted(ids []string, k int, weights map[string]float64, rng *rand.Rand) []string {
	if len(weights) == 0 {
		return choose(ids, k, rng)
	}
	type keyed struct {
		id  string
		key float64
	}
	keys := make([]keyed, len(ids))
	for i, id := range ids {
		w, ok := weights[id]
		if !ok {
			w = 1
		}
		u := rng.Float64()
		for u == 0 {
			u = rng.Float64()
		}
		keys[i] = keyed{id, math.Log(u) / w} // log of u^(1/w): the same order
	}
	slices.SortStableFunc(keys, func(a, b keyed) int { return cmp.Compare(b.key, a.key) })
	out := make([]string, 0, min(k, len(keys)))
	for _, x := range keys[:min(k, len(keys))] {
		out = append(out, x.id)
	}
	slices.Sort(out)
	return out
}
