package aggregate

import "math"

// kernelSet is one implementation of the loops over model coordinates that
// the rules spend their time in. Every set computes bit for bit what the
// generic set computes (the same operations on the same lanes, in the same
// order, with fused multiply-adds), so an aggregate does not depend on the
// CPU that computed it.
type kernelSet struct {
	name string
	// finite reports whether x holds no NaN and no infinity.
	finite func(x []float32) bool
	// sumSquares returns Σ x[i]² in float64: the squared L2 norm, and the
	// finiteness test (it is finite exactly when every x[i] is).
	sumSquares func(x []float32) float64
	// sqDist returns Σ (a[i]−b[i])², each difference rounded to float32
	// (relative error ≤ 2⁻²⁴), squared and added in float64; len(b) ≥
	// len(a).
	sqDist func(a, b []float32) float64
	// fold adds Σ_j ws[j]·us[j][off+i] to sum[i] for every i, the inner
	// sum taken from zero in j order; len(us) ≤ maxFold.
	fold func(sum []float64, us [][]float32, ws []float64, off int)
	// sortnet runs a sorting network on the first net.rows rows of
	// netLanes float32 of tile: for each pair (a, b) of byte offsets, the
	// rows at a and b become their lane-wise minimum and maximum. Kernel
	// sets may place a −0 and a +0 (equal) differently; nothing else
	// differs.
	sortnet func(tile []float32, net *sortNet)
}

// maxFold is the most updates one fold call takes.
const maxFold = 16

// lanes is the number of partial sums sumSquares and sqDist keep: lane l
// adds up the elements i ≡ l (mod lanes) of the longest prefix whose length
// is a multiple of lanes; reduce32 combines them; the tail is then added
// one element at a time. Four AVX-512 or eight AVX2 registers hold them.
const lanes = 32

var genericKernels = &kernelSet{name: "generic", finite: finiteGeneric, sumSquares: sumSquaresGeneric,
	sqDist: sqDistGeneric, fold: foldGeneric, sortnet: sortnetGeneric}

// kernels is the fastest set the CPU runs (kernel_amd64.go, kernel_other.go).
var kernels = bestKernels()

func finiteGeneric(x []float32) bool {
	for _, v := range x {
		if math.Float32bits(v)&0x7f80_0000 == 0x7f80_0000 {
			return false
		}
	}
	return true
}

func sumSquaresGeneric(x []float32) float64 {
	var p [lanes]float64
	n := len(x) &^ (lanes - 1)
	for i := 0; i < n; i += lanes {
		c := (*[lanes]float32)(x[i : i+lanes])
		for l, v := range c {
			p[l] = math.FMA(float64(v), float64(v), p[l])
		}
	}
	return sumSquaresTail(reduce32(&p), x[n:])
}

func sumSquaresTail(s float64, x []float32) float64 {
	for _, v := range x {
		s = math.FMA(float64(v), float64(v), s)
	}
	return s
}

func sqDistGeneric(a, b []float32) float64 {
	b = b[:len(a)]
	var p [lanes]float64
	n := len(a) &^ (lanes - 1)
	for i := 0; i < n; i += lanes {
		ca, cb := (*[lanes]float32)(a[i:i+lanes]), (*[lanes]float32)(b[i:i+lanes])
		for l := range ca {
			d := float64(ca[l] - cb[l])
			p[l] = math.FMA(d, d, p[l])
		}
	}
	return sqDistTail(reduce32(&p), a[n:], b[n:])
}

func sqDistTail(s float64, a, b []float32) float64 {
	b = b[:len(a)]
	for i, v := range a {
		d := float64(v - b[i])
		s = math.FMA(d, d, s)
	}
	return s
}

// reduce32 adds the lanes pairwise: p[l]+p[l+16], then +8, +4, +2, +1.
func reduce32(p *[lanes]float64) float64 {
	for l := range 16 {
		p[l] += p[l+16]
	}
	for l := range 8 {
		p[l] += p[l+8]
	}
	for l := range 4 {
		p[l] += p[l+4]
	}
	for l := range 2 {
		p[l] += p[l+2]
	}
	return p[0] + p[1]
}

func foldGeneric(sum []float64, us [][]float32, ws []float64, off int) {
	ws = ws[:len(us)]
	for i := range sum {
		acc := 0.0
		for j, u := range us {
			acc = math.FMA(ws[j], float64(u[off+i]), acc)
		}
		sum[i] += acc
	}
}

func sortnetGeneric(tile []float32, net *sortNet) {
	tile = tile[:net.rows*netLanes]
	pairs := net.pairs
	for k := 0; k+1 < len(pairs); k += 2 {
		a := (*[netLanes]float32)(tile[pairs[k]/4:])
		b := (*[netLanes]float32)(tile[pairs[k+1]/4:])
		for l := range netLanes {
			a[l], b[l] = min(a[l], b[l]), max(a[l], b[l])
		}
	}
}
