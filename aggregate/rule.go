package aggregate

import (
	"errors"
	"fmt"
	"math"
)

// Errors returned by this package.
var (
	// ErrShape means an update's length differs from the model's.
	ErrShape = errors.New("update has the wrong length")
	// ErrNotFinite means an update or weight holds NaN or an infinity, or
	// a result would.
	ErrNotFinite = errors.New("update is not finite")
	// ErrEmpty means no update was added.
	ErrEmpty = errors.New("no updates to aggregate")
	// ErrTooFew means the rule needs more updates than it has: Krum needs
	// n > 2f+2, Multi-Krum also n ≥ m (after the norm bound's drops).
	ErrTooFew = errors.New("too few updates for the aggregation rule")
	// ErrConfig means a RuleConfig or OptimizerConfig setting is invalid;
	// the message names the job file's field.
	ErrConfig = errors.New("invalid setting")
	// ErrState means optimiser state bytes are malformed.
	ErrState = errors.New("bad optimizer state")
)

// Rule combines one round's updates into the update applied to the model.
// A Rule is not safe for concurrent use.
type Rule interface {
	// Add checks one update (length, finite values, positive finite
	// weight) and keeps or sums it. A refused update changes nothing;
	// errors wrap ErrShape / ErrNotFinite. Add may keep a reference to
	// delta until Result (see each rule): the caller must not modify it.
	Add(delta []float32, weight float64) error
	// Count is the number of updates added.
	Count() int
	// Result returns the combined update Δ (not base+Δ) as a new slice;
	// ErrEmpty with no update, ErrTooFew when the rule needs more updates
	// than it has. It may be called again, and more updates added after.
	Result() ([]float32, error)
}

// Rule names, as a job file's aggregation.rule spells them.
const (
	RuleFedAvg      = "fedavg"
	RuleMedian      = "median"
	RuleTrimmedMean = "trimmed_mean"
	RuleKrum        = "krum"
	RuleMultiKrum   = "multi_krum"
)

// RuleConfig chooses and sets up a Rule; the zero value is FedAvg.
type RuleConfig struct {
	// Name is RuleFedAvg (default when ""), RuleMedian, RuleTrimmedMean,
	// RuleKrum or RuleMultiKrum.
	Name string
	// Beta, for trimmed_mean, is the fraction trimmed at each end,
	// 0 ≤ β < 0.5: floor(β·n) largest and as many smallest values are
	// dropped per coordinate.
	Beta float64
	// F, for krum and multi_krum, is the number of Byzantine updates
	// tolerated; Result needs n > 2f+2.
	F int
	// M, for multi_krum, is how many lowest-scoring updates are averaged
	// (0: n − f).
	M int
	// NormBound > 0 drops, before the rule runs, every update whose L2
	// norm is above NormBound × the median norm of the round's updates
	// (0: off). It must be ≥ 1, so that the updates up to the median
	// always stay. With it, every rule (FedAvg too) buffers the updates.
	NormBound float64
	// Exact makes the weighted sums of fedavg and multi_krum exact
	// (fixed point, NewExactFedAvg), so that a round's result does not
	// depend on the order its updates arrived in: reproducible runs, at
	// the price of scalar arithmetic. median, trimmed_mean and krum do not
	// depend on the order anyway.
	Exact bool
	// Parallelism is the number of goroutines a rule's passes over the
	// coordinates use (0: GOMAXPROCS). It is not a job-file setting and
	// does not change results.
	Parallelism int
}

