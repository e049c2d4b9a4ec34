//go:build amd64 && !purego

package sgemm

//go:generate go run gen_kernels.go

import (
	"errors"
	"sync"

	"golang.org/x/sys/cpu"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// microKernel computes one block of C from k steps of A and B, in place:
// C = alpha·A·B + beta·C (C not read when beta == 0). A's element (r, p) is
// at a + p·as + r·rs, B's (p, col) at b + p·bs + 4·col, C's (r, col) at c
// + r·ldc + 4·col; strides in bytes. The generated kernels_amd64.s holds
// them; gen_kernels.go describes the loop.
type microKernel func(k int, a *float32, as, rs int, b *float32, bs int, c *float32, ldc int, alpha, beta float32)

// isa is one family of micro-kernels: blocks of rows[i] rows and one or
// two vectors of lanes columns.
type isa struct {
	lanes int
	rows  []int
	kern  [][2]microKernel
}

var (
	isaAVX2   = &isa{lanes: 8, rows: rowsAVX2[:], kern: kernelsAVX2[:]}
	isaAVX512 = &isa{lanes: 16, rows: rowsAVX512[:], kern: kernelsAVX512[:]}
)

func asmKernels() []*kernel {
	return []*kernel{
		{name: "avx512", impl: asmImpl{isa: isaAVX512}, why: need(cpu.X86.HasAVX512F, "this CPU has no AVX-512F")},
		{name: "avx2", impl: asmImpl{isa: isaAVX2}, why: need(cpu.X86.HasAVX2 && cpu.X86.HasFMA, "this CPU has no AVX2 with FMA")},
	}
}

func need(have bool, why string) error {
	if have {
		return nil
	}
	return errors.New(why)
}

// asmImpl is gonum's float32 BLAS with Sgemm computed by one family of
// micro-kernels.
type asmImpl struct {
	gonum.Implementation
	isa *isa
}

const (
	// parallelMinWork is the number of multiply-adds below which a product
	// runs on one goroutine: smaller ones finish before a second goroutine
	// is scheduled.
	parallelMinWork = 1 << 21
	// kc is the number of steps of k one block of C takes at a time, so
	// that the B panel (kc × 32 float32, 32 KB) stays in the L1 cache
	// while the blocks of rows go by.
	kc = 256
)

// Sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices.
func (im asmImpl) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	checkGemm(tA, tB, m, n, k, a, lda, b, ldb, c, ldc)
	if k == 0 || alpha == 0 {
		scale(beta, c, ldc, m, n)
		return
	}
	// The kernels read A in place through two strides, so a transposed A
	// costs nothing. They read B a row at a time, so a transposed B is
	// transposed first.
	g := gemm{isa: im.isa, k: k, alpha: alpha, beta: beta, a: a, as: 4, rs: 4 * lda, b: b, ldb: ldb, c: c, ldc: ldc}
	if tA != blas.NoTrans {
		g.as, g.rs = 4*lda, 4
	}
	if tB != blas.NoTrans {
		buf := scratchPool.Get().(*scratch)
		defer scratchPool.Put(buf)
		buf.bt = transpose(buf.bt, b, ldb, n, k)
		g.b, g.ldb = buf.bt, n
	}
	workers := threads
	if m*n*k < parallelMinWork {
		workers = 1
	}
	if workers <= 1 {
		g.block(0, m, 0, n)
		return
	}
	var wg sync.WaitGroup
	if m >= n {
		// Split rows in multiples of the tallest block.
		mr := g.isa.rows[0]
		step := ((m+mr-1)/mr + workers - 1) / workers * mr
		for i0 := 0; i0 < m; i0 += step {
			i1 := min(i0+step, m)
			wg.Go(func() { g.block(i0, i1, 0, n) })
		}
	} else {
		// Split columns in multiples of the widest block.
		nr := 2 * g.isa.lanes
		step := ((n+nr-1)/nr + workers - 1) / workers * nr
		for j0 := 0; j0 < n; j0 += step {
			j1 := min(j0+step, n)
			wg.Go(func() { g.block(0, m, j0, j1) })
		}
	}
	wg.Wait()
}

// gemm is one product C = alpha·A·B + beta·C, A read through byte strides
// (as between steps of k, rs between rows), B row-major.
type gemm struct {
	isa         *isa
	k           int
	alpha, beta float32
	a           []float32
	as, rs      int
	b           []float32
	ldb         int
	c           []float32
	ldc         int
}

