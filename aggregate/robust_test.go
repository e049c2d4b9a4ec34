package aggregate

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestSignFlipAttack: 8 honest participants send the true update g plus
// noise (10% of g's norm each); 2 Byzantine ones send −10·g and claim ten
// times the examples. FedAvg's result lands far on the wrong side of zero;
// the median, the trimmed mean (β = 0.2 trims both attackers at each
// coordinate) and Multi-Krum (f = 2) stay close to the honest mean.
func TestSignFlipAttack(t *testing.T) {
	const params, honest, byzantine = 2000, 8, 2
	r := rand.New(rand.NewPCG(15, 16))
	g := make([]float64, params)
	for i := range g {
		g[i] = r.NormFloat64()
	}
	noise := 0.1 / math.Sqrt(params) * norm64(g) // per coordinate: 10% of ‖g‖ per update
	var us [][]float32
	var ws []float64
	mean := make([]float64, params)
	for range honest {
		u := make([]float32, params)
		for i := range u {
			u[i] = float32(g[i] + noise*r.NormFloat64())
			mean[i] += float64(u[i]) / honest
		}
		us, ws = append(us, u), append(ws, 100)
	}
	for range byzantine {
		u := make([]float32, params)
		for i := range u {
			u[i] = float32(-10 * g[i])
		}
		us, ws = append(us, u), append(ws, 1000)
	}
	cases := []struct {
		cfg      RuleConfig
		maxDrift float64 // ‖result − honest mean‖ / ‖honest mean‖
		minDrift float64
	}{
		{RuleConfig{Name: RuleFedAvg}, math.Inf(1), 5},
		{RuleConfig{Name: RuleMedian}, 0.1, 0},
		{RuleConfig{Name: RuleTrimmedMean, Beta: 0.2}, 0.1, 0},
		{RuleConfig{Name: RuleMultiKrum, F: byzantine}, 1e-6, 0},
		{RuleConfig{Name: RuleKrum, F: byzantine}, 0.15, 0},
		// The norm bound alone drops the ×10 updates.
		{RuleConfig{Name: RuleFedAvg, NormBound: 3}, 1e-6, 0},
	}
	for _, c := range cases {
		got, err := runRule(t, c.cfg, params, ups(ws, us...))
		if err != nil {
			t.Fatal(err)
		}
		diff := make([]float64, params)
		for i := range diff {
			diff[i] = float64(got[i]) - mean[i]
		}
		drift := norm64(diff) / norm64(mean)
		t.Logf("%-13s drift %.3g", cmpOr(c.cfg.Name, RuleFedAvg), drift)
		if drift > c.maxDrift || drift < c.minDrift {
			t.Errorf("%+v: ‖result − honest mean‖/‖honest mean‖ = %.3g; want in [%g, %g]", c.cfg, drift, c.minDrift, c.maxDrift)
		}
	}
}

func norm64(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}
