package dp

import "math"

// DefaultOrders are the Rényi orders an Accountant tracks:
// {1 + x/10 : x = 1, …, 99} ∪ {12, …, 63}, in increasing order — 99
// fractional-step orders from 1.1 to 10.9 (of which 2, 3, …, 10 are
// integers) and the 52 integers 12 to 63. These are TensorFlow Privacy's
// orders; they cover the useful range for noise multipliers from about 0.5
// up. Integer orders take the exact binomial sum, the others the erfc
// series (see SampledGaussianRDP). Treat it as read-only: NewAccountant
// copies it.
var DefaultOrders = defaultOrders()

func defaultOrders() []float64 {
	orders := make([]float64, 0, 99+52)
	for x := 1; x <= 99; x++ {
		orders = append(orders, 1+float64(x)/10)
	}
	for a := 12; a <= 63; a++ {
		orders = append(orders, float64(a))
	}
	return orders
}

// maxSeriesTerms bounds the erfc series of a fractional order; a series
// that has not converged by then yields +Inf (no guarantee at that order).
const maxSeriesTerms = 100_000

// SampledGaussianRDP returns the Rényi DP, at each order, of one step of
// the sampled Gaussian mechanism: each record (here, each participant) is
// included independently with probability q, the included records' clipped
// contributions are summed, and Gaussian noise of standard deviation z times
// the clip is added (Mironov 2017; Mironov, Talwar & Zhang 2019).
//
// q = 0 gives 0 at every order and q = 1 gives α/(2z²) exactly. Otherwise
// integer orders use the binomial sum
//
//	A_α = Σ_{i=0..α} C(α,i) q^i (1−q)^(α−i) exp((i²−i)/(2z²)),
//
// fractional orders the two-sided erfc series (stopped once both of a
// step's terms fall below e^−30), both summed in log space so that nothing
// overflows; the RDP is ln(A_α)/(α−1).
//
// Parameters outside the mechanism's domain give +Inf (no guarantee) at
// every order: q outside [0, 1] or NaN, z ≤ 0 or NaN, or an order ≤ 1 or
// not finite. z = +Inf gives 0. The result is deterministic for given
// inputs on one machine; see the package documentation about replicating
// it across machines.
func SampledGaussianRDP(q, z float64, orders []float64) []float64 {
	rdp := make([]float64, len(orders))
	for i, a := range orders {
		rdp[i] = sampledGaussianRDP(q, z, a)
	}
	return rdp
}

func sampledGaussianRDP(q, z, alpha float64) float64 {
	switch {
	case !(q >= 0 && q <= 1) || !(z > 0) || !(alpha > 1) || math.IsInf(alpha, 0):
		return math.Inf(1)
	case q == 0 || math.IsInf(z, 1):
		return 0
	case q == 1:
		return alpha / (2 * z * z)
	}
	var logA float64
	if alpha == math.Trunc(alpha) && alpha <= 1<<20 {
		logA = logAInt(q, z, int(alpha))
	} else {
		logA = logAFrac(q, z, alpha)
	}
	if math.IsNaN(logA) {
		return math.Inf(1)
	}
	// A_α ≥ 1 in exact arithmetic; rounding may leave it a hair below.
	return max(0, logA/(alpha-1))
}

// logAInt is ln A_α for an integer order α and 0 < q < 1.
func logAInt(q, z float64, alpha int) float64 {
	lq, l1q := math.Log(q), math.Log1p(-q)
	twoVar := 2 * z * z
	logA := math.Inf(-1)
	logCoef := 0.0 // ln C(α, i)
	for i := 0; i <= alpha; i++ {
		if i > 0 {
			logCoef += math.Log(float64(alpha-i+1)) - math.Log(float64(i))
		}
		fi := float64(i)
		s := logCoef + fi*lq + float64(alpha-i)*l1q + (fi*fi-fi)/twoVar
		logA = logAdd(logA, s)
	}
	return logA
}

// logAFrac is ln A_α for a fractional order α and 0 < q < 1: the integral
// of the mixture's likelihood ratio split at z0, each half a series in the
// generalised binomial coefficients C(α, i), whose signs alternate once
// i > α.
func logAFrac(q, z, alpha float64) float64 {
	lq, l1q := math.Log(q), math.Log1p(-q)
	twoVar := 2 * z * z
	sqrt2z := math.Sqrt2 * z
	z0 := z*z*math.Log(1/q-1) + 0.5
	logA0, logA1 := math.Inf(-1), math.Inf(-1)
	logCoef, positive := 0.0, true // ln |C(α, i)| and its sign
	for i := 0; i < maxSeriesTerms; i++ {
		if i > 0 {
			f := alpha - float64(i-1) // C(α,i) = C(α,i−1)·(α−i+1)/i
			if f == 0 {
				return logAdd(logA0, logA1) // α an integer after all: the series ends
			}
			if f < 0 {
				positive = !positive
			}
			logCoef += math.Log(math.Abs(f)) - math.Log(float64(i))
		}
		fi := float64(i)
		j := alpha - fi
		logT0 := logCoef + fi*lq + j*l1q
		logT1 := logCoef + j*lq + fi*l1q
		logE0 := math.Log(0.5) + logErfc((fi-z0)/sqrt2z)
		logE1 := math.Log(0.5) + logErfc((z0-j)/sqrt2z)
		logS0 := logT0 + (fi*fi-fi)/twoVar + logE0
		logS1 := logT1 + (j*j-j)/twoVar + logE1
		if positive {
			logA0, logA1 = logAdd(logA0, logS0), logAdd(logA1, logS1)
		} else {
			var ok0, ok1 bool
			logA0, ok0 = logSub(logA0, logS0)
			logA1, ok1 = logSub(logA1, logS1)
			if !ok0 || !ok1 {
				return math.NaN() // lost to rounding: no guarantee at this order
			}
		}
		if max(logS0, logS1) < -30 {
			return logAdd(logA0, logA1)
		}
	}
	return math.NaN()
}

// logAdd returns ln(e^x + e^y).
func logAdd(x, y float64) float64 {
	a, b := min(x, y), max(x, y)
	if math.IsInf(a, -1) {
		return b
	}
	return math.Log1p(math.Exp(a-b)) + b
}

// logSub returns ln(e^x − e^y) for x ≥ y (−Inf when they are equal), and
// false if x < y.
func logSub(x, y float64) (float64, bool) {
	switch {
	case x < y:
		return math.NaN(), false
	case math.IsInf(y, -1):
		return x, true
	case x == y:
		return math.Inf(-1), true
	}
	// ln(e^x − e^y) = x + ln(1 − e^(y−x)), finite however far apart.
	return x + math.Log(-math.Expm1(y-x)), true
}

// logErfc returns ln erfc(x), accurate far into the tail where erfc(x)
// itself underflows.
func logErfc(x float64) float64 {
	if x < 25 {
		// math.Erfc keeps full relative precision until its result turns
		// subnormal near x = 26.5.
		return math.Log(math.Erfc(x))
	}
	// The asymptotic (Laurent) series of ln erfc at infinity; the first
	// omitted term is below 1e-12 at x = 25.
	x2 := x * x
	inv := 1 / x2
	return -math.Log(math.Pi)/2 - math.Log(x) - x2 +
		inv*(-0.5+inv*(0.625+inv*(-37.0/24+inv*353.0/64)))
}
