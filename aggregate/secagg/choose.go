package secagg

import (
	"fmt"
	"math"
)

// Security and correctness parameters of ChooseGraph, as in Google's
// parameter finder: the chance that some client's secrets can be rebuilt by
// the corrupt clients is at most 2^−40, and the chance that some needed
// secret cannot be rebuilt for lack of survivors at most 2^−20.
const (
	securityBits    = 40
	correctnessBits = 20
)

// MaxClients is the largest cohort ChooseGraph plans for: its search costs
// up to n²/4 steps (about a second at this size), and no larger cohort is
// run.
const MaxClients = 10_000

// logGammas returns lg[i] = ln Γ(i+1) = ln i! for i in [0, n].
func logGammas(n int) []float64 {
	lg := make([]float64, n+1)
	for i := range lg {
		lg[i], _ = math.Lgamma(float64(i + 1))
	}
	return lg
}

// tailExceeds reports whether ln P[Binomial(n, p) ≥ k] > bound; lg is
// logGammas(n) or longer. The sum only grows, so it stops once past the
// bound.
func tailExceeds(lg []float64, n, k int, p, bound float64) bool {
	if k <= 0 {
		return 0 > bound
	}
	lp, lq := math.Log(p), math.Log1p(-p)
	acc := math.Inf(-1)
	for i := k; i <= n; i++ {
		if acc = logAddExp(acc, lg[n]-lg[i]-lg[n-i]+float64(i)*lp+float64(n-i)*lq); acc > bound {
			return true
		}
	}
	return false
}

// logAddExp returns ln(e^acc + e^term), with acc = −∞ for an empty sum.
func logAddExp(acc, term float64) float64 {
	if math.IsInf(acc, -1) {
		return term
	}
	return math.Max(acc, term) + math.Log1p(math.Exp(-math.Abs(acc-term)))
}

// ChooseGraph picks the neighbour degree k and threshold t for n clients
// when up to a fraction dropout of them may drop and a fraction corrupt may
// collude with the server (semi-honest). Each secret has k+1 holders; t is
// the largest threshold that survivors still reach (failure ≤ 2^−20 over
// all clients), and k the smallest even degree for which the corrupt
// holders stay below t (failure ≤ 2^−40 over all clients), or t exceeds the
// number of corrupt clients altogether. If no sparse
// graph qualifies, the complete graph (k = n−1) is returned. It refuses
// more than MaxClients clients.
func ChooseGraph(n int, dropout, corrupt float64) (k, t int, err error) {
	if n < 3 || n > MaxClients || !(dropout >= 0 && dropout < 1) || !(corrupt >= 0 && corrupt < 1) {
		return 0, 0, fmt.Errorf("%w: %d clients (want 3–%d), dropout %v, corrupt %v", ErrParams, n, MaxClients, dropout, corrupt)
	}
	logN := math.Log(float64(n))
	secure := -securityBits*math.Ln2 - logN
	correct := -correctnessBits*math.Ln2 - logN
	lg := logGammas(n)
	lp, lq := math.Log(dropout), math.Log1p(-dropout)
	try := func(k int) (int, bool) {
		holders := k + 1
		// Largest t with P[survivors < t] ≤ bound, i.e. P[dropped ≥ j] ≤
		// bound for j = holders−t+1. The tail grows as j falls: sum it
		// from j = holders down, one term a step, until it passes the
		// bound (one pass, not one sum per t).
		best := 0
		tail := math.Inf(-1)
		for j := holders; j >= 1; j-- {
			tail = logAddExp(tail, lg[holders]-lg[j]-lg[holders-j]+float64(j)*lp+float64(holders-j)*lq)
			if tail > correct {
				break
			}
			if t := holders - j + 1; t >= 2 {
				best = t
			}
		}
		if best < 2 {
			return 0, false
		}
		// Only ⌊corrupt·n⌋ clients are corrupt in all: a threshold above
		// that is safe whatever the graph.
		if corrupt > 0 && best <= int(corrupt*float64(n)) && tailExceeds(lg, holders, best, corrupt, secure) {
			return 0, false
		}
		return best, true
	}
	for k = 2; k < n-1; k += 2 {
		if t, ok := try(k); ok {
			return k, t, nil
		}
	}
	k = n - 1
	if t, ok := try(k); ok {
		return k, t, nil
	}
	return 0, 0, fmt.Errorf("%w: no threshold tolerates %.0f%% dropouts with %.0f%% corrupt among %d clients", ErrParams, 100*dropout, 100*corrupt, n)
}
