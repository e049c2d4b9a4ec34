package dp

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/accord-fl/accord/aggregate"
)

// MaxWrapProbability is the chance PlanDistributed allows that any
// coordinate of the secure-aggregation sum leaves the int32 range and wraps.
const MaxWrapProbability = 1e-9

// maxTauD bounds τ·d, the additive RDP gap (Kairouz, Liu & Steinke 2021,
// Prop. 14) between a sum of discrete Gaussians and one discrete Gaussian.
const maxTauD = 1e-6

// sumBound is the largest |value| an int32-centred decoding returns.
const sumBound = math.MaxInt32

// DistributedPlan is how participants noise their updates for distributed
// DP under secure aggregation: each clips its update to L2 norm Clip,
// multiplies it by Scale, rounds it randomly to integers, adds discrete
// Gaussian noise of standard deviation Sigma and encodes the result modulo
// 2^32; secure aggregation sums the encodings; Decode divides the sum by
// Scale. Whenever at least Threshold participants' encodings are summed,
// the sum carries noise of standard deviation at least Multiplier times
// the sensitivity Scale·Clip + √Length (in integer units), so it is
// accounted as one step of the sampled Gaussian mechanism at Multiplier.
type DistributedPlan struct {
	Clip       float64 // S: L2 bound on each participant's update
	Multiplier float64 // z: noise standard deviation over sensitivity
	Scale      float64 // γ: integer units per unit of update
	Sigma      float64 // σ_i = z·(γS + √d)/√t: each participant's noise, integer units
	Threshold  int     // t: the fewest participants whose encodings are ever summed
	Clients    int     // n: the cohort size, which bounds the sum's range
	Length     int     // d: values per update
	// WrapProbability bounds the chance that any coordinate of the sum of
	// all n encodings leaves (−2^31, 2^31) and wraps: a union bound over d
	// coordinates of the sub-Gaussian tail of n·σ_i² total noise beyond
	// the signal bound n·(γS + 1).
	WrapProbability float64
}

// PlanDistributed returns the plan for updates of length values from a
// cohort of clients participants, of which secure aggregation needs at
// least threshold to survive, clipped to L2 norm clip, with noise
// multiplier multiplier.
//
// The scale γ is the largest that keeps WrapProbability ≤
// MaxWrapProbability (1e-9) when all n participants contribute: with
// k = √(2 ln(2d/1e-9)), it solves n(γS + 1) + k·√n·σ_i = 2^31 − 1 for
// σ_i = z(γS + √d)/√t, so a coordinate of the sum, at most n(γS + 1) in
// signal, stays in range unless its noise exceeds k standard deviations.
// A larger γ means finer quantisation; a γ below √d/S is refused, since
// then randomised rounding (up to √d in L2) would outweigh the clipped
// signal in the sensitivity γS + √d and more than double the noise. So is
// a plan whose per-participant σ_i is so small that the sum of t discrete
// Gaussians strays measurably from one discrete Gaussian (τ·d > 1e-6 in
// Kairouz, Liu & Steinke's Prop. 14). Errors wrap ErrParams and name the
// parameter.
func PlanDistributed(length, clients, threshold int, clip, multiplier float64) (DistributedPlan, error) {
	switch {
	case length < 1:
		return DistributedPlan{}, fmt.Errorf("%w: length %d (want at least 1 value)", ErrParams, length)
	case clients < 1:
		return DistributedPlan{}, fmt.Errorf("%w: clients %d (want at least 1)", ErrParams, clients)
	case threshold < 1 || threshold > clients:
		return DistributedPlan{}, fmt.Errorf("%w: threshold %d (want 1 to clients = %d)", ErrParams, threshold, clients)
	case !(clip > 0) || math.IsInf(clip, 0):
		return DistributedPlan{}, fmt.Errorf("%w: clip %v (want a positive L2 norm)", ErrParams, clip)
	case !(multiplier > 0) || math.IsInf(multiplier, 0):
		return DistributedPlan{}, fmt.Errorf("%w: multiplier %v (want a positive noise multiplier)", ErrParams, multiplier)
	}
	n, t, d := float64(clients), float64(threshold), float64(length)
	sd := math.Sqrt(d)
	k := math.Sqrt(2 * math.Log(2*d/MaxWrapProbability))
	kz := k * multiplier * math.Sqrt(n/t)
	// γS (n + kz) + n + kz·√d ≤ M, with a sliver of margin for rounding.
	gs := float64(sumBound-n-kz*sd) / float64(n+kz) * (1 - 1e-9)
	if !(gs >= sd) {
		return DistributedPlan{}, fmt.Errorf("%w: clients %d, length %d, multiplier %v: the largest scale that avoids wrapping "+
			"puts clip·scale at %.4g, below √length = %.4g, where rounding would dominate the sensitivity; "+
			"use fewer clients per round or fewer values", ErrParams, clients, length, multiplier, gs, sd)
	}
	p := DistributedPlan{Clip: clip, Multiplier: multiplier, Scale: gs / clip, Threshold: threshold, Clients: clients, Length: length}
	p.Sigma = p.minSigma()
	p.WrapProbability = p.wrapProbability()
	if p.WrapProbability > MaxWrapProbability {
		// Not reached: the margin above covers rounding.
		return DistributedPlan{}, fmt.Errorf("%w: wrap probability %.3g with scale %v", ErrParams, p.WrapProbability, p.Scale)
	}
	if tauD := p.tauD(); !(tauD <= maxTauD) {
		return DistributedPlan{}, fmt.Errorf("%w: multiplier %v, threshold %d: each participant's noise σ = %.3g is too small for the "+
			"sum of discrete Gaussians to be accounted as one (τ·d = %.3g > %g); raise the multiplier or lower the threshold",
			ErrParams, multiplier, threshold, p.Sigma, tauD, maxTauD)
	}
	return p, nil
}

