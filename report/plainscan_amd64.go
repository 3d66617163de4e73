package report

import "golang.org/x/sys/cpu"

// blockMasksAVX2 is blockMasksGo in AVX2, 64 bytes a step.
//
//go:noescape
func blockMasksAVX2(p *byte, blocks int, quotes *uint64) (bad uint64)

// blockMasks is blockMasksGo, in AVX2 where the CPU has it: the pass over
// every byte of the line is most of scanPlain's time in Go.
func blockMasks(b []byte, quotes []uint64) bool {
	if !cpu.X86.HasAVX2 {
		return blockMasksGo(b, quotes)
	}
	if len(b) < 64 || len(quotes) < len(b)/64 {
		return true // nothing marked: the line goes to scan
	}
	return blockMasksAVX2(&b[0], len(b)/64, &quotes[0]) != 0
}
