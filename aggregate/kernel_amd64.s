//go:build !purego

#include "textflag.h"

// The kernels of kernel.go in AVX2+FMA and AVX-512, chosen at run time by
// kernel_amd64.go. Each computes, lane for lane and in the same order,
// exactly what its generic twin in kernel.go computes, so results do not
// depend on the CPU (kernel_test.go checks it bit for bit).
//
// Sums of squares keep 32 float64 partial sums: lane l accumulates the
// elements i ≡ l (mod 32). AVX-512 holds them in Z0–Z3 (lanes 0–7, 8–15,
// 16–23, 24–31), AVX2 in Y0–Y7 (four lanes each). The reduction adds them
// in the order of reduce32: p[l]+p[l+16], then +8, +4, +2, +1.
//
// Prefetch distances, in bytes, measured on a Sapphire Rapids VM reading
// 100 updates of 4 MB from memory: one or two streams gain ~8% at 2 KB
// ahead; the fold's 16 streams gain ~20% at 512 B. One stream is still
// ~30% slower than four (finite reads four quarters at once).
#define PF1 2048
#define PFN 512

// func sumSquaresAVX512(x *float32, n int) float64
// Σ x[i]² in 32 float64 lanes, reduced; n is a multiple of 32.
TEXT ·sumSquaresAVX512(SB), NOSPLIT, $0-24
	MOVQ   x+0(FP), SI
	MOVQ   n+8(FP), CX
	VXORPD Z0, Z0, Z0
	VXORPD Z1, Z1, Z1
	VXORPD Z2, Z2, Z2
	VXORPD Z3, Z3, Z3
	SHRQ   $5, CX
	JZ     reduce

loop:
	PREFETCHT0  PF1(SI)
	PREFETCHT0  PF1+64(SI)
	VCVTPS2PD   (SI), Z4
	VCVTPS2PD   32(SI), Z5
	VCVTPS2PD   64(SI), Z6
	VCVTPS2PD   96(SI), Z7
	VFMADD231PD Z4, Z4, Z0
	VFMADD231PD Z5, Z5, Z1
	VFMADD231PD Z6, Z6, Z2
	VFMADD231PD Z7, Z7, Z3
	ADDQ        $128, SI
	DECQ        CX
	JNZ         loop

reduce:
	VADDPD        Z2, Z0, Z0
	VADDPD        Z3, Z1, Z1
	VADDPD        Z1, Z0, Z0
	VEXTRACTF64X4 $1, Z0, Y1
	VADDPD        Y1, Y0, Y0
	VEXTRACTF128  $1, Y0, X1
	VADDPD        X1, X0, X0
	VUNPCKHPD     X0, X0, X1
	VADDSD        X1, X0, X0
	VZEROUPPER
	MOVSD         X0, ret+16(FP)
	RET

// func sqDistAVX512(a, b *float32, n int) float64
// Σ (a[i]−b[i])², the difference taken in float32 and squared and added in
// float64, in 32 lanes; n is a multiple of 32.
TEXT ·sqDistAVX512(SB), NOSPLIT, $0-32
	MOVQ   a+0(FP), SI
	MOVQ   b+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPD Z0, Z0, Z0
	VXORPD Z1, Z1, Z1
	VXORPD Z2, Z2, Z2
	VXORPD Z3, Z3, Z3
	SHRQ   $5, CX
	JZ     reduce

loop:
	PREFETCHT0  PF1(SI)
	PREFETCHT0  PF1+64(SI)
	PREFETCHT0  PF1(DI)
	PREFETCHT0  PF1+64(DI)
	VMOVUPS     (SI), Y4
	VMOVUPS     32(SI), Y5
	VMOVUPS     64(SI), Y6
	VMOVUPS     96(SI), Y7
	VSUBPS      (DI), Y4, Y4
	VSUBPS      32(DI), Y5, Y5
	VSUBPS      64(DI), Y6, Y6
	VSUBPS      96(DI), Y7, Y7
	VCVTPS2PD   Y4, Z4
	VCVTPS2PD   Y5, Z5
	VCVTPS2PD   Y6, Z6
	VCVTPS2PD   Y7, Z7
	VFMADD231PD Z4, Z4, Z0
	VFMADD231PD Z5, Z5, Z1
	VFMADD231PD Z6, Z6, Z2
	VFMADD231PD Z7, Z7, Z3
	ADDQ        $128, SI
	ADDQ        $128, DI
	DECQ        CX
	JNZ         loop

