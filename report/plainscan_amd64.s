#include "textflag.h"

// func blockMasksAVX2(p *byte, blocks int, quotes *uint64) (bad uint64)
//
// For each 64-byte block of p: quotes[k] gets a bit per byte, set for
// '"'; bad gets the bits of bytes that are a backslash, a control byte
// (below 0x20) or from 0x80 (non-ASCII), over all blocks.
TEXT ·blockMasksAVX2(SB), NOSPLIT, $0-32
	MOVQ p+0(FP), SI
	MOVQ blocks+8(FP), CX
	MOVQ quotes+16(FP), DI
	MOVQ $0x2222222222222222, AX
	MOVQ AX, X0
	VPBROADCASTQ X0, Y0
	MOVQ $0x5c5c5c5c5c5c5c5c, AX
	MOVQ AX, X1
	VPBROADCASTQ X1, Y1
	MOVQ $0x1f1f1f1f1f1f1f1f, AX
	MOVQ AX, X2
	VPBROADCASTQ X2, Y2
	XORQ R8, R8

loop:
	TESTQ CX, CX
	JZ   done
	VMOVDQU (SI), Y3
	VMOVDQU 32(SI), Y4

	// quotes
	VPCMPEQB  Y0, Y3, Y5
	VPCMPEQB  Y0, Y4, Y6
	VPMOVMSKB Y5, AX
	VPMOVMSKB Y6, BX
	SHLQ      $32, BX
	ORQ       BX, AX
	MOVQ      AX, (DI)

	// backslashes, control bytes (min(x, 0x1f) == x), non-ASCII (high bit)
	VPCMPEQB  Y1, Y3, Y5
	VPCMPEQB  Y1, Y4, Y6
	VPOR      Y5, Y6, Y7
	VPMINUB   Y2, Y3, Y5
	VPCMPEQB  Y5, Y3, Y5
	VPMINUB   Y2, Y4, Y6
	VPCMPEQB  Y6, Y4, Y6
	VPOR      Y5, Y7, Y7
	VPOR      Y6, Y7, Y7
	VPOR      Y3, Y4, Y8
	VPOR      Y8, Y7, Y7
	VPMOVMSKB Y7, AX
	ORQ       AX, R8

	ADDQ $64, SI
	ADDQ $8, DI
	DECQ CX
	JMP  loop

done:
	VZEROUPPER
	MOVQ R8, bad+24(FP)
	RET
