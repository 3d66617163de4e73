package pktinfo

import (
	"encoding/binary"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Space is the control-message buffer a read needs for the packet
// information of one datagram, IPv4 or IPv6.
var Space = unix.CmsgSpace(unix.SizeofInet6Pktinfo) + unix.CmsgSpace(unix.SizeofInet4Pktinfo)

// Enable asks the kernel for each datagram's destination address, so a
// socket bound to a wildcard address knows which of the host's addresses
// was asked and can answer from it (a client drops an answer from another
// address). Both options are set where the socket takes them: a dual-stack
// socket reports IPv4 datagrams either way. It reports whether one of
// them was set and whether the socket is AF_INET6.
func Enable(c *net.UDPConn) (ok, v6 bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return false, false
	}
	_ = rc.Control(func(fd uintptr) {
		dom, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		if err != nil {
			return
		}
		v6 = dom == unix.AF_INET6
		err4 := unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		var err6 error = unix.EAFNOSUPPORT
		if v6 {
			err6 = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		}
		ok = err4 == nil || err6 == nil
	})
	return ok, v6
}

// cmsg is one control message: its header and its data.
type cmsg struct {
	level, typ int
	data       []byte
}

// next reads the first control message of oob and returns the rest; ok is
// false at the end or on a malformed header.
func next(oob []byte) (m cmsg, rest []byte, ok bool) {
	if len(oob) < unix.SizeofCmsghdr {
		return cmsg{}, nil, false
	}
	var l uint64
	off := 4
	if unix.SizeofCmsghdr == 16 {
		l = binary.NativeEndian.Uint64(oob)
		off = 8
	} else {
		l = uint64(binary.NativeEndian.Uint32(oob))
	}
	if l < uint64(unix.SizeofCmsghdr) || l > uint64(len(oob)) {
		return cmsg{}, nil, false
	}
	m = cmsg{
		level: int(int32(binary.NativeEndian.Uint32(oob[off:]))),
		typ:   int(int32(binary.NativeEndian.Uint32(oob[off+4:]))),
		data:  oob[unix.CmsgLen(0):l],
	}
	if n := unix.CmsgSpace(int(l) - unix.CmsgLen(0)); n <= len(oob) {
		rest = oob[n:]
	}
	return m, rest, true
}

// info is the packet information of one datagram.
type info struct {
	dst     netip.Addr
	ifindex uint32
	v6      bool // it came as IPV6_PKTINFO
}

func find(oob []byte) (info, bool) {
	for {
		m, rest, ok := next(oob)
		if !ok {
			return info{}, false
		}
		switch {
		case m.level == unix.IPPROTO_IP && m.typ == unix.IP_PKTINFO && len(m.data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }: addr is the header's destination.
			return info{dst: netip.AddrFrom4([4]byte(m.data[8:12])), ifindex: binary.NativeEndian.Uint32(m.data)}, true
		case m.level == unix.IPPROTO_IPV6 && m.typ == unix.IPV6_PKTINFO && len(m.data) >= unix.SizeofInet6Pktinfo:
			// struct in6_pktinfo { in6_addr addr; unsigned int ifindex; }
			return info{dst: netip.AddrFrom16([16]byte(m.data[0:16])), ifindex: binary.NativeEndian.Uint32(m.data[16:]), v6: true}, true
		}
		oob = rest
	}
}

// Dst is the address a datagram was sent to, from its control messages
// (IPv4-mapped addresses unmapped).
func Dst(oob []byte) (netip.Addr, bool) {
	in, ok := find(oob)
	return in.dst.Unmap(), ok
}

// Append appends the control message that makes a reply leave from local,
// the address the request was sent to: IPV6_PKTINFO on an AF_INET6 socket
// (v6), IP_PKTINFO on an AF_INET one.
func Append(dst []byte, local netip.Addr, v6 bool) []byte {
	if !local.IsValid() || local.IsUnspecified() {
		return dst
	}
	if v6 {
		return appendV6(dst, local, 0)
	}
	if !local.Is4() {
		return dst
	}
	return appendV4(dst, local)
}

// Reply appends the control message that sends the answer to a datagram
// from the address (and, for IPv6, the interface) it was sent to, of the
// kind it came with.
func Reply(dst, oob []byte) []byte {
	in, ok := find(oob)
	if !ok {
		return dst
	}
	if in.v6 {
		return appendV6(dst, in.dst, in.ifindex)
	}
	return appendV4(dst, in.dst)
}

func appendV4(dst []byte, local netip.Addr) []byte {
	var data [unix.SizeofInet4Pktinfo]byte
	a := local.As4()
	copy(data[4:8], a[:]) // spec_dst
	return AppendCmsg(dst, unix.IPPROTO_IP, unix.IP_PKTINFO, data[:])
}

func appendV6(dst []byte, local netip.Addr, ifindex uint32) []byte {
	var data [unix.SizeofInet6Pktinfo]byte
	a := local.As16()
	copy(data[:16], a[:])
	binary.NativeEndian.PutUint32(data[16:], ifindex)
	return AppendCmsg(dst, unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, data[:])
}

// AppendCmsg appends one control message.
func AppendCmsg(dst []byte, level, typ int, data []byte) []byte {
	start := len(dst)
	for range unix.CmsgSpace(len(data)) {
		dst = append(dst, 0)
	}
	b := dst[start:]
	l := unix.CmsgLen(len(data))
	off := 4
	if unix.SizeofCmsghdr == 16 {
		binary.NativeEndian.PutUint64(b, uint64(l))
		off = 8
	} else {
		binary.NativeEndian.PutUint32(b, uint32(l))
	}
	binary.NativeEndian.PutUint32(b[off:], uint32(level))
	binary.NativeEndian.PutUint32(b[off+4:], uint32(typ))
	copy(b[unix.CmsgLen(0):], data)
	return dst
}

// OrigDst is the original destination (address and port) of a datagram
// a tproxy rule steered, from its control messages (IP_RECVORIGDSTADDR):
// a struct sockaddr_in or sockaddr_in6.
func OrigDst(oob []byte) (netip.AddrPort, bool) {
	for {
		m, rest, ok := next(oob)
		if !ok {
			return netip.AddrPort{}, false
		}
		switch {
		case m.level == unix.SOL_IP && m.typ == unix.IP_ORIGDSTADDR && len(m.data) >= unix.SizeofSockaddrInet4:
			// sa_family, then the port in network order, then the address.
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte(m.data[4:8])), binary.BigEndian.Uint16(m.data[2:4])), true
		case m.level == unix.SOL_IPV6 && m.typ == unix.IPV6_ORIGDSTADDR && len(m.data) >= unix.SizeofSockaddrInet6:
			// sa_family, port, flowinfo, then the address.
			return netip.AddrPortFrom(netip.AddrFrom16([16]byte(m.data[8:24])).Unmap(), binary.BigEndian.Uint16(m.data[2:4])), true
		}
		oob = rest
	}
}
