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

// logBinomTail returns ln P[Binomial(n, p) ≥ k].
func logBinomTail(n, k int, p float64) float64 {
	if k <= 0 {
		return 0
	}
	if k > n {
		return math.Inf(-1)
	}
	lp, lq := math.Log(p), math.Log1p(-p)
	lgN, _ := math.Lgamma(float64(n + 1))
	acc := math.Inf(-1)
	for i := k; i <= n; i++ {
		lgI, _ := math.Lgamma(float64(i + 1))
		lgRest, _ := math.Lgamma(float64(n - i + 1))
		term := lgN - lgI - lgRest + float64(i)*lp + float64(n-i)*lq
		if math.IsInf(acc, -1) {
			acc = term
		} else {
			acc = math.Max(acc, term) + math.Log1p(math.Exp(-math.Abs(acc-term)))
		}
	}
	return acc
}

// ChooseGraph picks the neighbour degree k and threshold t for n clients
// when up to a fraction dropout of them may drop and a fraction corrupt may
// collude with the server (semi-honest). Each secret has k+1 holders; t is
// the largest threshold that survivors still reach (failure ≤ 2^−20 over
// all clients), and k the smallest even degree for which the corrupt
// holders stay below t (failure ≤ 2^−40 over all clients), or t exceeds the
// number of corrupt clients altogether. If no sparse
// graph qualifies, the complete graph (k = n−1) is returned.
func ChooseGraph(n int, dropout, corrupt float64) (k, t int, err error) {
	if n < 3 || !(dropout >= 0 && dropout < 1) || !(corrupt >= 0 && corrupt < 1) {
		return 0, 0, fmt.Errorf("%w: %d clients, dropout %v, corrupt %v", ErrParams, n, dropout, corrupt)
	}
	logN := math.Log(float64(n))
	secure := -securityBits*math.Ln2 - logN
	correct := -correctnessBits*math.Ln2 - logN
	try := func(k int) (int, bool) {
		holders := k + 1
		// Largest t with P[survivors < t] ≤ bound, i.e. P[dropped ≥ holders−t+1] ≤ bound.
		best := 0
		for t := 2; t <= holders; t++ {
			if logBinomTail(holders, holders-t+1, dropout) <= correct {
				best = t
			}
		}
		if best < 2 {
			return 0, false
		}
		// Only ⌊corrupt·n⌋ clients are corrupt in all: a threshold above
		// that is safe whatever the graph.
		if corrupt > 0 && best <= int(corrupt*float64(n)) && logBinomTail(holders, best, corrupt) > secure {
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
