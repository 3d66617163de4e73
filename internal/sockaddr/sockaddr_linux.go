// Package sockaddr reads the peer addresses recvmmsg writes, for the DNS
// shim's and the RADIUS socket's batched readers.
package sockaddr

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// AddrPort reads the address and port of sa, of which the kernel wrote n
// bytes: an IPv4 address from an AF_INET socket, an IPv6 one (IPv4-mapped
// from a dual-stack socket) from AF_INET6. It reports false for another
// family or a short address. The IPv6 scope is left out: callers that
// answer link-local peers read sa.Scope_id themselves.
func AddrPort(sa *unix.RawSockaddrInet6, n uint32) (netip.AddrPort, bool) {
	raw := (*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(sa))
	port := binary.BigEndian.Uint16(raw[2:])
	switch sa.Family {
	case unix.AF_INET:
		if n < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(raw[4:8])), port), true
	case unix.AF_INET6:
		if n < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port), true
	}
	return netip.AddrPort{}, false
}
