package attribution

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"wormsink/internal/sockaddr"
)

// On Linux the RADIUS socket is one the Go runtime's poller does not
// watch. A socket in the poller (every net.UDPConn) wakes the process for
// each datagram that arrives, edge-triggered, even while nobody reads it:
// measured at 1.1–1.2 context switches and 1.2–1.5 epoll_pwait calls per
// request at 1,000 requests a second, however long the server waited
// between reads (0.5–0.65 and 0.1–0.17 with this socket). This one is read by a
// blocking recvmmsg: the process wakes when a read returns, not when a
// datagram arrives, so a read after the gathering pause takes everything
// that came meanwhile for one wake-up.

// radiusReadTimeout bounds a blocking read, so that a read in progress
// notices a Close even if the shutdown that should wake it did not.
const radiusReadTimeout = 250 * time.Millisecond

type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// rawUDP is a blocking UDP socket outside the poller, read and written in
// batches. One goroutine reads, another writes; Close may come from a
// third.
type rawUDP struct {
	mu     sync.RWMutex // held shared around each call on fd, exclusively to close it
	fd     int          // -1 once closed
	closed atomic.Bool
	v6     bool
	laddr  *net.UDPAddr

	in     []mmsghdr
	inIov  []unix.Iovec
	inName []unix.RawSockaddrInet6

	out     []mmsghdr
	outIov  []unix.Iovec
	outName []unix.RawSockaddrInet6
}

// listenRADIUS binds a UDP socket to listen as net.ListenPacket("udp")
// does: a wildcard address (":1813", "0.0.0.0:1813", "[::]:1813") is one
// dual-stack IPv6 socket where the host has IPv6, else IPv4.
func listenRADIUS(listen string) (radiusSocket, error) {
	ua, err := net.ResolveUDPAddr("udp", listen)
	if err != nil {
		return nil, err
	}
	ip := ua.IP
	wild := ip == nil || ip.IsUnspecified()
	var fd int
	v6 := false
	switch {
	case wild:
		if fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err == nil {
			v6 = true
			err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
		} else {
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		}
	case ip.To4() != nil:
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	default:
		v6 = true
		if fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err == nil {
			err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
		}
	}
	if err != nil {
		if fd > 0 {
			unix.Close(fd)
		}
		return nil, os.NewSyscallError("socket", err)
	}
	fail := func(op string, err error) (radiusSocket, error) {
		unix.Close(fd)
		return nil, &net.OpError{Op: "listen", Net: "udp", Addr: ua, Err: os.NewSyscallError(op, err)}
	}
	// Room for what arrives while the server gathers and commits (the
	// kernel caps it at net.core.rmem_max).
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	tv := unix.NsecToTimeval(int64(radiusReadTimeout))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fail("setsockopt", err)
	}
	var sa unix.Sockaddr
	if v6 {
		s := &unix.SockaddrInet6{Port: ua.Port}
		if !wild {
			copy(s.Addr[:], ip.To16())
			if ua.Zone != "" {
				ifi, err := net.InterfaceByName(ua.Zone)
				if err != nil {
					return fail("bind", err)
				}
				s.ZoneId = uint32(ifi.Index)
			}
		}
		sa = s
	} else {
		s := &unix.SockaddrInet4{Port: ua.Port}
		if !wild {
			copy(s.Addr[:], ip.To4())
		}
		sa = s
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	c := &rawUDP{fd: fd, v6: v6,
		in: make([]mmsghdr, radiusReadBatch), inIov: make([]unix.Iovec, radiusReadBatch), inName: make([]unix.RawSockaddrInet6, radiusReadBatch),
		out: make([]mmsghdr, radiusReadBatch), outIov: make([]unix.Iovec, radiusReadBatch), outName: make([]unix.RawSockaddrInet6, radiusReadBatch)}
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		c.laddr = &net.UDPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *unix.SockaddrInet6:
		c.laddr = &net.UDPAddr{IP: net.IP(a.Addr[:]), Port: a.Port, Zone: ua.Zone}
	}
	return c, nil
}

func (c *rawUDP) LocalAddr() net.Addr { return c.laddr }
func (c *rawUDP) gathers() bool       { return true }

// Close wakes a read in progress (shutdown makes it return) and closes
// the socket once no call is on it.
func (c *rawUDP) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.mu.RLock()
	if c.fd >= 0 {
		unix.Shutdown(c.fd, unix.SHUT_RDWR) // ENOTCONN for an unconnected socket, but it wakes readers
	}
	c.mu.RUnlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

var errRADIUSClosed = fmt.Errorf("radius socket: %w", net.ErrClosed)

// timeoutError is a read that found nothing within radiusReadTimeout.
type timeoutError struct{}