reduce:
	VADDPD        Z2, Z0, Z0
	VADDPD        Z3, Z1, Z1
	VADDPD        Z1, Z0, Z0
	VEXTRACTF64X4 $1, Z0, Y1
	VADDPD        Y1, Y0, Y0
	VEXTRACTF128  $1, Y0, X1
	VADDPD        X1, X0, X0
	VUNPCKHPD     X0, X0, X1
	VADDSD        X1, X0, X0
	VZEROUPPER
	MOVSD         X0, ret+24(FP)
	RET

// func foldAVX512(sum *float64, us **float32, ws *float64, k, off, n int)
// For i < n: sum[i] += Σ_{j<k} ws[j]·us[j][off+i], the inner sum started at
// zero and accumulated with FMA in j order; n is a multiple of 32, k ≥ 1.
TEXT ·foldAVX512(SB), NOSPLIT, $0-48
	MOVQ sum+0(FP), DI
	MOVQ us+8(FP), SI
	MOVQ ws+16(FP), DX
	MOVQ k+24(FP), R8
	MOVQ off+32(FP), R9
	MOVQ n+40(FP), CX
	SHLQ $2, R9               // R9: byte offset into each update
	SHRQ $5, CX
	JZ   done

loop:
	VXORPD Z0, Z0, Z0
	VXORPD Z1, Z1, Z1
	VXORPD Z2, Z2, Z2
	VXORPD Z3, Z3, Z3
	XORQ   R10, R10

inner:
	MOVQ         (SI)(R10*8), R11
	VBROADCASTSD (DX)(R10*8), Z4
	PREFETCHT0   PFN(R11)(R9*1)
	PREFETCHT0   PFN+64(R11)(R9*1)
	VCVTPS2PD    (R11)(R9*1), Z5
	VCVTPS2PD    32(R11)(R9*1), Z6
	VCVTPS2PD    64(R11)(R9*1), Z7
	VCVTPS2PD    96(R11)(R9*1), Z8
	VFMADD231PD  Z5, Z4, Z0
	VFMADD231PD  Z6, Z4, Z1
	VFMADD231PD  Z7, Z4, Z2
	VFMADD231PD  Z8, Z4, Z3
	INCQ         R10
	CMPQ         R10, R8
	JLT          inner

	VADDPD  (DI), Z0, Z0
	VADDPD  64(DI), Z1, Z1
	VADDPD  128(DI), Z2, Z2
	VADDPD  192(DI), Z3, Z3
	VMOVUPD Z0, (DI)
	VMOVUPD Z1, 64(DI)
	VMOVUPD Z2, 128(DI)
	VMOVUPD Z3, 192(DI)
	ADDQ    $256, DI
	ADDQ    $128, R9
	DECQ    CX
	JNZ     loop

done:
	VZEROUPPER
	RET

// func sumSquaresAVX2(x *float32, n int) float64
TEXT ·sumSquaresAVX2(SB), NOSPLIT, $0-24
	MOVQ   x+0(FP), SI
	MOVQ   n+8(FP), CX
	VXORPD Y0, Y0, Y0
	VXORPD Y1, Y1, Y1
	VXORPD Y2, Y2, Y2
	VXORPD Y3, Y3, Y3
	VXORPD Y4, Y4, Y4
	VXORPD Y5, Y5, Y5
	VXORPD Y6, Y6, Y6
	VXORPD Y7, Y7, Y7
	SHRQ   $5, CX
	JZ     reduce

