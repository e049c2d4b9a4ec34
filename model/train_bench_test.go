package model

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// BenchmarkTrain2NN measures whole training steps (forward, backward, SGD
// update) of the FedAvg 2NN, mlp:784-200-200-10, on MNIST-shaped data, at
// batch 10 and 64, on one thread and on all cores. It reports samples/s.
//
//	go test -run '^$' -bench Train2NN ./model/                          # the widest kernel the CPU runs
//	ACCORD_KERNEL=avx2 go test -run '^$' -bench Train2NN ./model/       # force one: gonum, avx2, avx512
//	go test -tags openblas -run '^$' -bench Train2NN ./model/           # OpenBLAS
//	make bench-2nn                                                      # every kernel next to PyTorch
func BenchmarkTrain2NN(b *testing.B) {
	spec := MustParseSpec("mlp:784-200-200-10")
	rng := rand.New(rand.NewPCG(1, 2))
	ds, _ := randomDataset(rng, spec, 6400)
	for _, threads := range []int{1, runtime.NumCPU()} {
		for _, batch := range []int{10, 64} {
			name := fmt.Sprintf("%s/threads=%d/batch=%d", Backend(), threads, batch)
			b.Run(name, func(b *testing.B) {
				SetThreads(threads)
				defer SetThreads(runtime.GOMAXPROCS(0))
				if threads == 1 && Backend() == "gonum" {
					// gonum's kernel follows GOMAXPROCS, not SetThreads.
					defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
				}
				m := New(spec, 1)
				tr, err := NewTrainer(m, TrainConfig{Epochs: 1, BatchSize: batch, LearningRate: 0.01})
				if err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					if _, err := tr.Epoch(b.Context(), ds); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(ds.Len())*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
			})
		}
	}
}

func randomDataset(rng *rand.Rand, spec Spec, n int) (*Dataset, error) {
	x, y := randomBatch(rng, spec, n)
	ds := &Dataset{X: x, Y: y, Features: spec.Inputs(), Classes: spec.Classes()}
	return ds, ds.Validate()
}

// fedAvgCNN is the FedAvg paper's MNIST CNN (1,663,370 parameters).
const fedAvgCNN = "cnn:28x28x1-c5x32-p2-c5x64-p2-f512-10"

// BenchmarkTrainCNN measures whole training steps of the FedAvg CNN,
// cnn:28x28x1-c5x32-p2-c5x64-p2-f512-10, on MNIST-shaped data, at batch 10
// and 64, on one thread and on all cores; it reports samples/s, the figure
// model/testdata/torch_cnn.py prints for PyTorch.
//
//	taskset -c 0 go test -run '^$' -bench 'TrainCNN/.*/threads=1/' ./model/
//	taskset -c 0 /usr/bin/python3 model/testdata/torch_cnn.py
func BenchmarkTrainCNN(b *testing.B) {
	spec := MustParseSpec(fedAvgCNN)
	rng := rand.New(rand.NewPCG(1, 2))
	ds, _ := randomDataset(rng, spec, 640)
	for _, threads := range []int{1, runtime.NumCPU()} {
		for _, batch := range []int{10, 64} {
			name := fmt.Sprintf("%s/threads=%d/batch=%d", Backend(), threads, batch)
			b.Run(name, func(b *testing.B) {
				SetThreads(threads)
				defer SetThreads(runtime.GOMAXPROCS(0))
				if threads == 1 && Backend() == "gonum" {
					defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
				}
				m := New(spec, 1)
				tr, err := NewTrainer(m, TrainConfig{Epochs: 1, BatchSize: batch, LearningRate: 0.01})
				if err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					if _, err := tr.Epoch(b.Context(), ds); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(ds.Len())*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
			})
		}
	}
}