// scratch is one goroutine's work memory.
type scratch struct {
	bt  []float32       // a transposed B
	b   []float32       // the last, partial columns of B, zero-padded
	tmp [8 * 32]float32 // a partial block of C
	blk [][2]int        // blocks of rows: first row, index into isa.rows
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// block computes C[i0:i1, j0:j1].
func (g *gemm) block(i0, i1, j0, j1 int) {
	s := scratchPool.Get().(*scratch)
	defer scratchPool.Put(s)
	in := g.isa
	// Cover the rows with blocks of the kernels' heights, tallest first:
	// no block reads a row of A beyond the matrix.
	s.blk = s.blk[:0]
	for i := i0; i < i1; {
		h := 0
		for in.rows[h] > i1-i {
			h++
		}
		s.blk = append(s.blk, [2]int{i, h})
		i += in.rows[h]
	}
	nr := 2 * in.lanes
	for p0 := 0; p0 < g.k; p0 += kc {
		kb := min(kc, g.k-p0)
		beta := g.beta
		if p0 > 0 {
			beta = 1
		}
		for j := j0; j < j1; j += nr {
			w := min(nr, j1-j)
			nv := (w + in.lanes - 1) / in.lanes
			wide := nv * in.lanes
			bp, bs := &g.b[p0*g.ldb+j], 4*g.ldb
			if w < wide {
				// Copy the last columns, zero-padded to whole vectors:
				// the kernel must not read past B's end.
				s.b = packTail(s.b, g.b[p0*g.ldb:], g.ldb, kb, j, w, wide)
				bp, bs = &s.b[0], 4*wide
			}
			for _, blk := range s.blk {
				i, h := blk[0], blk[1]
				ap := &g.a[(p0*g.as+i*g.rs)/4]
				kern := in.kern[h][nv-1]
				if w == wide {
					kern(kb, ap, g.as, g.rs, bp, bs, &g.c[i*g.ldc+j], 4*g.ldc, g.alpha, beta)
					continue
				}
				kern(kb, ap, g.as, g.rs, bp, bs, &s.tmp[0], 4*wide, g.alpha, 0)
				for r := range in.rows[h] {
					merge(g.c[(i+r)*g.ldc+j:(i+r)*g.ldc+j+w], s.tmp[r*wide:r*wide+w], beta)
				}
			}
		}
	}
}

// packTail copies columns j … j+w−1 of rows 0 … k−1 of b (row stride ld)
// into dst with row stride wide, zero-padded.
func packTail(dst, b []float32, ld, k, j, w, wide int) []float32 {
	if cap(dst) < k*wide {
		dst = make([]float32, k*wide)
	}
	dst = dst[:k*wide]
	for p := range k {
		row := dst[p*wide : (p+1)*wide]
		copy(row, b[p*ld+j:p*ld+j+w])
		clear(row[w:])
	}
	return dst
}

// merge sets c to t + beta·c (to t when beta is 0, without reading c).
func merge(c, t []float32, beta float32) {
	t = t[:len(c)]
	switch beta {
	case 0:
		copy(c, t)
	case 1:
		for i := range c {
			c[i] += t[i]
		}
	default:
		for i := range c {
			c[i] = t[i] + beta*c[i]
		}
	}
}

// scale multiplies the m×n matrix c by beta; beta == 0 clears it without
// reading it, as BLAS requires.
func scale(beta float32, c []float32, ldc, m, n int) {
	if beta == 1 {
		return
	}
	for i := range m {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}

// transposeAVX2 transposes a rows×cols block, both multiples of 8, of src
// (row stride lds) into dst (row stride ldd): transpose_amd64.s.
//
//go:noescape
func transposeAVX2(dst *float32, ldd int, src *float32, lds int, rows, cols int)

var haveAVX2 = cpu.X86.HasAVX2

// transpose writes the cols×rows transpose of the rows×cols matrix src (row
// stride ld) into dst, growing dst if needed: 8×8 blocks in registers with
// AVX2, the edges element by element.
func transpose(dst, src []float32, ld, rows, cols int) []float32 {
	if cap(dst) < rows*cols {
		dst = make([]float32, rows*cols)
	}
	dst = dst[:rows*cols]
	r8, c8 := 0, 0
	if haveAVX2 && rows >= 8 && cols >= 8 {
		r8, c8 = rows&^7, cols&^7
		transposeAVX2(&dst[0], rows, &src[0], ld, r8, c8)
	}
	// The last columns of every row, then the last rows' first columns.
	for i := range rows {
		s := src[i*ld : i*ld+cols]
		j0 := c8
		if i >= r8 {
			j0 = 0
		}
		for j := j0; j < cols; j++ {
			dst[j*rows+i] = s[j]
		}
	}
	return dst
}
