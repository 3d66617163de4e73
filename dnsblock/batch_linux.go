package dnsblock

import (
	"net"
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"wormsink/internal/sockaddr"
)

// On Linux the UDP readers move packets with recvmmsg and sendmmsg: the
// answer itself costs a fraction of a microsecond, the system calls around
// it several, so reading and writing up to batchSize packets per call is
// where the throughput is.
//
// Both calls go through RawSyscall6, not Syscall6: the socket is
// non-blocking (the netpoller parks the reader on EAGAIN), so the call
// never blocks and telling the scheduler about it buys nothing. Syscall6's
// entersyscall/exitsyscall was measured at about a fifth of the shim's CPU
// at 20,000 q/s on one core: each call woke the runtime's sysmon thread
// out of its idle sleep (a futex wake-up and two context switches) and
// kept it polling every 20 µs for Ps to retake. See docs/performance.md.

const (
	// batchSize is the vector of one recvmmsg or sendmmsg. At 80,000 q/s a
	// coalescing wait (500 µs) gathers about 40 queries: with 32 slots the
	// reader read twice per wake-up and sent twice; with 64 once, about 8 %
	// less CPU per query there (docs/performance.md). Each reader holds
	// batchSize × batchBufSize bytes for its input (256 KB).
	batchSize = 64
	// coalesceBelow is the batch below which a reader waits (Config.Coalesce)
	// before its next read. recvmmsg on a non-blocking socket returns fewer
	// than the vector holds only when it found the socket empty, so reading
	// again at once would find nothing (EAGAIN, a park in the netpoller and
	// a wake-up for the next single query); only a full vector says more is
	// waiting. With a quarter of the vector as the bound, reads of 8-31 at
	// 20,000 and 80,000 q/s were followed by an empty read and a park about
	// once per wake-up (perf stat, docs/performance.md).
	coalesceBelow = batchSize
	// A query longer than this is cut by the kernel (MSG_TRUNC) and
	// dropped; real queries are a few dozen bytes.
	batchBufSize = 4096
)

type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

type udpBatch struct {
	rc syscall.RawConn

	in     []mmsghdr
	inIov  []unix.Iovec
	inBuf  [][]byte
	inName []unix.RawSockaddrInet6
	inOOB  [][]byte
	nIn    int
	parked bool // the last read found the socket empty and waited in the netpoller

	out     []mmsghdr
	outIov  []unix.Iovec
	outBuf  [][]byte
	outName []unix.RawSockaddrInet6
	outOOB  [][]byte
	nOut    int
	sent    int
	errno   syscall.Errno
	readFn  func(uintptr) bool
	writeFn func(uintptr) bool
	sleep   unix.Timespec
}

func newUDPBatch(c *net.UDPConn) *udpBatch {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	b := &udpBatch{
		rc:      rc,
		in:      make([]mmsghdr, batchSize),
		inIov:   make([]unix.Iovec, batchSize),
		inBuf:   make([][]byte, batchSize),
		inName:  make([]unix.RawSockaddrInet6, batchSize),
		inOOB:   make([][]byte, batchSize),
		out:     make([]mmsghdr, batchSize),
		outIov:  make([]unix.Iovec, batchSize),
		outBuf:  make([][]byte, batchSize),
		outName: make([]unix.RawSockaddrInet6, batchSize),
		outOOB:  make([][]byte, batchSize),
	}
	for i := range batchSize {
		b.inBuf[i] = make([]byte, batchBufSize)
		b.inOOB[i] = make([]byte, max(oobSize, 1))
		b.outBuf[i] = make([]byte, 0, 512)
		b.outOOB[i] = make([]byte, 0, max(oobSize, 1))
	}
	b.readFn = b.recv
	b.writeFn = b.send
	return b
}

