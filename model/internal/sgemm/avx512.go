//go:build goexperiment.simd && amd64

package sgemm

import (
	"simd/archsimd"
	"sync"
	"unsafe"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// avx512Impl is gonum's float32 BLAS with Sgemm replaced by a register-blocked
// AVX-512 kernel. C is computed in blocks of 8 rows × 32 columns held in 16
// vector registers; each step of the inner loop loads one row of B (two
// vectors), broadcasts eight elements of A and issues sixteen fused
// multiply-adds.
type avx512Impl struct{ gonum.Implementation }

// parallelMinWork is the number of multiply-adds below which a product runs on
// one goroutine: smaller ones finish before a second goroutine is scheduled.
const parallelMinWork = 1 << 21

var scratchPool = sync.Pool{New: func() any { return new([]float32) }}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices.
func (avx512Impl) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	checkGemm(tA, tB, m, n, k, a, lda, b, ldb, c, ldc)
	scale(beta, c, ldc, m, n)
	if k == 0 || alpha == 0 {
		return
	}
	// The kernel reads A element by element, so a transposed A only swaps
	// its strides. B is read a row at a time, so a transposed B is packed.
	ars, acs := lda, 1
	if tA != blas.NoTrans {
		ars, acs = 1, lda
	}
	if tB != blas.NoTrans {
		buf := scratchPool.Get().(*[]float32)
		defer scratchPool.Put(buf)
		*buf = transpose(*buf, b, ldb, n, k)
		b, ldb = *buf, n
	}
	g := gemm{k: k, alpha: alpha, a: a, ars: ars, acs: acs, b: b, ldb: ldb, c: c, ldc: ldc}
	workers := threads
	if m*n*k < parallelMinWork {
		workers = 1
	}
	if workers <= 1 {
		g.rows(0, m, 0, n)
		return
	}
	var wg sync.WaitGroup
	if m >= n {
		// Split rows in multiples of 8.
		step := (m/8 + workers - 1) / workers * 8
		step = max(step, 8)
		for i0 := 0; i0 < m; i0 += step {
			i1 := min(i0+step, m)
			wg.Go(func() { g.rows(i0, i1, 0, n) })
		}
	} else {
		// Split columns in multiples of 32.
		step := (n/32 + workers - 1) / workers * 32
		step = max(step, 32)
		for j0 := 0; j0 < n; j0 += step {
			j1 := min(j0+step, n)
			wg.Go(func() { g.rows(0, m, j0, j1) })
		}
	}
	wg.Wait()
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

// transpose writes the cols×rows transpose of the rows×cols matrix src (row
// stride ld) into dst, growing dst if needed.
func transpose(dst, src []float32, ld, rows, cols int) []float32 {
	if cap(dst) < rows*cols {
		dst = make([]float32, rows*cols)
	}
	dst = dst[:rows*cols]
	const tile = 32
	for i0 := 0; i0 < rows; i0 += tile {
		for j0 := 0; j0 < cols; j0 += tile {
			for i := i0; i < min(i0+tile, rows); i++ {
				s := src[i*ld : i*ld+cols]
				for j := j0; j < min(j0+tile, cols); j++ {
					dst[j*rows+i] = s[j]
				}
			}
		}
	}
	return dst
}

// gemm holds one product C += alpha·A·B with A read through strides (so a
// transposed A costs nothing) and B row-major.
type gemm struct {
	k        int
	alpha    float32
	a        []float32
	ars, acs int
	b        []float32
	ldb      int
	c        []float32
	ldc      int
}

// rows computes the block C[i0:i1, j0:j1]; j0 is a multiple of 32.
func (g *gemm) rows(i0, i1, j0, j1 int) {
	alpha := archsimd.BroadcastFloat32x16(g.alpha)
	j := j0
	for ; j+32 <= j1; j += 32 {
		i := i0
		for ; i+8 <= i1; i += 8 {
			g.block8x32(i, j, alpha)
		}
		for ; i+4 <= i1; i += 4 {
			g.block4x32(i, j, alpha)
		}
		for ; i < i1; i++ {
			g.block1x32(i, j, alpha)
		}
	}
	for ; j < j1; j += 16 {
		for i := i0; i < i1; i++ {
			g.block1xPart(i, j, min(16, j1-j), alpha)
		}
	}
}

// at returns a pointer to element (i, p) of A.
func (g *gemm) at(i, p int) unsafe.Pointer {
	return unsafe.Pointer(&g.a[i*g.ars+p*g.acs])
}

func load(p unsafe.Pointer) archsimd.Float32x16 {
	return archsimd.LoadFloat32x16((*[16]float32)(p))
}

func bcast(p unsafe.Pointer) archsimd.Float32x16 {
	return archsimd.BroadcastFloat32x16(*(*float32)(p))
}

// addInto adds alpha·acc to the 16 floats of C at p.
func addInto(p unsafe.Pointer, acc, alpha archsimd.Float32x16) {
	acc.MulAdd(alpha, load(p)).Store((*[16]float32)(p))
}

func (g *gemm) block8x32(i, j int, alpha archsimd.Float32x16) {
	var c0a, c0b, c1a, c1b, c2a, c2b, c3a, c3b archsimd.Float32x16
	var c4a, c4b, c5a, c5b, c6a, c6b, c7a, c7b archsimd.Float32x16
	ap := g.at(i, 0)
	rs := uintptr(g.ars) * 4
	cs := uintptr(g.acs) * 4
	bp := unsafe.Pointer(&g.b[j])
	bs := uintptr(g.ldb) * 4
	for range g.k {
		b0 := load(bp)
		b1 := load(unsafe.Add(bp, 64))
		x := bcast(ap)
		c0a, c0b = b0.MulAdd(x, c0a), b1.MulAdd(x, c0b)
		x = bcast(unsafe.Add(ap, rs))
		c1a, c1b = b0.MulAdd(x, c1a), b1.MulAdd(x, c1b)
		x = bcast(unsafe.Add(ap, 2*rs))
		c2a, c2b = b0.MulAdd(x, c2a), b1.MulAdd(x, c2b)
		x = bcast(unsafe.Add(ap, 3*rs))
		c3a, c3b = b0.MulAdd(x, c3a), b1.MulAdd(x, c3b)
		x = bcast(unsafe.Add(ap, 4*rs))
		c4a, c4b = b0.MulAdd(x, c4a), b1.MulAdd(x, c4b)
		x = bcast(unsafe.Add(ap, 5*rs))
		c5a, c5b = b0.MulAdd(x, c5a), b1.MulAdd(x, c5b)
		x = bcast(unsafe.Add(ap, 6*rs))
		c6a, c6b = b0.MulAdd(x, c6a), b1.MulAdd(x, c6b)
		x = bcast(unsafe.Add(ap, 7*rs))
		c7a, c7b = b0.MulAdd(x, c7a), b1.MulAdd(x, c7b)
		ap = unsafe.Add(ap, cs)
		bp = unsafe.Add(bp, bs)
	}
	cp := unsafe.Pointer(&g.c[i*g.ldc+j])
	ls := uintptr(g.ldc) * 4
	addInto(cp, c0a, alpha)
	addInto(unsafe.Add(cp, 64), c0b, alpha)
	cp = unsafe.Add(cp, ls)
	addInto(cp, c1a, alpha)
	addInto(unsafe.Add(cp, 64), c1b, alpha)
	cp = unsafe.Add(cp, ls)
	addInto(cp, c2a, alpha)
	addInto(unsafe.Add(cp, 64), c2b, alpha)
	cp = unsafe.Add(cp, ls)
	addInto(cp, c3a, alpha)
	addInto(unsafe.Add(cp, 64), c3b, alpha)
	cp = unsafe.Add(cp, ls)
	addInto(cp, c4a, alpha)
	addInto(unsafe.Add(cp, 64), c4b, alpha)
	cp = unsafe.Add(cp, ls)
	addInto(cp, c5a, alpha)
	addInto(unsafe.Add(cp, 64), c5b, alpha)
	cp = unsafe.Add(cp, ls)
	addInto(cp, c6a, alpha)
	addInto(unsafe.Add(cp, 64), c6b, alpha)
	cp = unsafe.Add(cp, ls)
	addInto(cp, c7a, alpha)
	addInto(unsafe.Add(cp, 64), c7b, alpha)
}

func (g *gemm) block4x32(i, j int, alpha archsimd.Float32x16) {
	var c0a, c0b, c1a, c1b, c2a, c2b, c3a, c3b archsimd.Float32x16
	ap := g.at(i, 0)
	rs := uintptr(g.ars) * 4
	cs := uintptr(g.acs) * 4
	bp := unsafe.Pointer(&g.b[j])
	bs := uintptr(g.ldb) * 4
	for range g.k {
		b0 := load(bp)
		b1 := load(unsafe.Add(bp, 64))
		x := bcast(ap)
		c0a, c0b = b0.MulAdd(x, c0a), b1.MulAdd(x, c0b)
		x = bcast(unsafe.Add(ap, rs))
		c1a, c1b = b0.MulAdd(x, c1a), b1.MulAdd(x, c1b)
		x = bcast(unsafe.Add(ap, 2*rs))
		c2a, c2b = b0.MulAdd(x, c2a), b1.MulAdd(x, c2b)
		x = bcast(unsafe.Add(ap, 3*rs))
		c3a, c3b = b0.MulAdd(x, c3a), b1.MulAdd(x, c3b)
		ap = unsafe.Add(ap, cs)
		bp = unsafe.Add(bp, bs)
	}
	cp := unsafe.Pointer(&g.c[i*g.ldc+j])
	ls := uintptr(g.ldc) * 4
	addInto(cp, c0a, alpha)
	addInto(unsafe.Add(cp, 64), c0b, alpha)
	cp = unsafe.Add(cp, ls)
	addInto(cp, c1a, alpha)
	addInto(unsafe.Add(cp, 64), c1b, alpha)
	cp = unsafe.Add(cp, ls)
	addInto(cp, c2a, alpha)
	addInto(unsafe.Add(cp, 64), c2b, alpha)
	cp = unsafe.Add(cp, ls)
	addInto(cp, c3a, alpha)
	addInto(unsafe.Add(cp, 64), c3b, alpha)
}

func (g *gemm) block1x32(i, j int, alpha archsimd.Float32x16) {
	var ca, cb archsimd.Float32x16
	ap := g.at(i, 0)
	cs := uintptr(g.acs) * 4
	bp := unsafe.Pointer(&g.b[j])
	bs := uintptr(g.ldb) * 4
	for range g.k {
		x := bcast(ap)
		ca = load(bp).MulAdd(x, ca)
		cb = load(unsafe.Add(bp, 64)).MulAdd(x, cb)
		ap = unsafe.Add(ap, cs)
		bp = unsafe.Add(bp, bs)
	}
	cp := unsafe.Pointer(&g.c[i*g.ldc+j])
	addInto(cp, ca, alpha)
	addInto(unsafe.Add(cp, 64), cb, alpha)
}

// block1xPart handles the last w < 32 columns of one row with masked loads.
func (g *gemm) block1xPart(i, j, w int, alpha archsimd.Float32x16) {
	var acc archsimd.Float32x16
	for p := range g.k {
		x := archsimd.BroadcastFloat32x16(g.a[i*g.ars+p*g.acs])
		row := g.b[p*g.ldb+j : p*g.ldb+j+w]
		acc = archsimd.LoadFloat32x16SlicePart(row).MulAdd(x, acc)
	}
	out := g.c[i*g.ldc+j : i*g.ldc+j+w]
	acc.MulAdd(alpha, archsimd.LoadFloat32x16SlicePart(out)).StoreSlicePart(out)
}
