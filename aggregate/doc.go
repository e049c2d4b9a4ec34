// Package aggregate combines participants' updates into a new global model:
// a Rule combines one round's updates into one update Δ, and a server
// optimiser (OptimizerConfig) applies Δ to the model.
//
//	rule, err := aggregate.NewRule(aggregate.RuleConfig{Name: "trimmed_mean", Beta: 0.1}, len(x))
//	for each update: err := rule.Add(delta, float64(examples)) // refused updates change nothing
//	d, err := rule.Result()                                    // Δ, not x+Δ
//	x, st, err = opt.Step(x, d, st)                            // st: nil in the first round
//
// # Rules
//
// Add checks every update before it counts, whatever the rule: the length
// (ErrShape), finite values and a positive finite weight (ErrNotFinite).
// Rules keep a reference to an added update, not a copy, until Result:
// the caller must not modify it. With n updates of d parameters:
//
//	rule          weights   memory                         time
//	fedavg        yes       8d bytes (+ ≤ 16 updates held)  O(n·d), at ~memory speed
//	median        ignored   the n updates                  O(n·d) expected (introselect)
//	trimmed_mean  ignored   the n updates                  O(n·d) expected
//	krum          ignored   the n updates + 4n² bytes      O(n²·d), mostly while updates arrive
//	multi_krum    chosen m  the n updates + 4n² bytes      O(n²·d)
//
// FedAvg (McMahan et al.) is Σw·Δ/Σw with w the examples each participant
// trained on; it streams, folding updates into a float64 sum 16 at a time.
// Median and trimmed mean (Yin et al., ICML 2018) work coordinate by
// coordinate and count participants, not claimed examples: a Byzantine
// participant would claim many. Krum (Blanchard et al., NeurIPS 2017)
// returns the update closest to its n−f−2 nearest others and needs
// n > 2f+2 (else ErrTooFew); Multi-Krum averages the m best, weighted,
// since Krum has already decided whom to trust. RuleConfig.NormBound drops,
// before any rule, the updates whose L2 norm exceeds NormBound × the
// round's median norm; the rule then buffers the updates, fedavg too.
// REFERENCES.md §7 has the papers' requirements.
//
// # Server optimisers
//
// OptimizerConfig.Step implements Reddi et al.'s FedAvg, FedAvgM,
// FedAdagrad, FedAdam and FedYogi (REFERENCES.md §6) in float64, with the
// defaults and their sources listed at DefaultLR. OptimizerState carries m
// and v between rounds and has a versioned binary encoding for the
// coordinators' blob store.
//
// # Speed and reproducibility
//
// The loops over coordinates run in AVX-512 or AVX2+FMA assembly
// (kernel_amd64.s), chosen at run time from the CPU's features, with a pure
// Go fallback elsewhere (kernel.go). Every kernel set computes the same
// operations in the same order with fused multiply-adds, so a result does
// not depend on the CPU, and passes split coordinates into fixed spans, so
// it does not depend on RuleConfig.Parallelism or GOMAXPROCS either.
// FedAvg reads each update twice, once in Add's check and once when it is
// folded into the sum; bench_test.go measures it against NumPy's w @ X
// (testdata/numpy_gemv.py).
package aggregate
