package dp

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/accord-fl/accord/aggregate"
)

func TestClipL2(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range []float64{0.001, 0.1, 1, 3.7, 1e6} {
		for range 20 {
			v := make([]float32, 1+rng.IntN(500))
			for i := range v {
				v[i] = float32(rng.NormFloat64() * 3)
			}
			before := aggregate.Norm(v)
			orig := append([]float32(nil), v...)
			if got := ClipL2(v, s); got != before {
				t.Fatalf("ClipL2 returned %v; the norm before was %v", got, before)
			}
			after := aggregate.Norm(v)
			switch {
			case after > s:
				t.Fatalf("norm %v after clipping to %v", after, s)
			case before <= s && !equal(v, orig):
				t.Fatalf("a vector of norm %v within %v was changed", before, s)
			case before > s && math.Abs(after-s) > 1e-6*s:
				t.Fatalf("norm %v after clipping %v to %v; want the bound itself", after, before, s)
			}
		}
	}
	v := []float32{1, float32(math.NaN()), 2}
	if n := ClipL2(v, 1); !math.IsNaN(n) || v[0] != 0 || v[2] != 0 {
		t.Errorf("ClipL2 of a vector with NaN: norm %v, vector %v; want NaN and zeros", n, v)
	}
	v = []float32{3, 4}
	if n := ClipL2(v, 0); n != 5 || v[0] != 0 || v[1] != 0 {
		t.Errorf("ClipL2 to 0: norm %v, vector %v; want 5 and zeros", n, v)
	}
}

func equal(a, b []float32) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}

func TestAddGaussian(t *testing.T) {
	const n, sigma = 200_000, 2.5
	v := make([]float32, n)
	for i := range v {
		v[i] = 10
	}
	AddGaussian(v, sigma, rand.New(rand.NewChaCha8([32]byte{7})))
	var sum, sq float64
	for _, x := range v {
		sum += float64(x) - 10
		sq += (float64(x) - 10) * (float64(x) - 10)
	}
	mean, variance := sum/n, sq/n
	if math.Abs(mean) > 5*sigma/math.Sqrt(n) || math.Abs(variance-sigma*sigma) > 5*sigma*sigma*math.Sqrt(2.0/n) {
		t.Errorf("noise mean %v, variance %v; want 0 and %v", mean, variance, sigma*sigma)
	}
	w := []float32{1, 2}
	AddGaussian(w, 0, nil)
	if w[0] != 1 || w[1] != 2 {
		t.Errorf("σ = 0 changed the vector: %v", w)
	}
	defer func() {
		if recover() == nil {
			t.Error("AddGaussian with σ = NaN did not panic")
		}
	}()
	AddGaussian(w, math.NaN(), nil)
}

func TestNewRNG(t *testing.T) {
	a, err := NewRNG()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewRNG()
	if err != nil {
		t.Fatal(err)
	}
	a1, a2 := a.Uint64(), a.Uint64()
	b1, b2 := b.Uint64(), b.Uint64()
	if a1 == b1 && a2 == b2 {
		t.Error("two generators from crypto/rand seeds gave the same output")
	}
}
