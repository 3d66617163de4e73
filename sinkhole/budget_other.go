//go:build !linux

package sinkhole

func fdLimit() (int, bool) { return 0, false }

func ephemeralRange() (lo, hi int, ok bool) { return 0, 0, false }
