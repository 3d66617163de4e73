package sinkhole

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenTransparent binds a UDP socket that an nftables tproxy rule can
// steer datagrams for other hosts to (IP_TRANSPARENT), and that reports
// each datagram's original destination (IP_RECVORIGDSTADDR). Setting
// IP_TRANSPARENT needs CAP_NET_ADMIN or CAP_NET_RAW.
func listenTransparent(network, addr string) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = transparent(int(fd), network == "udp6", true)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), network, addr)
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// transparent sets the options of a socket that may bind and send from
// addresses of other hosts and, for a listener, learns where each
// datagram was going.
func transparent(fd int, v6, listener bool) error {
	set := func(level, opt int, name string) error {
		if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
			if errors.Is(err, unix.EPERM) {
				return fmt.Errorf("%s: %w (needs CAP_NET_ADMIN or CAP_NET_RAW)", name, err)
			}
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	if v6 {
		if err := set(unix.SOL_IPV6, unix.IPV6_TRANSPARENT, "IPV6_TRANSPARENT"); err != nil {
			return err
		}
		if listener {
			return set(unix.SOL_IPV6, unix.IPV6_RECVORIGDSTADDR, "IPV6_RECVORIGDSTADDR")
		}
		return nil
	}
	if err := set(unix.SOL_IP, unix.IP_TRANSPARENT, "IP_TRANSPARENT"); err != nil {
		return err
	}
	if listener {
		return set(unix.SOL_IP, unix.IP_RECVORIGDSTADDR, "IP_RECVORIGDSTADDR")
	}
	return nil
}

// parseOrigDst finds the original destination (address and port) in a
// datagram's control messages: a struct sockaddr_in or sockaddr_in6.
func parseOrigDst(oob []byte) (netip.AddrPort, bool) {
	for len(oob) >= unix.SizeofCmsghdr {
		h := cmsgHeader(oob)
		if h.len < unix.SizeofCmsghdr || h.len > len(oob) {
			return netip.AddrPort{}, false
		}
		data := oob[unix.CmsgLen(0):h.len]
		switch {
		case h.level == unix.SOL_IP && h.typ == unix.IP_ORIGDSTADDR && len(data) >= unix.SizeofSockaddrInet4:
			// sa_family, then the port in network order, then the address.
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte(data[4:8])), binary.BigEndian.Uint16(data[2:4])), true
		case h.level == unix.SOL_IPV6 && h.typ == unix.IPV6_ORIGDSTADDR && len(data) >= unix.SizeofSockaddrInet6:
			// sa_family, port, flowinfo, then the address.
			return netip.AddrPortFrom(netip.AddrFrom16([16]byte(data[8:24])).Unmap(), binary.BigEndian.Uint16(data[2:4])), true
		}
		next := unix.CmsgSpace(h.len - unix.CmsgLen(0))
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return netip.AddrPort{}, false
}

// sender sends the datagrams whose source is another host's address, each
// from a socket of its own: bound with IP_TRANSPARENT to that address and
// port, used once and closed. One goroutine does it all, so at most one
// such socket is open at a time, whatever the load; the queue in front of
// it is bounded, and a full queue drops (counted).
//
// Creating those sockets needs CAP_NET_ADMIN or CAP_NET_RAW (and
// CAP_NET_BIND_SERVICE to bind port 69). When serve starts as root and
// drops to --user, every thread loses its capabilities, so the sender's
// goroutine runs on an OS thread of its own that asked to keep them
// (PR_SET_KEEPCAPS): after the switch it holds only those three, nothing
// else of root's. The Go runtime starts new threads from a template
// thread, never from a locked one, so no other goroutine inherits them.
type sender struct {
	jobs   chan *sendJob
	free   sync.Pool
	c      *interceptCounters
	settle func()
	once   sync.Once
	done   chan struct{}
}