func (timeoutError) Error() string   { return "radius socket: read timed out" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// ReadBatch blocks until at least one datagram is there, then takes up to
// len(ms) of those waiting (MSG_WAITFORONE).
func (c *rawUDP) ReadBatch(ms []ipv4.Message, _ int) (int, error) {
	ms = ms[:min(len(ms), len(c.in))]
	for i := range ms {
		b := ms[i].Buffers[0]
		c.inIov[i] = unix.Iovec{Base: &b[0]}
		c.inIov[i].SetLen(len(b))
		c.in[i] = mmsghdr{hdr: unix.Msghdr{Name: (*byte)(unsafe.Pointer(&c.inName[i])), Namelen: unix.SizeofSockaddrInet6, Iov: &c.inIov[i], Iovlen: 1}}
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	for {
		if c.closed.Load() || c.fd < 0 {
			return 0, errRADIUSClosed
		}
		// Syscall, not RawSyscall: the call blocks, and the runtime must
		// know so that the thread's P goes on running goroutines.
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(c.fd), uintptr(unsafe.Pointer(&c.in[0])), uintptr(len(ms)), unix.MSG_WAITFORONE, 0, 0)
		switch {
		case e == unix.EINTR:
			continue
		case e == unix.EAGAIN:
			return 0, timeoutError{}
		case e != 0:
			return 0, &net.OpError{Op: "read", Net: "udp", Addr: c.laddr, Err: os.NewSyscallError("recvmmsg", e)}
		}
		if c.closed.Load() {
			return 0, errRADIUSClosed
		}
		got := 0
		for i := range int(n) {
			h := &c.in[i].hdr
			from, ok := sockaddr.AddrPort(&c.inName[i], h.Namelen)
			if sa := &c.inName[i]; ok && sa.Family == unix.AF_INET6 && sa.Scope_id != 0 {
				// A link-local NAS: its scope, as a number, so that the
				// answer goes back out the interface it came in on.
				from = netip.AddrPortFrom(from.Addr().WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10)), from.Port())
			}
			if !ok {
				continue // not from an IP peer
			}
			ms[got].N = int(c.in[i].n)
			if h.Flags&unix.MSG_TRUNC != 0 {
				// Longer than any RADIUS packet: empty, so that it is
				// counted and dropped as malformed.
				ms[got].N = 0
			}
			if got != i {
				ms[got].Buffers[0], ms[i].Buffers[0] = ms[i].Buffers[0], ms[got].Buffers[0]
			}
			ms[got].Addr = net.UDPAddrFromAddrPort(from)
			got++
		}
		if got > 0 {
			return got, nil
		}
	}
}

// WriteBatch sends ms in one sendmmsg without waiting (an answer that
// does not fit in the send buffer is dropped, and its NAS retransmits).
func (c *rawUDP) WriteBatch(ms []ipv4.Message, _ int) (int, error) {
	ms = ms[:min(len(ms), len(c.out))]
	for i := range ms {
		ua, ok := ms[i].Addr.(*net.UDPAddr)
		if !ok {
			return i, errors.New("radius socket: not a UDP address")
		}
		nl := c.putSockaddr(&c.outName[i], ua.AddrPort())
		b := ms[i].Buffers[0]
		c.outIov[i] = unix.Iovec{Base: &b[0]}
		c.outIov[i].SetLen(len(b))
		c.out[i] = mmsghdr{hdr: unix.Msghdr{Name: (*byte)(unsafe.Pointer(&c.outName[i])), Namelen: nl, Iov: &c.outIov[i], Iovlen: 1}}
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed.Load() || c.fd < 0 {
		return 0, errRADIUSClosed
	}
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(c.fd), uintptr(unsafe.Pointer(&c.out[0])), uintptr(len(ms)), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, &net.OpError{Op: "write", Net: "udp", Addr: c.laddr, Err: os.NewSyscallError("sendmmsg", e)}
		}
		return int(n), nil
	}
}

// putSockaddr writes a as the socket's family wants it (an IPv4 peer of a
// dual-stack socket as an IPv4-mapped IPv6 address) and returns its length.
func (c *rawUDP) putSockaddr(sa *unix.RawSockaddrInet6, a netip.AddrPort) uint32 {
	*sa = unix.RawSockaddrInet6{}
	raw := (*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(sa))
	binary.BigEndian.PutUint16(raw[2:4], a.Port())
	if !c.v6 {
		// A peer of an IPv4 socket is an IPv4 address.
		sa.Family = unix.AF_INET
		v4 := a.Addr().Unmap().As4()
		copy(raw[4:8], v4[:])
		return unix.SizeofSockaddrInet4
	}
	sa.Family = unix.AF_INET6
	sa.Addr = a.Addr().As16()
	if z := a.Addr().Zone(); z != "" {
		// The reader writes a link-local peer's scope as its number.
		if id, err := strconv.ParseUint(z, 10, 32); err == nil {
			sa.Scope_id = uint32(id)
		} else if ifi, err := net.InterfaceByName(z); err == nil {
			sa.Scope_id = uint32(ifi.Index)
		}
	}
	return unix.SizeofSockaddrInet6
}
