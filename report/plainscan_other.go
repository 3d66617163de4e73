//go:build !amd64

package report

func blockMasks(b []byte, quotes []uint64) bool { return blockMasksGo(b, quotes) }