// keptCaps are the capabilities the sender's thread keeps.
const keptCaps = 1<<unix.CAP_NET_ADMIN | 1<<unix.CAP_NET_RAW | 1<<unix.CAP_NET_BIND_SERVICE

func newSender(queue int, c *interceptCounters) (*sender, error) {
	s := &sender{jobs: make(chan *sendJob, queue), c: c, done: make(chan struct{})}
	s.free.New = func() any { return new(sendJob) }
	ready := make(chan error, 1)
	settled := make(chan struct{}, 1)
	s.settle = func() {
		// Ask the sender's own thread to shed capabilities, and wait.
		select {
		case s.jobs <- nil:
			<-settled
		case <-s.done:
		}
	}
	go func() {
		// Never unlocked: the thread ends with the goroutine, taking its
		// capabilities with it.
		runtime.LockOSThread()
		defer close(s.done)
		ready <- unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0)
		for j := range s.jobs {
			if j == nil {
				if err := shedCaps(); err != nil {
					s.c.sendErrors.Add(1)
				}
				settled <- struct{}{}
				continue
			}
			if err := sendFrom(j); err != nil {
				s.c.sendErrors.Add(1)
			} else if j.refusal {
				s.c.replies.Add(1)
			} else {
				s.c.forwarded.Add(1)
			}
			s.free.Put(j)
		}
	}()
	if err := <-ready; err != nil {
		close(s.jobs)
		return nil, fmt.Errorf("keep capabilities: %w", err)
	}
	return s, nil
}

// queue hands j (copied) to the sender, or reports that its queue is full.
func (s *sender) queue(j *sendJob) bool {
	q := s.free.Get().(*sendJob)
	q.from, q.to, q.anyPort, q.refusal, q.n = j.from, j.to, j.anyPort, j.refusal, j.n
	copy(q.buf[:j.n], j.buf[:j.n])
	select {
	case s.jobs <- q:
		return true
	default:
		s.free.Put(q)
		return false
	}
}

// stop lets the sender finish its queue and end.
func (s *sender) stop() {
	s.once.Do(func() { close(s.jobs) })
	<-s.done
}

// shedCaps runs on the sender's thread once privileges are dropped: a
// thread that kept root's capabilities through setuid has them permitted
// but not effective; it makes the kept ones effective and drops the rest.
// Still root (no --user), there is nothing to do.
func shedCaps() error {
	if unix.Geteuid() == 0 {
		return nil
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	keep := data[0].Permitted & keptCaps
	if data[0].Effective == keep && data[0].Permitted == keep && data[1].Permitted == 0 {
		return nil
	}
	data[0] = unix.CapUserData{Effective: keep, Permitted: keep}
	data[1] = unix.CapUserData{}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}

// sendFrom sends j's datagram from j.from, an address of another host,
// through a transparent socket made for it.
func sendFrom(j *sendJob) error {
	v6 := j.from.Addr().Is6()
	dom := unix.AF_INET
	if v6 {
		dom = unix.AF_INET6
	}
	fd, err := unix.Socket(dom, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := transparent(fd, v6, false); err != nil {
		return err
	}
	if v6 {
		_ = unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_V6ONLY, 1)
	}
	// Another socket may hold the port on this host's wildcard address
	// (wormsink's own --tftp-listen :69): a refusal then leaves from a new
	// port of the server's address, as RFC 1350 servers answer anyway.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	err = unix.Bind(fd, sockaddr(j.from))
	if errors.Is(err, unix.EADDRINUSE) && j.anyPort {
		err = unix.Bind(fd, sockaddr(netip.AddrPortFrom(j.from.Addr(), 0)))
	}
	if err != nil {
		return fmt.Errorf("bind %s: %w", j.from, err)
	}
	if err := unix.Sendto(fd, j.buf[:j.n], 0, sockaddr(j.to)); err != nil {
		return fmt.Errorf("send %s -> %s: %w", j.from, j.to, err)
	}
	return nil
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if a := ap.Addr(); a.Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}