// read fills the input slots; it blocks (in the poller) until at least one
// packet is there.
func (b *udpBatch) read() (int, error) {
	for i := range b.in {
		b.inIov[i] = unix.Iovec{Base: &b.inBuf[i][0]}
		b.inIov[i].SetLen(batchBufSize)
		h := &b.in[i].hdr
		*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.inName[i])), Namelen: unix.SizeofSockaddrInet6, Iov: &b.inIov[i], Iovlen: 1}
		if oobSize > 0 {
			h.Control = &b.inOOB[i][0]
			h.SetControllen(oobSize)
		}
		b.in[i].n = 0
	}
	b.nIn, b.errno, b.parked = 0, 0, false
	if err := b.rc.Read(b.readFn); err != nil {
		return 0, err
	}
	if b.errno != 0 {
		return 0, b.errno
	}
	return b.nIn, nil
}

func (b *udpBatch) recv(fd uintptr) bool {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.in[0])), uintptr(len(b.in)), 0, 0, 0)
	if e == unix.EAGAIN {
		b.parked = true
		return false
	}
	if e != 0 {
		b.errno = e
		return true
	}
	b.nIn = int(n)
	return true
}

// packet returns input i: its bytes, its sender and its control messages.
func (b *udpBatch) packet(i int) (msg []byte, from netip.AddrPort, oob []byte, ok bool) {
	h := &b.in[i].hdr
	if h.Flags&unix.MSG_TRUNC != 0 {
		return nil, netip.AddrPort{}, nil, false
	}
	from, ok = sockaddr.AddrPort(&b.inName[i], h.Namelen)
	return b.inBuf[i][:b.in[i].n], from, b.inOOB[i][:h.Controllen], ok
}

// slot is the output buffer for the next answer: the handler writes into it.
func (b *udpBatch) slot() []byte { return b.outBuf[b.nOut][:0] }

// queue adds an answer (written into slot()) for the sender of input i.
func (b *udpBatch) queue(i int, resp []byte, reply []byte) {
	j := b.nOut
	b.outBuf[j] = resp
	b.outName[j] = b.inName[i]
	b.outOOB[j] = append(b.outOOB[j][:0], reply...)
	b.outIov[j] = unix.Iovec{Base: unsafe.SliceData(resp)}
	b.outIov[j].SetLen(len(resp))
	h := &b.out[j].hdr
	*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.outName[j])), Namelen: b.in[i].hdr.Namelen, Iov: &b.outIov[j], Iovlen: 1}
	if len(reply) > 0 {
		h.Control = &b.outOOB[j][0]
		h.SetControllen(len(reply))
	}
	b.nOut++
}

// flush sends the queued answers. A message the kernel refuses is skipped,
// the rest still go.
func (b *udpBatch) flush() {
	for b.sent = 0; b.sent < b.nOut; {
		b.errno = 0
		if err := b.rc.Write(b.writeFn); err != nil {
			break
		}
		if b.errno != 0 {
			b.sent++ // skip the message that failed
		}
	}
	b.nOut = 0
}

func (b *udpBatch) send(fd uintptr) bool {
	n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.out[b.sent])), uintptr(b.nOut-b.sent), 0, 0, 0)
	if e == unix.EAGAIN {
		return false
	}
	if e != 0 {
		b.errno = e
		return true
	}
	b.sent += int(n)
	return true
}

// wait sleeps for d on this thread, keeping its P. It is the coalescing
// wait between two reads: time.Sleep cannot do it, because with the P idle
// the runtime sleeps in epoll_pwait, whose timeout is in milliseconds, so
// a 100 µs time.Sleep took 1.1 ms on one CPU (measured). A plain nanosleep
// through RawSyscall costs one context switch each way and no netpoller or
// sysmon work (through the scheduler's system-call path the shim used
// twice the CPU per query at 20,000 q/s); the goroutines it holds up on
// this P wait at most d, which is at most MaxCoalesce.
//
// A signal ends the wait early, and the reader goes on: the signal is
// most likely the runtime asking this goroutine to stop (to stop the
// world for the garbage collector), which it can only do once it is out
// of the system call and at a preemption check. An earlier version slept
// again for what was left after EINTR: under -race on a loaded machine
// the preemption requests kept coming while the collector waited, the
// loop never left the system call, and the whole process stood still for
// seconds (a goroutine dump showed the reader in this loop with EINTR
// and the collector waiting in mark termination; docs/performance.md).
func (b *udpBatch) wait(d time.Duration) {
	b.sleep = unix.NsecToTimespec(int64(d))
	unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&b.sleep)), 0, 0)
}
