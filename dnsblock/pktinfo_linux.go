package dnsblock

import (
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A socket bound to a wildcard address must answer from the address the
// query was sent to, or the client drops the answer: the kernel tells the
// destination in IP_PKTINFO / IPV6_PKTINFO and takes it back on send.

var oobSize = unix.CmsgSpace(unix.SizeofInet6Pktinfo) + unix.CmsgSpace(unix.SizeofInet4Pktinfo)

func enablePktInfo(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var err4, err6 error
	cerr := rc.Control(func(fd uintptr) {
		err4 = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		err6 = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
	})
	if cerr != nil {
		return cerr
	}
	if err4 != nil && err6 != nil {
		return err4
	}
	return nil
}

// replyOOB turns the control messages of a received packet into the one
// that sends the answer from the address the query was sent to.
func replyOOB(dst, oob []byte) []byte {
	hdr := unix.CmsgLen(0)
	for len(oob) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			return dst
		}
		data := oob[hdr:l]
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			in := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			var out unix.Inet4Pktinfo
			out.Spec_dst = in.Addr
			return appendCmsg(dst, unix.IPPROTO_IP, unix.IP_PKTINFO, unsafe.Slice((*byte)(unsafe.Pointer(&out)), unix.SizeofInet4Pktinfo))
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			in := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
			out := unix.Inet6Pktinfo{Addr: in.Addr, Ifindex: in.Ifindex}
			return appendCmsg(dst, unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, unsafe.Slice((*byte)(unsafe.Pointer(&out)), unix.SizeofInet6Pktinfo))
		}
		sp := unix.CmsgSpace(l - hdr)
		if sp > len(oob) {
			return dst
		}
		oob = oob[sp:]
	}
	return dst
}

func appendCmsg(dst []byte, level, typ int32, data []byte) []byte {
	start := len(dst)
	space := unix.CmsgSpace(len(data))
	for range space {
		dst = append(dst, 0)
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&dst[start]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(dst[start+unix.CmsgLen(0):], data)
	return dst
}
