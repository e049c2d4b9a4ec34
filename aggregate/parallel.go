package aggregate

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// minSpan is the fewest coordinates worth a goroutine: 64 Ki float32 are
// 256 KB, ~20 µs of reading, against ~1 µs to start and join a goroutine.
const minSpan = 1 << 16

// workerCount is p, or GOMAXPROCS when p is 0.
func workerCount(p int) int {
	if p > 0 {
		return p
	}
	return runtime.GOMAXPROCS(0)
}

// parallel calls f on consecutive ranges covering [0, n): at most workers
// of them (0: GOMAXPROCS), each at least minWork long unless it is the only
// one, every bound but n a multiple of align. It returns when every call
// has; with one range it calls f on the caller's goroutine.
func parallel(workers, n, align, minWork int, f func(lo, hi int)) {
	parts := min(workerCount(workers), n/max(minWork, 1))
	if parts <= 1 {
		f(0, n)
		return
	}
	step := (n/parts + align - 1) / align * align
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += step {
		hi := min(lo+step, n)
		if hi == n {
			f(lo, hi)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lo, hi)
		}()
	}
	wg.Wait()
}

// finiteParallel reports whether x holds no NaN and no infinity.
func finiteParallel(x []float32, workers int) bool {
	var bad atomic.Bool
	parallel(workers, len(x), 64, minSpan, func(lo, hi int) {
		if !kernels.finite(x[lo:hi]) {
			bad.Store(true)
		}
	})
	return !bad.Load()
}

// normChunk is the span of sumSquaresChunked's partial sums. Fixing it
// (rather than splitting by worker) keeps norms the same whatever the
// number of workers.
const normChunk = 1 << 16

// sumSquaresChunked is Σ x[i]²: sumSquares of each normChunk-long chunk,
// the chunks' sums added in order.
func sumSquaresChunked(x []float32, workers int) float64 {
	chunks := (len(x) + normChunk - 1) / normChunk
	if chunks <= 1 {
		return kernels.sumSquares(x)
	}
	part := make([]float64, chunks)
	parallel(workers, chunks, 1, minSpan/normChunk, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			part[c] = kernels.sumSquares(x[c*normChunk : min((c+1)*normChunk, len(x))])
		}
	})
	s := 0.0
	for _, p := range part {
		s += p
	}
	return s
}

// Norm is v's L2 norm, summed in float64 with the fastest kernel the CPU
// has, over all cores for long vectors; +Inf or NaN when v holds a
// non-finite value. The result does not depend on the CPU or the cores.
func Norm(v []float32) float64 { return math.Sqrt(sumSquaresChunked(v, 0)) }