loop:
	PREFETCHT0  PF1(SI)
	PREFETCHT0  PF1+64(SI)
	VCVTPS2PD   (SI), Y8
	VCVTPS2PD   16(SI), Y9
	VCVTPS2PD   32(SI), Y10
	VCVTPS2PD   48(SI), Y11
	VFMADD231PD Y8, Y8, Y0
	VFMADD231PD Y9, Y9, Y1
	VFMADD231PD Y10, Y10, Y2
	VFMADD231PD Y11, Y11, Y3
	VCVTPS2PD   64(SI), Y8
	VCVTPS2PD   80(SI), Y9
	VCVTPS2PD   96(SI), Y10
	VCVTPS2PD   112(SI), Y11
	VFMADD231PD Y8, Y8, Y4
	VFMADD231PD Y9, Y9, Y5
	VFMADD231PD Y10, Y10, Y6
	VFMADD231PD Y11, Y11, Y7
	ADDQ        $128, SI
	DECQ        CX
	JNZ         loop

reduce:
	VADDPD       Y4, Y0, Y0
	VADDPD       Y5, Y1, Y1
	VADDPD       Y6, Y2, Y2
	VADDPD       Y7, Y3, Y3
	VADDPD       Y2, Y0, Y0
	VADDPD       Y3, Y1, Y1
	VADDPD       Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPD       X1, X0, X0
	VUNPCKHPD    X0, X0, X1
	VADDSD       X1, X0, X0
	VZEROUPPER
	MOVSD        X0, ret+16(FP)
	RET

// func sqDistAVX2(a, b *float32, n int) float64
TEXT ·sqDistAVX2(SB), NOSPLIT, $0-32
	MOVQ   a+0(FP), SI
	MOVQ   b+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPD Y0, Y0, Y0
	VXORPD Y1, Y1, Y1
	VXORPD Y2, Y2, Y2
	VXORPD Y3, Y3, Y3
	VXORPD Y4, Y4, Y4
	VXORPD Y5, Y5, Y5
	VXORPD Y6, Y6, Y6
	VXORPD Y7, Y7, Y7
	SHRQ   $5, CX
	JZ     reduce

loop:
	PREFETCHT0  PF1(SI)
	PREFETCHT0  PF1+64(SI)
	PREFETCHT0  PF1(DI)
	PREFETCHT0  PF1+64(DI)
	VMOVUPS     (SI), X8
	VMOVUPS     16(SI), X9
	VMOVUPS     32(SI), X10
	VMOVUPS     48(SI), X11
	VSUBPS      (DI), X8, X8
	VSUBPS      16(DI), X9, X9
	VSUBPS      32(DI), X10, X10
	VSUBPS      48(DI), X11, X11
	VCVTPS2PD   X8, Y8
	VCVTPS2PD   X9, Y9
	VCVTPS2PD   X10, Y10
	VCVTPS2PD   X11, Y11
	VFMADD231PD Y8, Y8, Y0
	VFMADD231PD Y9, Y9, Y1
	VFMADD231PD Y10, Y10, Y2
	VFMADD231PD Y11, Y11, Y3
	VMOVUPS     64(SI), X8
	VMOVUPS     80(SI), X9
	VMOVUPS     96(SI), X10
	VMOVUPS     112(SI), X11
	VSUBPS      64(DI), X8, X8
	VSUBPS      80(DI), X9, X9
	VSUBPS      96(DI), X10, X10
	VSUBPS      112(DI), X11, X11
	VCVTPS2PD   X8, Y8
	VCVTPS2PD   X9, Y9
	VCVTPS2PD   X10, Y10
	VCVTPS2PD   X11, Y11
	VFMADD231PD Y8, Y8, Y4
	VFMADD231PD Y9, Y9, Y5
	VFMADD231PD Y10, Y10, Y6
	VFMADD231PD Y11, Y11, Y7
	ADDQ        $128, SI
	ADDQ        $128, DI
	DECQ        CX
	JNZ         loop

reduce:
	VADDPD       Y4, Y0, Y0
	VADDPD       Y5, Y1, Y1
	VADDPD       Y6, Y2, Y2
	VADDPD       Y7, Y3, Y3
	VADDPD       Y2, Y0, Y0
	VADDPD       Y3, Y1, Y1
	VADDPD       Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPD       X1, X0, X0
	VUNPCKHPD    X0, X0, X1
	VADDSD       X1, X0, X0
	VZEROUPPER
	MOVSD        X0, ret+24(FP)
	RET

