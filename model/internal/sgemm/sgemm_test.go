package sgemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
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

// TestSgemmMatchesReference checks the installed kernel against a float64
// triple loop for every transpose combination and awkward shapes (tails of
// rows and columns, padded strides, beta of 0, 1 and other).
func TestSgemmMatchesReference(t *testing.T) {
	t.Logf("kernel: %s", Name())
	impl := blas32.Implementation()
	rng := rand.New(rand.NewPCG(1, 2))
	shapes := [][3]int{{1, 1, 1}, {3, 5, 7}, {8, 32, 16}, {10, 200, 784}, {13, 47, 9}, {64, 10, 200}, {200, 200, 10}, {9, 33, 1}, {37, 70, 65}}
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
							pad := 3
							lda := k + pad
							rowsA := m
							if tA != blas.NoTrans {
								lda, rowsA = m+pad, k
							}
							ldb := n + pad
							rowsB := k
							if tB != blas.NoTrans {
								ldb, rowsB = k+pad, n
							}
							ldc := n + pad
							a := randSlice(rng, rowsA*lda)
							b := randSlice(rng, rowsB*ldb)
							c := randSlice(rng, m*ldc)
							if beta == 0 {
								for i := range c {
									c[i] = float32(math.NaN()) // must not be read
								}
							}
							want := naive(tA, tB, m, n, k, 1.5, a, lda, b, ldb, beta, c, ldc)
							impl.Sgemm(tA, tB, m, n, k, 1.5, a, lda, b, ldb, beta, c, ldc)
							for i := range m {
								for j := range ldc {
									got, w := c[i*ldc+j], want[i*ldc+j]
									if j >= n {
										if !(math.IsNaN(float64(got)) && math.IsNaN(float64(w))) && got != w {
											t.Fatalf("C[%d,%d] outside the product changed: got %g; want %g", i, j, got, w)
										}
										continue
									}
									if d := math.Abs(float64(got - w)); d > 1e-3*(1+math.Sqrt(float64(k))) {
										t.Fatalf("C[%d,%d]: got %g; want %g", i, j, got, w)
									}
								}
							}
						})
					}
				}
			}
		}
	}
}

func letter(t blas.Transpose) string {
	if t == blas.NoTrans {
		return "N"
	}
	return "T"
}
