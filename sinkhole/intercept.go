package sinkhole

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/rs/zerolog"

	"wormsink/evidence"
	"wormsink/signatures"
)

// Policy is what the interceptor does with a request for a file no
// signature names.
type Policy uint8

const (
	// PolicyPass passes it on, unchanged, to the server it was sent to.
	PolicyPass Policy = iota
	// PolicyRefuse refuses it like a worm file: for networks whose
	// customers never use TFTP.
	PolicyRefuse
)

func (p Policy) String() string {
	if p == PolicyRefuse {
		return "refuse"
	}
	return "pass"
}

// ParsePolicy reads "pass" or "refuse".
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "pass":
		return PolicyPass, nil
	case "refuse":
		return PolicyRefuse, nil
	}
	return 0, fmt.Errorf("unknown policy %q (want pass or refuse)", s)
}

// InterceptStats counts what an Interceptor did. Every field only grows.
type InterceptStats struct {
	Received  uint64 // datagrams read from the transparent sockets
	Refused   uint64 // requests refused: a signature's file, or any file under PolicyRefuse
	Passed    uint64 // requests passed on to the server they were sent to
	Malformed uint64 // datagrams that are no TFTP request: dropped
	Stray     uint64 // TFTP packets other than requests (the ACK tftp-hpa sends after an ERROR): dropped
	Direct    uint64 // datagrams sent to the interceptor's own port rather than steered to it: dropped

	SourceLimited uint64 // requests over the per-source rate: recorded, dropped
	TotalLimited  uint64 // requests over the overall rate: recorded, dropped
	Busy          uint64 // requests dropped because the sender's queue was full

	Replies    uint64 // ERROR replies sent from the address asked
	Forwarded  uint64 // requests re-sent from the client's address
	SendErrors uint64 // replies or forwards the kernel refused (a bind or a send failed)
	Panics     uint64
	Errors     uint64 // socket read errors
}

type interceptCounters struct {
	received, refused, passed, malformed, stray, direct atomic.Uint64
	sourceLimited, totalLimited, busy                   atomic.Uint64
	replies, forwarded, sendErrors, panics, errors      atomic.Uint64
}

// Interceptor is the transparent TFTP interceptor: an nftables tproxy rule
// steers customer UDP/69 to its sockets, which learn each datagram's
// original destination. A request for a worm file is refused with the
// sinkhole's ERROR, sent from the address and port the client asked, so
// the client sees the server it asked refuse; never a byte of the file,
// never an option acknowledgement. Any other request is re-sent unchanged
// from the client's own address and port to the server it was sent to, so
// the server answers the client directly from its new port (TFTP's
// transfer ID) and the rest of the transfer never passes wormsink.
//
// Both cases go through the same per-source and overall rate limits as
// the fake server: interception can never be used to reflect or amplify,
// since what leaves is at most one datagram per request, no larger than
// the request, to where the request was going or back to its sender.
type Interceptor struct {
	cfg    Config
	policy Policy
	sigs   SetSource
	rec    Recorder
	log    zerolog.Logger

	conns []*net.UDPConn
	local []netip.AddrPort
	tx    *sender

	start   time.Time
	mu      sync.Mutex // the read loops (one per address family) share the limits
	sources *sourceTable
	perSrc  gcra
	total   gcra
	totTAT  int64

	c interceptCounters

	closing atomic.Bool
}

// NewInterceptor makes an Interceptor; Listen binds it.
func NewInterceptor(cfg Config, policy Policy, sigs SetSource, rec Recorder, log zerolog.Logger) *Interceptor {
	cfg = cfg.withDefaults()
	return &Interceptor{
		cfg: cfg, policy: policy, sigs: sigs, rec: rec, log: log,
		start:   time.Now(),
		sources: newSourceTable(cfg.Sources),
		perSrc:  newGCRA(cfg.SourceRate, cfg.SourceBurst),
		total:   newGCRA(cfg.TotalRate, cfg.TotalBurst),
	}
}

