package sinkhole

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"wormsink/internal/pktinfo"
	"wormsink/internal/tftp"
)

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

// loop serves one transparent socket on an OS thread of its own. It reads
// with plain blocking recvmsg calls on that thread, and sends each refusal
// or forward from there too, through a socket made for it: bound with
// IP_TRANSPARENT to the other host's address and port, used once and
// closed. So at most one such socket per loop is ever open, whatever the
// load, and a refusal costs no hand-over between threads (which is most
// of its latency when the machine is busy).
//
// Creating those sockets needs CAP_NET_ADMIN or CAP_NET_RAW (and
// CAP_NET_BIND_SERVICE to bind port 69). When serve starts as root and
// drops to --user, every thread loses its capabilities; the loop's
// thread, started before the drop, asked to keep them (PR_SET_KEEPCAPS),
// and once serving it keeps only those three, nothing else of root's.
// The Go runtime starts new threads from a template thread, never from a
// locked one, so no other goroutine inherits them.
type loop struct {
	in    *Interceptor
	fd    int
	local netip.AddrPort
	start chan chan<- error // Serve hands the loop its error channel
	done  chan struct{}
	once  sync.Once
}

// readTimeout is how often a blocked read wakes to see whether the
// interceptor is closing.
const readTimeout = 100 * time.Millisecond

func (in *Interceptor) newLoop(addr netip.AddrPort) (*loop, error) {
	fd, local, err := listenTransparent(addr)
	if err != nil {
		return nil, err
	}
	lp := &loop{in: in, fd: fd, local: local, start: make(chan chan<- error, 1), done: make(chan struct{})}
	ready := make(chan error, 1)
	go lp.thread(ready)
	if err := <-ready; err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("keep capabilities: %w", err)
	}
	return lp, nil
}

func (lp *loop) thread(ready chan<- error) {
	// Never unlocked: the thread ends with the goroutine, taking its
	// capabilities with it.
	runtime.LockOSThread()
	defer close(lp.done)
	defer unix.Close(lp.fd)
	// Only a root start drops privileges later; started unprivileged
	// (systemd's AmbientCapabilities) there is nothing to keep.
	if unix.Geteuid() == 0 {
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
			ready <- err
			return
		}
	}
	ready <- nil
	errc, ok := <-lp.start
	if !ok {
		return // closed before serving
	}
	// Privileges are dropped by now: keep only what the reply sockets need.
	if err := shedCaps(); err != nil {
		errc <- fmt.Errorf("sinkhole: intercept %s: %w", lp.local, err)
		return
	}
	in := lp.in
	var buf [tftp.MaxRequest + 1]byte
	var oob [128]byte
	var j sendJob
	for !in.closing.Load() {
		n, oobn, _, from, err := unix.Recvmsg(lp.fd, buf[:], oob[:], 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			in.c.errors.Add(1)
			continue
		}
		client, ok := addrPortOf(from)
		if !ok {
			continue
		}
		to, ok := pktinfo.OrigDst(oob[:oobn])
		if !ok || to.Port() == lp.local.Port() && (lp.local.Addr().IsUnspecified() || to.Addr() == lp.local.Addr()) {
			// Sent to the interceptor itself, not steered to it by the
			// tproxy rule: passing it on would send it back here.
			in.c.received.Add(1)
			in.c.direct.Add(1)
			continue
		}
		in.handle(buf[:n], client, to, time.Since(in.start).Nanoseconds(), &j, sendFrom)
	}
}

// run starts serving; a failure goes to errc.
func (lp *loop) run(errc chan<- error) { lp.start <- errc }

// stop ends the loop (within readTimeout) and waits for it.
func (lp *loop) stop() {
	lp.once.Do(func() { close(lp.start) })
	<-lp.done
}

// listenTransparent binds a UDP socket that an nftables tproxy rule can
// steer datagrams for other hosts to (IP_TRANSPARENT), and that reports
// each datagram's original destination (IP_RECVORIGDSTADDR). Setting
// IP_TRANSPARENT needs CAP_NET_ADMIN or CAP_NET_RAW.
func listenTransparent(addr netip.AddrPort) (int, netip.AddrPort, error) {
	v6 := addr.Addr().Is6()
	dom := unix.AF_INET
	if v6 {
		dom = unix.AF_INET6
	}
	fd, err := unix.Socket(dom, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, netip.AddrPort{}, fmt.Errorf("socket: %w", err)
	}
	fail := func(err error) (int, netip.AddrPort, error) {
		unix.Close(fd)
		return -1, netip.AddrPort{}, err
	}
	if v6 {
		// The IPv4 socket takes IPv4; this one only IPv6.
		if err := unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fail(fmt.Errorf("IPV6_V6ONLY: %w", err))
		}
	}
	if err := transparent(fd, v6, true); err != nil {
		return fail(err)
	}
	tv := unix.NsecToTimeval(readTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fail(fmt.Errorf("SO_RCVTIMEO: %w", err))
	}
	// Best effort, as for the fake server: a burst waits in the kernel.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, DefaultReadBuffer)
	if err := unix.Bind(fd, sockaddr(addr)); err != nil {
		return fail(fmt.Errorf("bind %s: %w", addr, err))
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fail(fmt.Errorf("getsockname: %w", err))
	}
	local, _ := addrPortOf(sa)
	return fd, local, nil
}

func addrPortOf(sa unix.Sockaddr) (netip.AddrPort, bool) {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), true
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port)), true
	}
	return netip.AddrPort{}, false
}

// keptCaps are the capabilities a loop's thread keeps.
const keptCaps = 1<<unix.CAP_NET_ADMIN | 1<<unix.CAP_NET_RAW | 1<<unix.CAP_NET_BIND_SERVICE

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
		// A seccomp filter may refuse capget to a process started
		// unprivileged, which has nothing of root's to shed anyway.
		return nil
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