// func foldAVX2(sum *float64, us **float32, ws *float64, k, off, n int)
// As foldAVX512, 32 elements an iteration in eight YMM accumulators (two
// cache lines of each update, as foldAVX512 reads); n is a multiple of 32.
TEXT ·foldAVX2(SB), NOSPLIT, $0-48
	MOVQ sum+0(FP), DI
	MOVQ us+8(FP), SI
	MOVQ ws+16(FP), DX
	MOVQ k+24(FP), R8
	MOVQ off+32(FP), R9
	MOVQ n+40(FP), CX
	SHLQ $2, R9
	SHRQ $5, CX
	JZ   done

loop:
	VXORPD Y0, Y0, Y0
	VXORPD Y1, Y1, Y1
	VXORPD Y2, Y2, Y2
	VXORPD Y3, Y3, Y3
	VXORPD Y4, Y4, Y4
	VXORPD Y5, Y5, Y5
	VXORPD Y6, Y6, Y6
	VXORPD Y7, Y7, Y7
	XORQ   R10, R10

inner:
	MOVQ         (SI)(R10*8), R11
	VBROADCASTSD (DX)(R10*8), Y8
	PREFETCHT0   PFN(R11)(R9*1)
	PREFETCHT0   PFN+64(R11)(R9*1)
	VCVTPS2PD    (R11)(R9*1), Y9
	VCVTPS2PD    16(R11)(R9*1), Y10
	VCVTPS2PD    32(R11)(R9*1), Y11
	VCVTPS2PD    48(R11)(R9*1), Y12
	VFMADD231PD  Y9, Y8, Y0
	VFMADD231PD  Y10, Y8, Y1
	VFMADD231PD  Y11, Y8, Y2
	VFMADD231PD  Y12, Y8, Y3
	VCVTPS2PD    64(R11)(R9*1), Y9
	VCVTPS2PD    80(R11)(R9*1), Y10
	VCVTPS2PD    96(R11)(R9*1), Y11
	VCVTPS2PD    112(R11)(R9*1), Y12
	VFMADD231PD  Y9, Y8, Y4
	VFMADD231PD  Y10, Y8, Y5
	VFMADD231PD  Y11, Y8, Y6
	VFMADD231PD  Y12, Y8, Y7
	INCQ         R10
	CMPQ         R10, R8
	JLT          inner

	VADDPD  (DI), Y0, Y0
	VADDPD  32(DI), Y1, Y1
	VADDPD  64(DI), Y2, Y2
	VADDPD  96(DI), Y3, Y3
	VADDPD  128(DI), Y4, Y4
	VADDPD  160(DI), Y5, Y5
	VADDPD  192(DI), Y6, Y6
	VADDPD  224(DI), Y7, Y7
	VMOVUPD Y0, (DI)
	VMOVUPD Y1, 32(DI)
	VMOVUPD Y2, 64(DI)
	VMOVUPD Y3, 96(DI)
	VMOVUPD Y4, 128(DI)
	VMOVUPD Y5, 160(DI)
	VMOVUPD Y6, 192(DI)
	VMOVUPD Y7, 224(DI)
	ADDQ    $256, DI
	ADDQ    $128, R9
	DECQ    CX
	JNZ     loop

done:
	VZEROUPPER
	RET

// func finiteAVX512(x *float32, n int) bool
// Reports whether x[0:n] holds no NaN and no infinity; n is a multiple of
// 64. It reads the four quarters of x as four streams (one stream reads
// ~30% slower from memory) and adds x·0 into four accumulators: x·0 is ±0
// for a finite x and NaN otherwise, and a NaN stays.
TEXT ·finiteAVX512(SB), NOSPLIT, $0-17
	MOVQ   x+0(FP), SI
	MOVQ   n+8(FP), CX      // n/4 elements a quarter: n bytes
	LEAQ   (SI)(CX*1), DI
	LEAQ   (DI)(CX*1), R8
	LEAQ   (R8)(CX*1), R9
	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	VXORPS Z2, Z2, Z2
	VXORPS Z3, Z3, Z3
	VXORPS Z4, Z4, Z4
	SHRQ   $6, CX
	JZ     reduce

