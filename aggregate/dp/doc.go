// Package dp is differential privacy for federated averaging: the Rényi-DP
// accountant of the sampled Gaussian mechanism, central Gaussian noise and
// clipping (DP-FedAvg, McMahan et al. 2018), and distributed discrete
// Gaussian noise that participants add before secure aggregation (Kairouz,
// Liu & Steinke 2021). It does no I/O and keeps no global state.
//
// # What is protected and what is accounted
//
// The unit of privacy is a participant (user-level DP), with add-or-remove-
// one adjacency: whatever one participant contributes in any round, the
// released models change little. Each round is one step of the sampled
// Gaussian mechanism: participants take part independently with
// probability q, each clips its update to L2 norm S, the updates are summed
// and Gaussian noise of standard deviation z·S is added, z being the noise
// multiplier. An Accountant adds up each round's RDP (Mironov 2017;
// Mironov, Talwar & Zhang 2019) at 151 orders and converts it to (ε, δ)
// with the conversion of Canonne, Kamath & Steinke 2020 (Epsilon). Every
// released model is covered — the guarantee is for the whole sequence, not
// the last model only.
//
// The analysis assumes Poisson sampling. A cohort of a fixed size drawn
// from a population of N is accounted with q = cohort/N, the usual
// practice (TensorFlow Privacy's tutorials do the same for batches), but
// sampling without replacement is strictly a different mechanism. Use a δ
// well below 1/N.
//
// # Central mode
//
// Participants send clipped updates (ClipL2 to S); the coordinator, trusted
// with individual updates, sums them and adds AddGaussian noise with σ = z·S
// to the sum (z·S/(qW) to the fixed-denominator average Σ w_kΔ_k/(qW)),
// drawing from NewRNG, and composes one step per round:
//
//	acct.Compose(q, z, 1)
//	if eps, _ := acct.Epsilon(delta); eps > maxEpsilon { stop }
//
// Before a round, acct.EpsilonAfter(q, z, 1, delta) says whether running it
// would exceed the budget. The Gaussian noise is drawn in floating point
// (rng.NormFloat64), as TensorFlow Privacy and Opacus do; it is not an
// exact sampler, and floating-point noise can in principle leak through
// the low bits of its output (Mironov 2012). The distributed mode's noise
// is exact.
//
// # Distributed mode (with secure aggregation)
//
// The coordinator never sees an individual update, only the sum that
// secure aggregation reveals, so the noise must already be in the
// participants' contributions. For a round with a cohort of n and a
// secure-aggregation threshold t (the sum is never revealed for fewer than
// t survivors), PlanDistributed(d, n, t, S, z) chooses a scale γ and a
// per-participant σ_i = z·Δ₂/√t, with Δ₂ = γS + √d the L2 sensitivity in
// integer units (γS after clipping and scaling, plus at most √d from
// randomised rounding). Each participant runs plan.Encode(Δ, rng): clip to
// S, scale by γ, round randomly, add discrete Gaussian noise of
// standard deviation σ_i (SampleDiscreteGaussian: the exact sampler of
// Canonne, Kamath & Steinke 2020, integer and rational arithmetic only),
// and encode as uint32 two's complement. Secure aggregation adds the words
// modulo 2^32, so the sum of encodings encodes the sum; plan.Decode reads
// it as centred int32 and divides by γ. With s ≥ t survivors the sum holds
// noise of variance s·σ_i² ≥ z²Δ₂², and the round is accounted exactly as
// in central mode: acct.Compose(q, z, 1).
//
// γ is the largest scale for which the sum of all n contributions (at most
// n(γS + 1) per coordinate, plus noise) leaves the int32 range with
// probability at most 1e-9 (WrapProbability): the finest quantisation the
// 32-bit words allow. A wrap would corrupt that round's model, not its
// privacy. The noise is calibrated for t survivors, so when all n survive
// the sum carries √(n/t) times the noise strictly needed: keep t close to
// the survivors expected.
//
// Trust. The guarantee needs at least t of the summed contributions to
// carry honest noise: participants that collude with the coordinator can
// remove their own noise, so the sum of s survivors stays protected while
// at most s − t of them collude. A participant must check a plan it
// receives (DistributedPlan.Validate checks that σ_i matches z, γ, S, d and
// t) and compare Multiplier and Threshold with its own policy: a
// coordinator that asks for little noise is asking to see updates.
//
// Approximations, stated plainly:
//
//   - A sum of t discrete Gaussians is not a discrete Gaussian. Kairouz,
//     Liu & Steinke (Prop. 14) bound its RDP by αΔ₂²/(2tσ_i²) + τd, with
//     τ = 10 Σ_{k<t} exp(−2π²σ_i²·k/(k+1)). PlanDistributed refuses plans
//     with τd > 1e-6 (in practice σ_i is in the thousands or millions and
//     τd is astronomically small), and that per-round term is not added to
//     the accountant.
//   - Without sampling, the discrete Gaussian on integer-valued sums enjoys
//     the continuous Gaussian's RDP α Δ²/(2σ²) (Canonne, Kamath & Steinke).
//     The accountant applies the sampled Gaussian's amplification by
//     sampling to this discrete mechanism; that transfer is the standard
//     practice but is not proven here for the discrete sum.
//   - The sensitivity takes randomised rounding's worst case (every
//     coordinate moving by almost 1, hence √d), which overstates it
//     slightly; Kairouz et al.'s conditional rounding would be tighter.
//
// # Replicated state and determinism
//
// An Accountant is part of a job's Raft state, JSON-encoded; a round trip is
// exact and the RDP stays finite (math.MaxFloat64 marks an order with no
// guarantee). SampledGaussianRDP and Epsilon use math.Exp and math.Log,
// whose last bits can differ between CPUs (on amd64, math.Exp uses FMA
// instructions when the CPU has them), so a state machine must not compute
// them while applying log entries: the leader computes the round's
// per-step RDP with SampledGaussianRDP and any stop-or-go decision from
// Epsilon or EpsilonAfter, writes them into the command, and the FSM
// applies Accountant.ComposeRDP, which only multiplies and adds with
// explicit rounding and gives the same bits everywhere.
//
// # Cost
//
// An Accountant is two slices of 151 float64s (2.4 KB; about 3.5 KB as
// JSON). SampledGaussianRDP at the 151 default orders takes about a
// quarter of a millisecond; Epsilon about 3 µs. Encode allocates only
// its d-word result and spends about 0.3–0.5 µs per value on one core in
// the discrete Gaussian sampler (about 0.4 s per million parameters);
// Decode allocates d float64s. Samplers and generators are not safe for
// concurrent use: give each goroutine its own *rand.Rand.
package dp
