//go:build !linux

package pktinfo

import (
	"net"
	"net/netip"
)

// Space is 0: elsewhere a wildcard socket answers from the address the
// kernel picks.
var Space = 0

func Enable(*net.UDPConn) (ok, v6 bool) { return false, false }

func Dst([]byte) (netip.Addr, bool) { return netip.Addr{}, false }

func Append(dst []byte, _ netip.Addr, _ bool) []byte { return dst }

func Reply(dst, _ []byte) []byte { return dst }

func OrigDst([]byte) (netip.AddrPort, bool) { return netip.AddrPort{}, false }
