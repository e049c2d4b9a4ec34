package secagg

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestQuantizedSumDoesNotWrapAndIsUnbiased(t *testing.T) {
	const n, length = 1000, 2000
	q, err := NewQuantizer(1, n)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	sum := make([]uint32, length)
	want := make([]float64, length)
	for range n {
		x := make([]float32, length)
		for i := range x {
			x[i] = float32(2*rng.Float64() - 1.5) // some values beyond the clip
			want[i] += math.Max(-1, math.Min(1, float64(x[i])))
		}
		for i, v := range q.Quantize(x, rng) {
			sum[i] += v
		}
	}
	got := q.Dequantize(sum, n)
	// All at the clip: no wrap. Stochastic rounding: error ~ step·√n.
	step := 2 / float64(q.Levels)
	for i := range got {
		if d := math.Abs(got[i] - want[i]); d > 10*step*math.Sqrt(n) {
			t.Fatalf("entry %d: dequantized sum %v; want %v (off by %v steps)", i, got[i], want[i], d/step)
		}
	}
	all := q.Quantize([]float32{1}, rng)[0]
	if uint64(all)*n > math.MaxUint32 {
		t.Fatalf("%d clients at the clip sum to %d, past 2^32", n, uint64(all)*n)
	}
}
