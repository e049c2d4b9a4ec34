package aggregate

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// kernelLengths cover empty input, lengths below, at and around the AVX2
// and AVX-512 blocks, and long bodies with every tail length class.
var kernelLengths = []int{0, 1, 2, 7, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 100, 127, 128, 129, 1000, 1023, 4099}

func randomFloats(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		// Magnitudes over many binades, so rounding differences would show.
		v[i] = float32(r.NormFloat64() * math.Exp2(float64(r.IntN(40)-20)))
	}
	return v
}

// forEachKernelSet runs f with every kernel set this machine has, the
// package's choice restored afterwards.
func forEachKernelSet(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	saved := kernels
	defer func() { kernels = saved }()
	for _, k := range kernelSets() {
		kernels = k
		t.Run(k.name, f)
	}
}

func TestKernelsMatchGenericBitForBit(t *testing.T) {
	sets := kernelSets()
	t.Logf("kernel sets on this machine: %d (best %s)", len(sets), bestKernels().name)
	r := rand.New(rand.NewPCG(1, 2))
	for _, k := range sets[1:] {
		for _, n := range kernelLengths {
			for _, skip := range []int{0, 1, 3} { // unaligned starts
				a := randomFloats(r, n+skip)[skip:]
				b := randomFloats(r, n+skip)[skip:]
				if got, want := k.finite(a), finiteGeneric(a); got != want {
					t.Errorf("%s finite n=%d skip=%d: got %v; want %v", k.name, n, skip, got, want)
				}
				if got, want := k.sumSquares(a), sumSquaresGeneric(a); math.Float64bits(got) != math.Float64bits(want) {
					t.Errorf("%s sumSquares n=%d skip=%d: got %v; want %v", k.name, n, skip, got, want)
				}
				if got, want := k.sqDist(a, b), sqDistGeneric(a, b); math.Float64bits(got) != math.Float64bits(want) {
					t.Errorf("%s sqDist n=%d skip=%d: got %v; want %v", k.name, n, skip, got, want)
				}
			}
			for _, nu := range []int{1, 2, 3, 8, 15, 16} {
				off := r.IntN(5)
				us := make([][]float32, nu)
				ws := make([]float64, nu)
				for j := range us {
					us[j] = randomFloats(r, off+n+r.IntN(3))
					ws[j] = r.Float64()*100 + 0.5
				}
				base := make([]float64, n)
				for i := range base {
					base[i] = r.NormFloat64()
				}
				got, want := append([]float64(nil), base...), append([]float64(nil), base...)
				k.fold(got, us, ws, off)
				foldGeneric(want, us, ws, off)
				for i := range got {
					if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
						t.Fatalf("%s fold n=%d updates=%d off=%d: sum[%d] got %v; want %v", k.name, n, nu, off, i, got[i], want[i])
					}
				}
			}
		}
	}
}

func TestGenericKernelsCompute(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range kernelLengths {
		a, b := randomFloats(r, n), randomFloats(r, n)
		var ss, sd float64
		for i := range a {
			ss += float64(a[i]) * float64(a[i])
			d := float64(a[i] - b[i]) // the difference in float32
			sd += d * d
		}
		if got := sumSquaresGeneric(a); math.Abs(got-ss) > 1e-13*ss {
			t.Errorf("sumSquares n=%d: got %v; want %v", n, got, ss)
		}
		if got := sqDistGeneric(a, b); math.Abs(got-sd) > 1e-13*sd {
			t.Errorf("sqDist n=%d: got %v; want %v", n, got, sd)
		}
		sum := make([]float64, n)
		foldGeneric(sum, [][]float32{a, b}, []float64{2, 3}, 0)
		for i := range sum {
			if want := 2*float64(a[i]) + 3*float64(b[i]); math.Abs(sum[i]-want) > 1e-15*math.Abs(want) {
				t.Fatalf("fold n=%d: sum[%d] got %v; want %v", n, i, sum[i], want)
			}
		}
	}
}

// TestKernelsFlagNonFinite checks the properties Add relies on: finite is
// false and the sum of squares is not finite exactly when a value is NaN or
// infinite, wherever it sits (first lane, a middle quarter, the tail), and
// the largest finite float32s pass.
func TestKernelsFlagNonFinite(t *testing.T) {
	forEachKernelSet(t, func(t *testing.T) {
		for _, n := range []int{1, 31, 32, 33, 63, 64, 65, 100, 257, 1000} {
			v := make([]float32, n)
			for i := range v {
				v[i] = math.MaxFloat32
			}
			if s := kernels.sumSquares(v); math.IsInf(s, 0) || math.IsNaN(s) || !kernels.finite(v) {
				t.Fatalf("n=%d of MaxFloat32: sum of squares %v, finite %v; want finite", n, s, kernels.finite(v))
			}
			for _, at := range []int{0, n / 4, n / 2, 3 * n / 4, n - 1} {
				for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
					w := append([]float32(nil), v...)
					w[at] = bad
					if s := kernels.sumSquares(w); !math.IsInf(s, 0) && !math.IsNaN(s) {
						t.Fatalf("n=%d, %v at %d: sum of squares %v; want NaN or Inf", n, bad, at, s)
					}
					if kernels.finite(w) {
						t.Fatalf("n=%d, %v at %d: finite", n, bad, at)
					}
				}
			}
		}
	})
}

// TestKernelList reports which kernel sets this machine tested against the
// generic one (make test-kernels prints it).
func TestKernelList(t *testing.T) {
	var names []string
	for _, k := range kernelSets() {
		names = append(names, k.name)
	}
	t.Logf("aggregate kernel sets tested here: %s (best: %s)", strings.Join(names, ", "), bestKernels().name)
}
