package sgemm

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/gonum/blas"
)

// naive is the textbook triple loop, in float64, as the reference.
func naive(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) []float32 {
	out := append([]float32(nil), c...)
	for i := range m {
		for j := range n {
			var s float64
			for p := range k {
				ai, bi := i*lda+p, p*ldb+j
				if tA != blas.NoTrans {
					ai = p*lda + i
				}
				if tB != blas.NoTrans {
					bi = j*ldb + p
				}
				av, bv := a[ai], b[bi]
				s += float64(av) * float64(bv)
			}
			prev := float64(0)
			if beta != 0 {
				prev = float64(beta) * float64(c[i*ldc+j])
			}
			out[i*ldc+j] = float32(float64(alpha)*s + prev)
		}
	}
	return out
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}

// forEachKernel runs f with every kernel this binary and CPU can run.
func forEachKernel(t *testing.T, f func(t *testing.T, impl blas.Float32)) {
	t.Helper()
	for _, k := range all {
		if k.why != nil {
			t.Logf("kernel %s not tested: %v", k.name, k.why)
			continue
		}
		t.Run(k.name, func(t *testing.T) { f(t, k.impl) })
	}
}

// check runs one product with impl and compares it with the reference:
// every element of the product within a tolerance that grows with k, and
// every element of C outside it (the stride's padding) untouched.
func check(t *testing.T, impl blas.Float32, tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	t.Helper()
	want := naive(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	impl.Sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	for i := range m {
		for j := range ldc {
			if i*ldc+j >= len(c) {
				break
			}
			got, w := c[i*ldc+j], want[i*ldc+j]
			if j >= n {
				if !(math.IsNaN(float64(got)) && math.IsNaN(float64(w))) && got != w {
					t.Fatalf("C[%d,%d] outside the product changed: got %g; want %g", i, j, got, w)
				}
				continue
			}
			if d := math.Abs(float64(got - w)); !(d <= 1e-3*(1+math.Sqrt(float64(k)))) {
				t.Fatalf("C[%d,%d]: got %g; want %g", i, j, got, w)
			}
		}
	}
}

// operands returns A, B and C for one product, each with its rows padded
// by pad elements and starting off elements into its allocation (so
// vectors are not aligned); with beta == 0, C holds NaNs, which must not
// be read.
func operands(rng *rand.Rand, tA, tB blas.Transpose, m, n, k, pad, off int, beta float32) (a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	lda, rowsA := k+pad, m
	if tA != blas.NoTrans {
		lda, rowsA = m+pad, k
	}
	ldb, rowsB := n+pad, k
	if tB != blas.NoTrans {
		ldb, rowsB = k+pad, n
	}
	ldc = n + pad
	// The last row of each matrix ends at its last element, as gonum's
	// checks allow: a kernel reading a row's padding there would read
	// past the slice.
	a = randSlice(rng, off+max(0, rowsA*lda-pad))[off:]
	b = randSlice(rng, off+max(0, rowsB*ldb-pad))[off:]
	c = randSlice(rng, off+m*ldc-pad)[off:]
	if beta == 0 {
		for i := range c {
			c[i] = float32(math.NaN())
		}
	}
	return a, lda, b, ldb, c, ldc
}

// TestSgemmMatchesReference checks every kernel against a float64 triple
// loop for every transpose combination and awkward shapes (tails of rows
// and columns, padded strides, beta of 0, 1 and other, one and two
// threads; the last two shapes are large enough to be split over two
// goroutines, by rows and by columns).
func TestSgemmMatchesReference(t *testing.T) {
	t.Logf("installed kernel: %s", Name())
	shapes := [][3]int{{1, 1, 1}, {3, 5, 7}, {8, 32, 16}, {10, 200, 784}, {13, 47, 9}, {64, 10, 200}, {200, 200, 10}, {9, 33, 1}, {37, 70, 65}, {7, 15, 300}, {130, 70, 300}, {20, 300, 400}}
	forEachKernel(t, func(t *testing.T, impl blas.Float32) {
		rng := rand.New(rand.NewPCG(1, 2))
		for _, s := range shapes {
			for _, tA := range []blas.Transpose{blas.NoTrans, blas.Trans} {
				for _, tB := range []blas.Transpose{blas.NoTrans, blas.Trans} {
					for _, beta := range []float32{0, 1, 0.5} {
						for _, threadCount := range []int{1, 2} {
							m, n, k := s[0], s[1], s[2]
							name := fmt.Sprintf("m%d_n%d_k%d_%s%s_beta%g_t%d", m, n, k, letter(tA), letter(tB), beta, threadCount)
							t.Run(name, func(t *testing.T) {
								SetThreads(threadCount)
								defer SetThreads(1)
								a, lda, b, ldb, c, ldc := operands(rng, tA, tB, m, n, k, 3, 0, beta)
								check(t, impl, tA, tB, m, n, k, 1.5, a, lda, b, ldb, beta, c, ldc)
							})
						}
					}
				}
			}
		}
	})
}

// TestSgemmRandomShapes runs every kernel on random shapes: odd sizes,
// every tail of rows and columns, k beyond one block of kc, unaligned
// starts and strides, random alpha and beta, one or two threads.
func TestSgemmRandomShapes(t *testing.T) {
	forEachKernel(t, func(t *testing.T, impl blas.Float32) {
		rng := rand.New(rand.NewPCG(5, 6))
		for trial := range 300 {
			m, n, k := 1+rng.IntN(40), 1+rng.IntN(70), 1+rng.IntN(90)
			if trial%10 == 0 {
				m, n, k = 1+rng.IntN(150), 1+rng.IntN(150), 200+rng.IntN(500)
			}
			tA, tB := blas.Transpose(blas.NoTrans), blas.Transpose(blas.NoTrans)
			if rng.IntN(2) == 1 {
				tA = blas.Trans
			}
			if rng.IntN(2) == 1 {
				tB = blas.Trans
			}
			alpha := []float32{1, -1, 0.7, 0}[rng.IntN(4)]
			beta := []float32{0, 1, -0.3, 2}[rng.IntN(4)]
			pad, off := rng.IntN(5), rng.IntN(8)
			SetThreads(1 + rng.IntN(2))
			a, lda, b, ldb, c, ldc := operands(rng, tA, tB, m, n, k, pad, off, beta)
			t.Run(fmt.Sprintf("%d_m%d_n%d_k%d_%s%s", trial, m, n, k, letter(tA), letter(tB)), func(t *testing.T) {
				check(t, impl, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
			})
		}
		SetThreads(1)
	})
}

// TestChoose checks what ACCORD_KERNEL selects: nothing or a kernel that
// runs here picks it; anything else falls back to the best kernel with an
// error that names the reason.
func TestChoose(t *testing.T) {
	best, err := choose("")
	if err != nil || best.name != Available()[0] {
		t.Fatalf("choose(\"\") = %v, %v; want %s", best, err, Available()[0])
	}
	for _, name := range Available() {
		k, err := choose(" " + strings.ToUpper(name) + " ")
		if err != nil || k.name != name {
			t.Errorf("choose(%q) = %s, %v; want %s", name, k.name, err, name)
		}
	}
	for _, c := range []struct{ want, mention string }{
		{"fast", "is not a kernel"},
		{"openblas", "openblas"},
		{"avx2", "avx2"},
		{"avx512", "avx512"},
	} {
		if slices.Contains(Available(), c.want) {
			continue
		}
		k, err := choose(c.want)
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), c.mention) || k != best {
			t.Errorf("choose(%q) = %s, %v; want %s and an error mentioning %q", c.want, k.name, err, best.name, c.mention)
		}
		before := Name()
		if err := Use(c.want); !errors.Is(err, ErrUnavailable) || Name() != before {
			t.Errorf("Use(%q) = %v with %s installed; want ErrUnavailable, %s unchanged", c.want, err, Name(), before)
		}
	}
}

// TestKernelList reports which kernels this machine tested (make
// test-kernels prints it).
func TestKernelList(t *testing.T) {
	var missing []string
	for _, name := range []string{"openblas", "avx512", "avx2", "gonum"} {
		if _, err := lookup(name); err != nil {
			missing = append(missing, err.Error())
		}
	}
	t.Logf("sgemm kernels tested here: %s", strings.Join(Available(), ", "))
	for _, m := range missing {
		t.Logf("sgemm kernel not in this test run: %s", strings.TrimPrefix(m, ErrUnavailable.Error()+": "+EnvKernel+"="))
	}
}

func letter(t blas.Transpose) string {
	if t == blas.NoTrans {
		return "N"
	}
	return "T"
}
