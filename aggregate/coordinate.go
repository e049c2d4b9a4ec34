package aggregate

import "math"

// coordinateRule is the coordinate-wise median or β-trimmed mean of Yin et
// al. (ICML 2018): each coordinate of the result comes from that
// coordinate's n values alone. Both are unweighted: robustness counts
// participants, and a weight is what a participant claims (its examples),
// which a Byzantine one would inflate.
//
// Result sorts each coordinate's n values with a sorting network (Batcher's
// odd–even merge sort: ~n·log²n/4 compare-exchanges, data-oblivious, so no
// input is slower than another), 16 coordinates at once in one AVX-512
// register, or two AVX2 ones: it copies a block of coordinates from every
// update into rows of 16 (one pass over the updates), runs the network on
// the rows, and reads the median, or adds up the kept values in ascending
// order in float64. Memory: the n updates (buffer), the result, and a
// scratch tile of at most ~256 KB per goroutine (more for n > 4096). Time:
// O(n·log²n·params/16).
type coordinateRule struct {
	buffer
	median bool    // else trimmed mean
	beta   float64 // trimmed mean: fraction trimmed at each end
}

// Add checks an update and keeps it.
func (r *coordinateRule) Add(delta []float32, weight float64) error { return r.add(delta, weight) }

// trimCount is floor(β·n), the values dropped at each end; β·n gets a
// 1e−9 allowance, so that β = 0.29 with n = 100 drops 29 although 0.29·100
// is 28.999999999999996 in binary floating point, and it never leaves
// fewer than one value.
func trimCount(beta float64, n int) int {
	return min(int(math.Floor(beta*float64(n)+1e-9)), (n-1)/2)
}

// netLanes is the number of coordinates a network sorts at once: one
// AVX-512 register of float32. A row is netLanes float32, 64 bytes.
const netLanes = 16

// sortNet is a sorting network for rows rows: compare-exchanges as pairs
// of byte offsets of rows (row i at 64·i), every offset below 64·rows.
type sortNet struct {
	rows  int
	pairs []uint32
}

// network is Batcher's odd–even merge sort for n rows. It is the network
// for the next power of two without the compare-exchanges that touch a row
// ≥ n: such rows would hold +∞, which no compare-exchange moves.
func network(n int) *sortNet {
	size := 1
	for size < n {
		size <<= 1
	}
	var pairs []uint32
	for p := 1; p < size; p <<= 1 {
		for k := p; k >= 1; k >>= 1 {
			for j := k % p; j+k < size; j += 2 * k {
				for i := 0; i < k && i+j+k < size; i++ {
					a, b := i+j, i+j+k
					if a/(2*p) == b/(2*p) && b < n {
						pairs = append(pairs, uint32(4*netLanes*a), uint32(4*netLanes*b))
					}
				}
			}
		}
	}
	return &sortNet{rows: n, pairs: pairs}
}

// Result is the coordinate-wise median or trimmed mean of the updates the
// norm bound keeps.
func (r *coordinateRule) Result() ([]float32, error) {
	if len(r.updates) == 0 {
		return nil, ErrEmpty
	}
	idx := r.kept()
	us := make([][]float32, len(idx))
	for k, i := range idx {
		us[k] = r.updates[i]
	}
	n := len(us)
	trim := trimCount(r.beta, n)
	net := network(n)
	// A block is up to 16 groups of netLanes coordinates, ≤ 256 KB of rows.
	groups := max(1, min(16, (256<<10)/(4*netLanes*n)))
	block := groups * netLanes
	out := make([]float32, r.params)
	parallel(r.workers, r.params, block, max(block, minSpan/max(1, n/8)), func(lo, hi int) {
		tile := make([]float32, groups*n*netLanes)
		for c0 := lo; c0 < hi; c0 += block {
			w := min(block, hi-c0)
			g := (w + netLanes - 1) / netLanes
			// Row j of group q: coordinates c0+16q … c0+16q+15 of update j;
			// a last group short of 16 is padded with zeros.
			full := w / netLanes
			for j, u := range us {
				src := u[c0 : c0+w]
				for q := range full {
					*(*[netLanes]float32)(tile[(q*n+j)*netLanes:]) = *(*[netLanes]float32)(src[q*netLanes:])
				}
				if full < g {
					row := tile[(full*n+j)*netLanes : (full*n+j+1)*netLanes]
					clear(row[copy(row, src[full*netLanes:]):])
				}
			}
			for q := range g {
				rows := tile[q*n*netLanes : (q+1)*n*netLanes]
				kernels.sortnet(rows, net)
				dst := out[c0+q*netLanes : c0+min(w, (q+1)*netLanes)]
				if r.median {
					medianRows(dst, rows, n)
				} else {
					trimmedRows(dst, rows, n, trim)
				}
			}
		}
	})
	return out, nil
}

// medianRows sets dst[l] to the median of lane l of n sorted rows: the
// middle row, or the mean of the two middle rows. Adding 0 turns a −0 into
// +0, since kernel sets may sort −0 and +0 either way.
func medianRows(dst, rows []float32, n int) {
	k := n / 2
	for l := range dst {
		m := rows[k*netLanes+l]
		if n%2 == 0 {
			m = float32((float64(rows[(k-1)*netLanes+l]) + float64(m)) / 2)
		}
		dst[l] = m + 0
	}
}

// trimmedRows sets dst[l] to the mean of lane l of sorted rows t … n−t−1,
// added in that (ascending) order in float64 from +0, so that where −0 and
// +0 sorted cannot change the sum.
func trimmedRows(dst, rows []float32, n, t int) {
	var s [netLanes]float64
	for i := t; i < n-t; i++ {
		row := (*[netLanes]float32)(rows[i*netLanes:])
		for l := range s {
			s[l] += float64(row[l])
		}
	}
	for l := range dst {
		dst[l] = float32(s[l] / float64(n-2*t))
	}
}
