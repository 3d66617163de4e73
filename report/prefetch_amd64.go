package report

import "unsafe"

// prefetch asks the CPU to bring the cache line at p into its caches
// without waiting for it: a load would hold the instructions after it
// until the line came.
//
//go:noescape
func prefetch(p unsafe.Pointer)
