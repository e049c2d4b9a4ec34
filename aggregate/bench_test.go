package aggregate

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

// The benchmarks aggregate 100 updates of 1,000,000 float32 (400 MB an
// operation) and report GB/s of update data, the units of
// testdata/numpy_gemv.py (NumPy's w @ X). One core, then all:
//
//	taskset -c 0 go test -run '^$' -bench . -cpu 1 ./aggregate/
//	go test -run '^$' -bench . ./aggregate/
//
// FedAvg reads each update twice: Add's finiteness check, then the fold
// (kernel.go). Fold alone reads each once, as w @ X does. "hugepages" puts
// the same updates in a mapping with transparent huge pages, as NumPy does
// for arrays of 4 MB and more; Go's heap uses 4 KB pages, and one core
// streams ~30% slower through those.
const (
	benchUpdates = 100
	benchParams  = 1_000_000
	benchBytes   = 4 * benchUpdates * benchParams
)

var bench struct {
	once    sync.Once
	heap    [][]float32
	huge    [][]float32 // nil where huge pages are unavailable
	weights []float64
}

func benchData(b *testing.B) {
	bench.once.Do(func() {
		r := rand.New(rand.NewPCG(17, 18))
		bench.heap = make([][]float32, benchUpdates)
		bench.weights = make([]float64, benchUpdates)
		for j := range bench.heap {
			u := make([]float32, benchParams)
			for i := range u {
				u[i] = float32(r.NormFloat64())
			}
			bench.heap[j] = u
			bench.weights[j] = float64(100 + r.IntN(900))
		}
		if all := hugePageFloats(benchUpdates * benchParams); all != nil {
			bench.huge = make([][]float32, benchUpdates)
			for j, u := range bench.heap {
				bench.huge[j] = all[j*benchParams : (j+1)*benchParams]
				copy(bench.huge[j], u)
			}
		}
	})
	b.SetBytes(benchBytes)
	b.ResetTimer()
}

// timeRuns times once per iteration and reports GB/s of update data.
// Before each run it collects garbage, untimed: sums, results and scratch
// then reuse memory the previous run freed, as a coordinator's do from
// round to round. Without it, the 400 MB of updates (live data a
// coordinator does not keep) put the next collection so far off that
// every run gets never-touched pages, and in this VM faulting in FedAvg's
// 12 MB costs ~20 ms, half a run.
func timeRuns(b *testing.B, once func()) {
	var took time.Duration
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		b.StartTimer()
		start := time.Now()
		once()
		took += time.Since(start)
	}
	b.ReportMetric(float64(b.N)*benchBytes/took.Seconds()/1e9, "GB/s")
}

// fedAvg aggregates us with NewFedAvg, Add and Result.
func fedAvg(b *testing.B, us [][]float32) {
	a := NewFedAvg(benchParams)
	for j, u := range us {
		if err := a.Add(u, bench.weights[j]); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := a.Result(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFedAvg is the coordinator's path: NewFedAvg, 100 Adds, Result.
func BenchmarkFedAvg(b *testing.B) {
	b.Run("heap", func(b *testing.B) {
		benchData(b)
		timeRuns(b, func() { fedAvg(b, bench.heap) })
	})
	b.Run("hugepages", func(b *testing.B) {
		benchData(b)
		if bench.huge == nil {
			b.Skip("no transparent huge pages here")
		}
		timeRuns(b, func() { fedAvg(b, bench.huge) })
	})
}

// withKernels runs f once with each kernel set the machine has (generic
// is the pure-Go fallback).
func withKernels(b *testing.B, f func(b *testing.B)) {
	for _, k := range kernelSets() {
		b.Run(k.name, func(b *testing.B) {
			saved := kernels
			kernels = k
			defer func() { kernels = saved }()
			f(b)
		})
	}
}

// BenchmarkFedAvgKernels is BenchmarkFedAvg/heap with each kernel set.
func BenchmarkFedAvgKernels(b *testing.B) {
	withKernels(b, func(b *testing.B) {
		benchData(b)
		timeRuns(b, func() { fedAvg(b, bench.heap) })
	})
}

// BenchmarkFold is the weighted sum alone, 16 updates a fold, without
// Add's check: what NumPy's w @ X computes.
func BenchmarkFold(b *testing.B) {
	fold := func(us [][]float32) {
		a := NewFedAvg(benchParams)
		for j, u := range us {
			a.addChecked(u, bench.weights[j])
		}
		a.fold()
	}
	b.Run("heap", func(b *testing.B) {
		benchData(b)
		timeRuns(b, func() { fold(bench.heap) })
	})
	b.Run("hugepages", func(b *testing.B) {
		benchData(b)
		if bench.huge == nil {
			b.Skip("no transparent huge pages here")
		}
		timeRuns(b, func() { fold(bench.huge) })
	})
}

func benchRule(b *testing.B, c RuleConfig) {
	benchData(b)
	timeRuns(b, func() {
		r, err := NewRule(c, benchParams)
		if err != nil {
			b.Fatal(err)
		}
		for j, u := range bench.heap {
			if err := r.Add(u, bench.weights[j]); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := r.Result(); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkMedian runs with each kernel set: the sorting network is most
// of its time.
func BenchmarkMedian(b *testing.B) {
	withKernels(b, func(b *testing.B) { benchRule(b, RuleConfig{Name: RuleMedian}) })
}

func BenchmarkTrimmedMean(b *testing.B) {
	benchRule(b, RuleConfig{Name: RuleTrimmedMean, Beta: 0.1})
}

// BenchmarkMultiKrum measures 4,950 distances of 1,000,000 coordinates
// (~5·10⁹ squared differences) and averages the 90 best updates.
func BenchmarkMultiKrum(b *testing.B) {
	benchRule(b, RuleConfig{Name: RuleMultiKrum, F: 10})
}

// BenchmarkFedAvgNormBound is FedAvg behind a norm bound: buffered, with
// norms measured in Add.
func BenchmarkFedAvgNormBound(b *testing.B) { benchRule(b, RuleConfig{NormBound: 3}) }
