//go:build !amd64

package report

import "unsafe"

func prefetch(p unsafe.Pointer) {}
