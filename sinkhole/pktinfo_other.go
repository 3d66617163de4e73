//go:build !linux

package sinkhole

import (
	"net"
	"net/netip"
)

// Elsewhere a wildcard socket records its own address as the server's.
func enablePktinfo(*net.UDPConn) (ok, v6 bool) { return false, false }

func parsePktinfo([]byte) (netip.Addr, bool) { return netip.Addr{}, false }

func appendPktinfo(dst []byte, _ netip.Addr, _ bool) []byte { return dst }
