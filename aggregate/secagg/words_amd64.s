//go:build !purego

#include "textflag.h"

// WORDS applies OP (VPADDD or VPSUBD) to dst[i] and src[i] for i < n, 32
// words (four YMM registers) per iteration; n is a multiple of 32. Labels
// are local to each function, so both expansions may use the same ones.
#define WORDS(OP) \
	MOVQ dst+0(FP), DI; \
	MOVQ src+8(FP), SI; \
	MOVQ n+16(FP), CX; \
	SHRQ $5, CX; \
	JZ   done; \
loop: \
	VMOVDQU (DI), Y0; \
	VMOVDQU 32(DI), Y1; \
	VMOVDQU 64(DI), Y2; \
	VMOVDQU 96(DI), Y3; \
	OP      (SI), Y0, Y0; \
	OP      32(SI), Y1, Y1; \
	OP      64(SI), Y2, Y2; \
	OP      96(SI), Y3, Y3; \
	VMOVDQU Y0, (DI); \
	VMOVDQU Y1, 32(DI); \
	VMOVDQU Y2, 64(DI); \
	VMOVDQU Y3, 96(DI); \
	ADDQ    $128, DI; \
	ADDQ    $128, SI; \
	DECQ    CX; \
	JNZ     loop; \
done: \
	VZEROUPPER; \
	RET

// func addWordsAVX2(dst, src *uint32, n int)
// dst[i] += src[i] for i < n; n is a multiple of 32.
TEXT ·addWordsAVX2(SB), NOSPLIT, $0-24
	WORDS(VPADDD)

// func subWordsAVX2(dst, src *uint32, n int)
// dst[i] -= src[i] for i < n; n is a multiple of 32.
TEXT ·subWordsAVX2(SB), NOSPLIT, $0-24
	WORDS(VPSUBD)