loop:
	PREFETCHT0  PFN(SI)
	PREFETCHT0  PFN(DI)
	PREFETCHT0  PFN(R8)
	PREFETCHT0  PFN(R9)
	VFMADD231PS (SI), Z4, Z0
	VFMADD231PS (DI), Z4, Z1
	VFMADD231PS (R8), Z4, Z2
	VFMADD231PS (R9), Z4, Z3
	ADDQ        $64, SI
	ADDQ        $64, DI
	ADDQ        $64, R8
	ADDQ        $64, R9
	DECQ        CX
	JNZ         loop

reduce:
	VADDPS   Z1, Z0, Z0
	VADDPS   Z3, Z2, Z2
	VADDPS   Z2, Z0, Z0
	VCMPPS   $3, Z0, Z0, K1 // unordered: NaN
	KORTESTW K1, K1
	SETEQ    ret+16(FP)
	VZEROUPPER
	RET

// func finiteAVX2(x *float32, n int) bool
// As finiteAVX512, a YMM register a stream; n is a multiple of 64.
TEXT ·finiteAVX2(SB), NOSPLIT, $0-17
	MOVQ   x+0(FP), SI
	MOVQ   n+8(FP), CX
	LEAQ   (SI)(CX*1), DI
	LEAQ   (DI)(CX*1), R8
	LEAQ   (R8)(CX*1), R9
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	SHRQ   $5, CX
	JZ     reduce

loop:
	PREFETCHT0  PFN(SI)
	PREFETCHT0  PFN(DI)
	PREFETCHT0  PFN(R8)
	PREFETCHT0  PFN(R9)
	VFMADD231PS (SI), Y4, Y0
	VFMADD231PS (DI), Y4, Y1
	VFMADD231PS (R8), Y4, Y2
	VFMADD231PS (R9), Y4, Y3
	ADDQ        $32, SI
	ADDQ        $32, DI
	ADDQ        $32, R8
	ADDQ        $32, R9
	DECQ        CX
	JNZ         loop

reduce:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VCMPPS $3, Y0, Y0, Y0
	VPTEST Y0, Y0
	SETEQ  ret+16(FP)
	VZEROUPPER
	RET

// func sortnetAVX512(tile *float32, pairs *uint32, n int)
// Runs n compare-exchanges on rows of 16 float32: for each pair (a, b) of
// byte offsets, row a ← min(row a, row b) and row b ← max, lane by lane.
TEXT ·sortnetAVX512(SB), NOSPLIT, $0-24
	MOVQ tile+0(FP), DI
	MOVQ pairs+8(FP), SI
	MOVQ n+16(FP), CX
	TESTQ CX, CX
	JZ   done

loop:
	MOVL    (SI), AX
	MOVL    4(SI), BX
	VMOVUPS (DI)(AX*1), Z0
	VMOVUPS (DI)(BX*1), Z1
	VMINPS  Z1, Z0, Z2
	VMAXPS  Z1, Z0, Z3
	VMOVUPS Z2, (DI)(AX*1)
	VMOVUPS Z3, (DI)(BX*1)
	ADDQ    $8, SI
	DECQ    CX
	JNZ     loop

done:
	VZEROUPPER
	RET

// func sortnetAVX2(tile *float32, pairs *uint32, n int)
// As sortnetAVX512, a row in two YMM registers.
TEXT ·sortnetAVX2(SB), NOSPLIT, $0-24
	MOVQ tile+0(FP), DI
	MOVQ pairs+8(FP), SI
	MOVQ n+16(FP), CX
	TESTQ CX, CX
	JZ   done

loop:
	MOVL    (SI), AX
	MOVL    4(SI), BX
	VMOVUPS (DI)(AX*1), Y0
	VMOVUPS 32(DI)(AX*1), Y1
	VMOVUPS (DI)(BX*1), Y2
	VMOVUPS 32(DI)(BX*1), Y3
	VMINPS  Y2, Y0, Y4
	VMINPS  Y3, Y1, Y5
	VMAXPS  Y2, Y0, Y6
	VMAXPS  Y3, Y1, Y7
	VMOVUPS Y4, (DI)(AX*1)
	VMOVUPS Y5, 32(DI)(AX*1)
	VMOVUPS Y6, (DI)(BX*1)
	VMOVUPS Y7, 32(DI)(BX*1)
	ADDQ    $8, SI
	DECQ    CX
	JNZ     loop

done:
	VZEROUPPER
	RET
