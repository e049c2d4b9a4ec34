//go:build !purego

package aggregate

import "golang.org/x/sys/cpu"

// The assembly kernels (kernel_amd64.s) take the longest prefix whose
// length is a multiple of their block (sums of squares: 32 elements;
// finite: 64; fold: 32); the Go wrappers below
// finish the tail with the generic code, which continues the same
// computation.

//go:noescape
func sumSquaresAVX512(x *float32, n int) float64

//go:noescape
func sqDistAVX512(a, b *float32, n int) float64

//go:noescape
func foldAVX512(sum *float64, us **float32, ws *float64, k, off, n int)

//go:noescape
func finiteAVX512(x *float32, n int) bool

//go:noescape
func finiteAVX2(x *float32, n int) bool

//go:noescape
func sortnetAVX512(tile *float32, pairs *uint32, n int)

//go:noescape
func sortnetAVX2(tile *float32, pairs *uint32, n int)

//go:noescape
func sumSquaresAVX2(x *float32, n int) float64

//go:noescape
func sqDistAVX2(a, b *float32, n int) float64

//go:noescape
func foldAVX2(sum *float64, us **float32, ws *float64, k, off, n int)

var (
	haveAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA
	haveAVX512 = haveAVX2 && cpu.X86.HasAVX512F
)

var (
	avx2Kernels = &kernelSet{name: "avx2",
		finite: func(x []float32) bool {
			return finiteAsm(x, false)
		},
		sumSquares: func(x []float32) float64 {
			return sumSquaresAsm(x, sumSquaresAVX2)
		},
		sqDist: func(a, b []float32) float64 {
			return sqDistAsm(a, b, sqDistAVX2)
		},
		fold: func(sum []float64, us [][]float32, ws []float64, off int) {
			foldAsm(sum, us, ws, off, false)
		},
		sortnet: func(tile []float32, net *sortNet) {
			if checkNetwork(tile, net) {
				sortnetAVX2(&tile[0], &net.pairs[0], len(net.pairs)/2)
			}
		},
	}
	avx512Kernels = &kernelSet{name: "avx512",
		finite: func(x []float32) bool {
			return finiteAsm(x, true)
		},
		sumSquares: func(x []float32) float64 {
			return sumSquaresAsm(x, sumSquaresAVX512)
		},
		sqDist: func(a, b []float32) float64 {
			return sqDistAsm(a, b, sqDistAVX512)
		},
		fold: func(sum []float64, us [][]float32, ws []float64, off int) {
			foldAsm(sum, us, ws, off, true)
		},
		sortnet: func(tile []float32, net *sortNet) {
			if checkNetwork(tile, net) {
				sortnetAVX512(&tile[0], &net.pairs[0], len(net.pairs)/2)
			}
		},
	}
)

func bestKernels() *kernelSet {
	switch {
	case haveAVX512:
		return avx512Kernels
	case haveAVX2:
		return avx2Kernels
	}
	return genericKernels
}

// kernelSets lists every set this machine runs, the generic one first.
func kernelSets() []*kernelSet {
	s := []*kernelSet{genericKernels}
	if haveAVX2 {
		s = append(s, avx2Kernels)
	}
	if haveAVX512 {
		s = append(s, avx512Kernels)
	}
	return s
}

// checkNetwork panics unless net's rows fit in tile (the assembly does not
// check; network's pairs are below its rows), and reports whether there is
// work.
func checkNetwork(tile []float32, net *sortNet) bool {
	if net.rows*netLanes > len(tile) {
		panic("aggregate: sorting network outside its tile")
	}
	return len(net.pairs) >= 2
}

func finiteAsm(x []float32, avx512 bool) bool {
	n := len(x) &^ 63
	if n > 0 {
		ok := false
		if avx512 {
			ok = finiteAVX512(&x[0], n)
		} else {
			ok = finiteAVX2(&x[0], n)
		}
		if !ok {
			return false
		}
	}
	return finiteGeneric(x[n:])
}

func sumSquaresAsm(x []float32, body func(*float32, int) float64) float64 {
	n := len(x) &^ (lanes - 1)
	if n == 0 {
		return sumSquaresGeneric(x)
	}
	return sumSquaresTail(body(&x[0], n), x[n:])
}

func sqDistAsm(a, b []float32, body func(a, b *float32, n int) float64) float64 {
	b = b[:len(a)]
	n := len(a) &^ (lanes - 1)
	if n == 0 {
		return sqDistGeneric(a, b)
	}
	return sqDistTail(body(&a[0], &b[0], n), a[n:], b[n:])
}

// foldAsm calls foldAVX512 or foldAVX2 directly (not through a func value)
// so that p stays on the stack.
func foldAsm(sum []float64, us [][]float32, ws []float64, off int, avx512 bool) {
	n := len(sum) &^ 31
	if n > 0 && len(us) > 0 {
		if len(us) > maxFold || len(ws) < len(us) {
			panic("aggregate: fold of too many updates")
		}
		var p [maxFold]*float32
		for j, u := range us {
			p[j] = &u[off : off+len(sum)][0] // bounds-checks the whole range
		}
		if avx512 {
			foldAVX512(&sum[0], &p[0], &ws[0], len(us), 0, n)
		} else {
			foldAVX2(&sum[0], &p[0], &ws[0], len(us), 0, n)
		}
	} else {
		n = 0
	}
	foldGeneric(sum[n:], us, ws, off+n)
}