// Validate checks the settings, naming the job file's fields ("rule",
// "beta", "f", "m", "norm_bound") in its errors, which wrap ErrConfig. A
// setting the rule does not use must be zero.
func (c RuleConfig) Validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("%w: %s %v: %s", ErrConfig, field, v, want)
	}
	name := c.Name
	if name == "" {
		name = RuleFedAvg
	}
	switch name {
	case RuleFedAvg, RuleMedian, RuleTrimmedMean, RuleKrum, RuleMultiKrum:
	default:
		return bad("rule", fmt.Sprintf("%q", c.Name), `want "fedavg", "median", "trimmed_mean", "krum" or "multi_krum"`)
	}
	krum := name == RuleKrum || name == RuleMultiKrum
	switch {
	case name == RuleTrimmedMean && !(c.Beta >= 0 && c.Beta < 0.5):
		return bad("beta", c.Beta, "want 0 ≤ beta < 0.5 (the fraction trimmed at each end)")
	case name != RuleTrimmedMean && c.Beta != 0:
		return bad("beta", c.Beta, "applies to trimmed_mean only")
	case krum && c.F < 0:
		return bad("f", c.F, "want f ≥ 0")
	case !krum && c.F != 0:
		return bad("f", c.F, "applies to krum and multi_krum only")
	case name == RuleMultiKrum && c.M < 0:
		return bad("m", c.M, "want m ≥ 0 (0: n − f)")
	case name != RuleMultiKrum && c.M != 0:
		return bad("m", c.M, "applies to multi_krum only")
	case c.NormBound != 0 && !(c.NormBound >= 1 && !math.IsInf(c.NormBound, 0)):
		return bad("norm_bound", c.NormBound, "want 0 (off) or a finite multiple ≥ 1 of the round's median norm")
	case c.Parallelism < 0:
		return bad("parallelism", c.Parallelism, "want ≥ 0 (0: GOMAXPROCS)")
	}
	return nil
}

// NewRule returns the rule c names for models of params parameters.
func NewRule(c RuleConfig, params int) (Rule, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if params < 1 {
		return nil, fmt.Errorf("%w: a model of %d parameters", ErrShape, params)
	}
	if (c.Name == "" || c.Name == RuleFedAvg) && c.NormBound == 0 {
		a := NewFedAvg(params)
		if c.Exact {
			a = NewExactFedAvg(params)
		}
		a.Parallelism = c.Parallelism
		return a, nil
	}
	b := buffer{params: params, normBound: c.NormBound, workers: c.Parallelism, exact: c.Exact}
	switch c.Name {
	case RuleMedian:
		return &coordinateRule{buffer: b, median: true}, nil
	case RuleTrimmedMean:
		return &coordinateRule{buffer: b, beta: c.Beta}, nil
	case RuleKrum, RuleMultiKrum:
		return &krum{buffer: b, f: c.F, m: c.M, multi: c.Name == RuleMultiKrum}, nil
	}
	return &bufferedFedAvg{buffer: b}, nil
}

// checkUpdate is Add's check, shared by every rule: the length, a positive
// finite weight, finite values. With norm set it also returns the squared
// L2 norm (the sum of squares is finite exactly when every value is, so it
// is the finiteness test too).
func checkUpdate(delta []float32, weight float64, params, workers int, norm bool) (sqnorm float64, err error) {
	if len(delta) != params {
		return 0, fmt.Errorf("%w: %d values; the model has %d", ErrShape, len(delta), params)
	}
	if !(weight > 0) || math.IsInf(weight, 0) {
		return 0, fmt.Errorf("%w: weight %v must be positive and finite", ErrNotFinite, weight)
	}
	ok := true
	if norm {
		sqnorm = sumSquaresChunked(delta, workers)
		ok = !math.IsInf(sqnorm, 0) && !math.IsNaN(sqnorm)
	} else {
		ok = finiteParallel(delta, workers)
	}
	if !ok {
		for i, v := range delta {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return 0, fmt.Errorf("%w: value %d is %v", ErrNotFinite, i, v)
			}
		}
	}
	return sqnorm, nil
}

// checkResult refuses a result that overflowed float32 (weights so large
// that w·Δ overflows float64, for instance).
func checkResult(out []float32, workers int) ([]float32, error) {
	if !finiteParallel(out, workers) {
		return nil, fmt.Errorf("%w: the aggregate overflows", ErrNotFinite)
	}
	return out, nil
}
