//go:build !purego

#include "textflag.h"

// func transposeAVX2(dst *float32, ldd int, src *float32, lds int, rows, cols int)
//
// dst[j·ldd + i] = src[i·lds + j] for i < rows, j < cols (strides in
// float32); rows and cols are multiples of 8. Each 8×8 block is loaded as
// eight YMM rows and transposed in registers: unpack pairs of rows,
// shuffle pairs of pairs, then exchange 128-bit halves.
TEXT ·transposeAVX2(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ ldd+8(FP), R8
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), R9
	MOVQ rows+32(FP), R10
	MOVQ cols+40(FP), R11
	SHLQ $2, R8                // bytes
	SHLQ $2, R9
	SHRQ $3, R10               // blocks of rows
	JZ   done
	SHRQ $3, R11               // blocks of columns
	JZ   done
	LEAQ (R9)(R9*2), R12       // 3·lds
	LEAQ (R8)(R8*2), R13       // 3·ldd

rowblock:
	MOVQ SI, AX                // src block
	MOVQ DI, BX                // dst block
	MOVQ R11, CX

colblock:
	LEAQ    (AX)(R9*4), DX
	VMOVUPS (AX), Y0
	VMOVUPS (AX)(R9*1), Y1
	VMOVUPS (AX)(R9*2), Y2
	VMOVUPS (AX)(R12*1), Y3
	VMOVUPS (DX), Y4
	VMOVUPS (DX)(R9*1), Y5
	VMOVUPS (DX)(R9*2), Y6
	VMOVUPS (DX)(R12*1), Y7

	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15

	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xEE, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xEE, Y11, Y9, Y3
	VSHUFPS $0x44, Y14, Y12, Y4
	VSHUFPS $0xEE, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xEE, Y15, Y13, Y7

	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x20, Y5, Y1, Y9
	VPERM2F128 $0x20, Y6, Y2, Y10
	VPERM2F128 $0x20, Y7, Y3, Y11
	VPERM2F128 $0x31, Y4, Y0, Y12
	VPERM2F128 $0x31, Y5, Y1, Y13
	VPERM2F128 $0x31, Y6, Y2, Y14
	VPERM2F128 $0x31, Y7, Y3, Y15

	LEAQ    (BX)(R8*4), DX
	VMOVUPS Y8, (BX)
	VMOVUPS Y9, (BX)(R8*1)
	VMOVUPS Y10, (BX)(R8*2)
	VMOVUPS Y11, (BX)(R13*1)
	VMOVUPS Y12, (DX)
	VMOVUPS Y13, (DX)(R8*1)
	VMOVUPS Y14, (DX)(R8*2)
	VMOVUPS Y15, (DX)(R13*1)

	ADDQ $32, AX               // next 8 columns of src
	LEAQ (BX)(R8*8), BX        // next 8 rows of dst
	DECQ CX
	JNZ  colblock

	LEAQ (SI)(R9*8), SI        // next 8 rows of src
	ADDQ $32, DI               // next 8 columns of dst
	DECQ R10
	JNZ  rowblock

done:
	VZEROUPPER
	RET