// Listen binds the transparent sockets: one for IPv4 and one for IPv6
// when addr has no host (":6969"), else one for the address given. It
// needs CAP_NET_ADMIN or CAP_NET_RAW (for IP_TRANSPARENT), so serve calls
// it before dropping privileges; it also starts the sender, which keeps
// those capabilities on a thread of its own for the reply sockets (see
// sender).
func (in *Interceptor) Listen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("sinkhole: intercept %s: %w", addr, err)
	}
	var binds []string
	switch host {
	case "":
		binds = []string{"udp4|0.0.0.0", "udp6|::"}
	default:
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return fmt.Errorf("sinkhole: intercept %s: want an IP address: %w", addr, err)
		}
		if ip.Unmap().Is4() {
			binds = []string{"udp4|" + ip.Unmap().String()}
		} else {
			binds = []string{"udp6|" + ip.String()}
		}
	}
	for _, b := range binds {
		network, ip, _ := cut(b, '|')
		c, err := listenTransparent(network, net.JoinHostPort(ip, port))
		if err != nil {
			in.closeConns()
			return fmt.Errorf("sinkhole: intercept %s: %w", addr, err)
		}
		if in.cfg.ReadBuffer > 0 {
			_ = c.SetReadBuffer(in.cfg.ReadBuffer)
		}
		in.conns = append(in.conns, c)
		ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
		in.local = append(in.local, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	tx, err := newSender(senderQueue, &in.c)
	if err != nil {
		in.closeConns()
		return fmt.Errorf("sinkhole: intercept %s: %w", addr, err)
	}
	in.tx = tx
	return nil
}

func cut(s string, sep byte) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// Addrs returns the bound addresses.
func (in *Interceptor) Addrs() []netip.AddrPort { return in.local }

func (in *Interceptor) closeConns() {
	for _, c := range in.conns {
		c.Close()
	}
}

// Close releases what Listen bound, for a start that failed before Serve.
func (in *Interceptor) Close() {
	in.closeConns()
	if in.tx != nil {
		in.tx.stop()
	}
}

// senderQueue bounds the replies and forwards waiting for the sender.
const senderQueue = 1024

// Serve reads until ctx ends, then closes the sockets and returns nil.
func (in *Interceptor) Serve(ctx context.Context) error {
	if len(in.conns) == 0 {
		return errors.New("sinkhole: intercept: Serve before Listen")
	}
	// Privileges are dropped by now: shed every capability the reply
	// sockets do not need.
	in.tx.settle()
	var wg sync.WaitGroup
	errc := make(chan error, len(in.conns))
	for _, c := range in.conns {
		wg.Add(1)
		go func(c *net.UDPConn) {
			defer wg.Done()
			if err := in.readLoop(c); err != nil {
				errc <- err
			}
		}(c)
	}
	addrs := make([]string, len(in.local))
	for i, a := range in.local {
		addrs[i] = a.String()
	}
	in.log.Info().Str("event", "tftp_intercept_start").Strs("listen", addrs).Str("policy", in.policy.String()).
		Float64("source_rate", in.cfg.SourceRate).Float64("total_rate", in.cfg.TotalRate).Msg("tftp interceptor serving")
	if in.cfg.NotifyStarted != nil {
		in.cfg.NotifyStarted(in.conns[0].LocalAddr())
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	in.closing.Store(true)
	in.closeConns()
	wg.Wait()
	in.tx.stop()
	st := in.Stats()
	in.log.Info().Str("event", "tftp_intercept_stop").Uint64("received", st.Received).Uint64("refused", st.Refused).
		Uint64("passed", st.Passed).Uint64("limited", st.SourceLimited+st.TotalLimited+st.Busy).Msg("tftp interceptor stopped")
	return err
}

// Stats returns the counters.
func (in *Interceptor) Stats() InterceptStats {
	c := &in.c
	return InterceptStats{
		Received: c.received.Load(), Refused: c.refused.Load(), Passed: c.passed.Load(),
		Malformed: c.malformed.Load(), Stray: c.stray.Load(), Direct: c.direct.Load(),
		SourceLimited: c.sourceLimited.Load(), TotalLimited: c.totalLimited.Load(), Busy: c.busy.Load(),
		Replies: c.replies.Load(), Forwarded: c.forwarded.Load(), SendErrors: c.sendErrors.Load(),
		Panics: c.panics.Load(), Errors: c.errors.Load(),
	}
}

func (in *Interceptor) readLoop(c *net.UDPConn) error {
	var buf [MaxRequest + 1]byte
	var oob [128]byte
	port := c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	for {
		n, oobn, _, from, err := c.ReadMsgUDPAddrPort(buf[:], oob[:])
		if err != nil {
			if in.closing.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			in.c.errors.Add(1)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			continue
		}
		to, ok := parseOrigDst(oob[:oobn])
		if !ok || to.Port() == port {
			// Sent to the interceptor itself, not steered to it by the
			// tproxy rule: passing it on would send it back here.
			in.c.received.Add(1)
			in.c.direct.Add(1)
			continue
		}
		in.handle(buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), to, time.Since(in.start).Nanoseconds())
	}
}

// handle decides one datagram from client, sent to to: it records the
// request, applies the limits and queues the refusal or the forward.
func (in *Interceptor) handle(p []byte, client, to netip.AddrPort, now int64) {
	defer in.recover()
	c := &in.c
	c.received.Add(1)
	req, err := ParseRequest(p)
	if err != nil {
		if isTFTPReply(p) {
			c.stray.Add(1)
		} else {
			c.malformed.Add(1)
		}
		return
	}
	ev := evidence.Event{
		Kind:        evidence.TFTPRequest,
		Host:        client.Addr(),
		Port:        client.Port(),
		Evidence:    signatures.Weak,
		File:        string(req.File),
		Mode:        string(req.Mode),
		Op:          req.OpName(),
		Srv:         to,
		Intercepted: true,
	}
	refuse := in.policy == PolicyRefuse
	if set := in.sigs.Current(); set != nil {
		ev.Serial = set.Serial()
		if m, ok := set.MatchFile(unsafe.String(unsafe.SliceData(req.File), len(req.File))); ok {
			ev.Kind, ev.Sig, ev.Family, ev.Evidence = evidence.TFTPRefused, m.Signature.ID, m.Signature.Family, signatures.Strong
			refuse = true
		}
	}

	allowed := in.allow(client.Addr(), now)
	if allowed {
		j := sendJob{}
		if refuse {
			out, fits := fitReply(append(j.buf[:0], refusalPacket...), len(p))
			j.n, j.from, j.to, j.anyPort, j.refusal = len(out), to, client, true, true
			if !fits {
				allowed = false // a request can never be shorter than 5 bytes; belt and braces
			}
		} else {
			j.n, j.from, j.to = copy(j.buf[:], p), client, to
		}
		if allowed && !in.tx.queue(&j) {
			c.busy.Add(1)
			allowed = false
		}
	}
	switch {
	case refuse:
		c.refused.Add(1)
	case allowed:
		c.passed.Add(1)
		ev.Passed = true
	}
	if ev.Kind == evidence.TFTPRefused {
		// Both ends, as the packet matcher records them: the client asked
		// for a worm, and the host it asked is the infector serving it.
		ev.Role, ev.Peer = evidence.RoleRequester, to.Addr()
		in.rec.Record(ev)
		ev.Host, ev.Port, ev.Role, ev.Peer = to.Addr(), to.Port(), evidence.RoleServer, client.Addr()
	}
	in.rec.Record(ev)
}

// allow applies the per-source and overall limits.
func (in *Interceptor) allow(src netip.Addr, now int64) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.perSrc.allow(in.sources.bucket(src), now) {
		in.c.sourceLimited.Add(1)
		return false
	}
	if !in.total.allow(&in.totTAT, now) {
		in.c.totalLimited.Add(1)
		return false
	}
	return true
}

func (in *Interceptor) recover() {
	if r := recover(); r != nil {
		n := in.c.panics.Add(1)
		if n&(n-1) == 0 {
			in.log.Error().Str("event", "tftp_panic").Uint64("panics", n).Str("panic", fmt.Sprint(r)).Msg("recovered from a panic")
		}
	}
}

// refusalPacket is the ERROR the fake server sends (pin/tftp's rendering of a
// handler error: code 1, the fixed text), so a client sees the same
// refusal from both.
var refusalPacket = []byte("\x00\x05\x00\x01" + RefusalText + "\x00")

// sendJob is one datagram to send from an address that is not the host's
// own: a refusal from the server's, or a forward from the client's.
type sendJob struct {
	from, to netip.AddrPort
	anyPort  bool // when from's port is taken, any port of from's address will do (a refusal: TFTP servers answer from a new port anyway)
	refusal  bool
	n        int
	buf      [MaxRequest]byte
}