// sensitivity is the L2 sensitivity of one participant's rounded, scaled
// update: γS, plus at most √d from randomised rounding (each coordinate
// moves by less than 1).
func (p DistributedPlan) sensitivity() float64 {
	return float64(p.Scale*p.Clip) + math.Sqrt(float64(p.Length))
}

// minSigma is the per-participant σ that gives t participants' summed
// noise a standard deviation of z times the sensitivity.
func (p DistributedPlan) minSigma() float64 {
	return float64(p.Multiplier*p.sensitivity()) / math.Sqrt(float64(p.Threshold))
}

// wrapProbability is the union bound over d coordinates of
// P(|noise| > 2^31 − 1 − n(γS + 1)) for the sum of n σ-sub-Gaussian noises.
func (p DistributedPlan) wrapProbability() float64 {
	n := float64(p.Clients)
	margin := sumBound - n*(p.Scale*p.Clip+1)
	if !(margin > 0) {
		return 1
	}
	v := n * p.Sigma * p.Sigma
	return min(1, 2*float64(p.Length)*math.Exp(-margin*margin/(2*v)))
}

// tauD bounds τ·d with τ = 10 Σ_{k<n} exp(−2π²σ²k/(k+1)) ≤ 10(n−1)e^(−π²σ²).
func (p DistributedPlan) tauD() float64 {
	if p.Clients <= 1 {
		return 0
	}
	return 10 * float64(p.Clients-1) * float64(p.Length) * math.Exp(-math.Pi*math.Pi*p.Sigma*p.Sigma)
}

// Validate checks a plan received from elsewhere (a participant's task):
// sane sizes, positive finite clip, multiplier and scale, a scale that
// cannot wrap a single encoding, and a Sigma at least
// Multiplier·(Scale·Clip + √Length)/√Threshold, so that Threshold
// participants' noise covers the sensitivity. It does not judge whether
// Multiplier and Threshold are high enough: a participant compares them
// with its own policy.
func (p DistributedPlan) Validate() error {
	switch {
	case p.Length < 1:
		return fmt.Errorf("%w: length %d", ErrParams, p.Length)
	case p.Clients < 1:
		return fmt.Errorf("%w: clients %d", ErrParams, p.Clients)
	case p.Threshold < 1 || p.Threshold > p.Clients:
		return fmt.Errorf("%w: threshold %d for %d clients", ErrParams, p.Threshold, p.Clients)
	case !(p.Clip > 0) || math.IsInf(p.Clip, 0):
		return fmt.Errorf("%w: clip %v", ErrParams, p.Clip)
	case !(p.Multiplier > 0) || math.IsInf(p.Multiplier, 0):
		return fmt.Errorf("%w: multiplier %v", ErrParams, p.Multiplier)
	case !(p.Scale > 0) || !(p.Scale*p.Clip < sumBound):
		return fmt.Errorf("%w: scale %v with clip %v", ErrParams, p.Scale, p.Clip)
	case !(p.Sigma <= maxDiscreteSigma):
		return fmt.Errorf("%w: sigma %v", ErrParams, p.Sigma)
	case !(p.Sigma >= p.minSigma()*(1-1e-9)):
		return fmt.Errorf("%w: sigma %v below multiplier × sensitivity / √threshold = %v", ErrParams, p.Sigma, p.minSigma())
	}
	return nil
}

// Encode returns a participant's contribution to a secure-aggregation
// round: delta clipped (in a copy; delta is unchanged) to L2 norm Clip,
// scaled by Scale, rounded randomly and unbiasedly to integers, plus
// discrete Gaussian noise of standard deviation Sigma (SampleDiscreteGaussian),
// each value as a uint32 word in two's complement, so that the sum of
// words modulo 2^32 encodes the sum of the integers. rng must be a CSPRNG
// (NewRNG) and must not be shared with another goroutine. Encode refuses an
// invalid plan (ErrParams), a delta of the wrong length (ErrLength) or one
// with a NaN or infinite value (ErrNotFinite).
//
// The clipping factor is shrunk by 2^−40 so that the scaled vector's norm
// stays below Scale·Clip despite float64 rounding; the noise dominates the
// time (about a microsecond per value).
func (p DistributedPlan) Encode(delta []float32, rng *rand.Rand) ([]uint32, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if len(delta) != p.Length {
		return nil, fmt.Errorf("%w: %d values for a plan of %d", ErrLength, len(delta), p.Length)
	}
	norm := aggregate.Norm(delta)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return nil, fmt.Errorf("%w: L2 norm %v", ErrNotFinite, norm)
	}
	f := p.Scale
	if norm > p.Clip {
		f = float64(p.Clip/norm) * (1 - 1.0/(1<<40)) * p.Scale
	}
	noise := newDiscreteGaussian(p.Sigma)
	out := make([]uint32, len(delta))
	for i, v := range delta {
		x := float64(float64(v) * f)
		fl := math.Floor(x)
		y := int64(fl)
		if rng.Float64() < x-fl {
			y++
		}
		y += noise.sample(rng)
		out[i] = uint32(y) // two's complement modulo 2^32
	}
	return out, nil
}

// Decode turns the sum modulo 2^32 of the survivors' encodings into the sum
// of their clipped updates plus noise, in update units: each word read as a
// centred int32, divided by Scale. The noise has standard deviation
// Sigma·√s/Scale for s survivors, at least Multiplier·(Clip + √Length/Scale).
func (p DistributedPlan) Decode(sum []uint32) []float64 {
	out := make([]float64, len(sum))
	for i, w := range sum {
		out[i] = float64(int32(w)) / p.Scale
	}
	return out
}
