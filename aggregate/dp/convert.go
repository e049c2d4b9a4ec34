package dp

import "math"

// Epsilon converts accumulated RDP (rdp[i] at orders[i]) to the smallest ε
// for which the mechanism is (ε, δ)-DP, with the conversion of Canonne,
// Kamath & Steinke 2020 (Prop. 12; also Asoodeh et al. 2020), which
// TensorFlow Privacy has used since 2021:
//
//	ε(α) = ε_RDP(α) + ln((α−1)/α) − (ln δ + ln α)/(α−1),
//
// minimised over the orders; it returns ε and the order that attains it.
// As in TensorFlow Privacy, an order whose RDP already gives
// δ ≥ √(1 − e^−ε_RDP) (the KL-divergence bound) yields ε = 0, orders
// ≤ 1.01 are not used (the formula is unstable there), and a negative
// ε(α) counts as 0, since (0, δ')-DP with δ' < δ implies (0, δ)-DP.
// Orders with a non-finite, NaN or negative RDP, or one of at least
// math.MaxFloat64 (an Accountant's saturated "no guarantee"), are skipped.
//
// It returns (+Inf, 0) when no order gives a bound, when δ is not in
// (0, 1) — δ ≥ 1 is meaningless and δ = 0 needs pure DP, which RDP of the
// Gaussian never gives — or when the slices differ in length.
func Epsilon(orders, rdp []float64, delta float64) (eps, order float64) {
	return convert(orders, rdp, delta, tightEpsilon)
}

// EpsilonClassic is Epsilon with Mironov's original conversion (RDP paper,
// Prop. 3), ε(α) = ε_RDP(α) + ln(1/δ)/(α−1), which TensorFlow Privacy used
// until 2020 and with which its published figures of that time (such as
// ε = 2.92 for its MNIST tutorial) were computed. It is never smaller than
// Epsilon's; use it only to reproduce such figures.
func EpsilonClassic(orders, rdp []float64, delta float64) (eps, order float64) {
	return convert(orders, rdp, delta, classicEpsilon)
}

func tightEpsilon(alpha, r, delta float64) float64 {
	switch {
	case delta*delta+math.Expm1(-r) > 0:
		return 0
	case alpha > 1.01:
		return r + math.Log1p(-1/alpha) - math.Log(delta*alpha)/(alpha-1)
	}
	return math.Inf(1)
}

func classicEpsilon(alpha, r, delta float64) float64 {
	return r - math.Log(delta)/(alpha-1)
}

func convert(orders, rdp []float64, delta float64, conv func(alpha, r, delta float64) float64) (eps, order float64) {
	eps = math.Inf(1)
	if len(orders) != len(rdp) || !(delta > 0 && delta < 1) {
		return eps, 0
	}
	for i, a := range orders {
		r := rdp[i]
		if !(a > 1) || math.IsInf(a, 0) || !(r >= 0) || r >= math.MaxFloat64 {
			continue
		}
		e := conv(a, r, delta)
		if math.IsNaN(e) || math.IsInf(e, 0) {
			continue
		}
		e = max(e, 0)
		if e < eps {
			eps, order = e, a
		}
	}
	return eps, order
}
