package sinkhole

import (
	"encoding/binary"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// enablePktinfo asks the kernel for each datagram's destination address,
// so a socket bound to a wildcard address knows which of the host's
// addresses a worm asked. It reports whether that worked and whether the
// socket is AF_INET6.
func enablePktinfo(c *net.UDPConn) (ok, v6 bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return false, false
	}
	_ = rc.Control(func(fd uintptr) {
		dom, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		if err != nil {
			return
		}
		if dom == unix.AF_INET6 {
			v6 = true
			ok = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1) == nil
			return
		}
		ok = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1) == nil
	})
	return ok, v6
}

// parsePktinfo finds the destination address in a datagram's control
// messages without allocating.
func parsePktinfo(oob []byte) (netip.Addr, bool) {
	for len(oob) >= unix.SizeofCmsghdr {
		h := cmsgHeader(oob)
		if h.len < unix.SizeofCmsghdr || h.len > len(oob) {
			return netip.Addr{}, false
		}
		data := oob[unix.CmsgLen(0):h.len]
		switch {
		case h.level == unix.IPPROTO_IP && h.typ == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }: addr is the header's destination.
			return netip.AddrFrom4([4]byte(data[8:12])), true
		case h.level == unix.IPPROTO_IPV6 && h.typ == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			return netip.AddrFrom16([16]byte(data[0:16])).Unmap(), true
		}
		next := unix.CmsgSpace(h.len - unix.CmsgLen(0))
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return netip.Addr{}, false
}

type cmsg struct {
	len, level, typ int
}

// cmsgHeader decodes struct cmsghdr { size_t len; int level; int type; }.
func cmsgHeader(b []byte) cmsg {
	var l uint64
	off := 4
	if unix.SizeofCmsghdr == 16 {
		l = binary.NativeEndian.Uint64(b)
		off = 8
	} else {
		l = uint64(binary.NativeEndian.Uint32(b))
	}
	return cmsg{
		len:   int(l),
		level: int(int32(binary.NativeEndian.Uint32(b[off:]))),
		typ:   int(int32(binary.NativeEndian.Uint32(b[off+4:]))),
	}
}

func putCmsgHeader(b []byte, l, level, typ int) {
	off := 4
	if unix.SizeofCmsghdr == 16 {
		binary.NativeEndian.PutUint64(b, uint64(l))
		off = 8
	} else {
		binary.NativeEndian.PutUint32(b, uint32(l))
	}
	binary.NativeEndian.PutUint32(b[off:], uint32(level))
	binary.NativeEndian.PutUint32(b[off+4:], uint32(typ))
}

// appendPktinfo appends the control message that makes a reply leave from
// local, the address the request was sent to.
func appendPktinfo(dst []byte, local netip.Addr, v6 bool) []byte {
	if !local.IsValid() || local.IsUnspecified() {
		return dst
	}
	if v6 {
		n := unix.CmsgSpace(unix.SizeofInet6Pktinfo)
		b := make([]byte, n) // small; stays on the caller's stack when it can
		putCmsgHeader(b, unix.CmsgLen(unix.SizeofInet6Pktinfo), unix.IPPROTO_IPV6, unix.IPV6_PKTINFO)
		a := local.As16()
		copy(b[unix.CmsgLen(0):], a[:])
		return append(dst, b...)
	}
	if !local.Is4() {
		return dst
	}
	n := unix.CmsgSpace(unix.SizeofInet4Pktinfo)
	b := make([]byte, n)
	putCmsgHeader(b, unix.CmsgLen(unix.SizeofInet4Pktinfo), unix.IPPROTO_IP, unix.IP_PKTINFO)
	a := local.As4()
	copy(b[unix.CmsgLen(0)+4:], a[:]) // spec_dst
	return append(dst, b...)
}
