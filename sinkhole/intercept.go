package sinkhole

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"wormsink/evidence"
	"wormsink/internal/lifecycle"
	"wormsink/internal/tftp"
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

	Replies    uint64 // ERROR replies sent from the address asked
	Truncated  uint64 // replies cut to the size of their request
	Forwarded  uint64 // requests re-sent from the client's address
	SendErrors uint64 // replies or forwards the kernel refused (a bind or a send failed)
	Panics     uint64
	Errors     uint64 // socket read errors
}

type interceptCounters struct {
	tally
	refused, passed, direct atomic.Uint64
	forwarded, sendErrors   atomic.Uint64
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
	sigs   signatures.Source
	rec    evidence.Recorder
	log    zerolog.Logger

	loops []*loop // one per bound socket (intercept_linux.go)
	local []netip.AddrPort

	start  time.Time
	mu     sync.Mutex // the loops (one per address family) share the limits
	limits limits

	c interceptCounters

	closing atomic.Bool
	ready   chan struct{}  // closed once Serve reads
	gate    lifecycle.Gate // Serve against Shutdown
}

// NewInterceptor binds the transparent sockets at cfg.Listen: one for
// IPv4 and one for IPv6 when it has no host (":6969"), else one for the
// address given. It needs CAP_NET_ADMIN or CAP_NET_RAW (for
// IP_TRANSPARENT), so serve calls it before dropping privileges; the loops
// that will serve the sockets start here too, each on an OS thread that
// keeps those capabilities through the drop, for the reply sockets (see
// loop).
func NewInterceptor(cfg Config, policy Policy, sigs signatures.Source, rec evidence.Recorder, log zerolog.Logger) (*Interceptor, error) {
	in := newInterceptor(cfg, policy, sigs, rec, log)
	if err := in.listen(cfg.Listen); err != nil {
		return nil, err
	}
	return in, nil
}

// newInterceptor is an Interceptor with no socket yet.
func newInterceptor(cfg Config, policy Policy, sigs signatures.Source, rec evidence.Recorder, log zerolog.Logger) *Interceptor {
	cfg = cfg.withDefaults()
	return &Interceptor{
		cfg: cfg, policy: policy, sigs: sigs, rec: rec, log: log,
		start:  time.Now(),
		limits: newLimits(cfg),
		ready:  make(chan struct{}),
	}
}

func (in *Interceptor) listen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("sinkhole: intercept %s: %w", addr, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return fmt.Errorf("sinkhole: intercept %s: bad port: %w", addr, err)
	}
	var binds []netip.AddrPort
	switch host {
	case "":
		binds = []netip.AddrPort{netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(p)), netip.AddrPortFrom(netip.IPv6Unspecified(), uint16(p))}
	default:
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return fmt.Errorf("sinkhole: intercept %s: want an IP address: %w", addr, err)
		}
		binds = []netip.AddrPort{netip.AddrPortFrom(ip.Unmap(), uint16(p))}
	}
	for _, b := range binds {
		lp, err := in.newLoop(b)
		if err != nil {
			in.closeLoops()
			return fmt.Errorf("sinkhole: intercept %s: %w", addr, err)
		}
		in.loops = append(in.loops, lp)
		in.local = append(in.local, lp.local)
	}
	return nil
}

// Addrs returns the bound addresses.
func (in *Interceptor) Addrs() []netip.AddrPort { return in.local }

// Ready is closed once Serve reads.
func (in *Interceptor) Ready() <-chan struct{} { return in.ready }

// closeLoops stops the loops and releases their sockets.
func (in *Interceptor) closeLoops() {
	in.closing.Store(true)
	for _, lp := range in.loops {
		lp.stop()
	}
}

// Shutdown stops Serve and waits for it to return, or for ctx. Before
// Serve it releases what NewInterceptor bound.
func (in *Interceptor) Shutdown(ctx context.Context) error {
	serving, err := in.gate.Shutdown(ctx)
	if !serving {
		in.closeLoops()
	}
	return err
}

// Serve reads until ctx ends or Shutdown is called, then closes the
// sockets and returns ErrServerClosed (or the error of a failed socket).
func (in *Interceptor) Serve(ctx context.Context) error {
	ctx, end, err := in.gate.Begin(ctx, ErrServerClosed)
	if err != nil {
		return err
	}
	defer end()
	errc := make(chan error, len(in.loops))
	for _, lp := range in.loops {
		lp.run(errc)
	}
	addrs := make([]string, len(in.local))
	for i, a := range in.local {
		addrs[i] = a.String()
	}
	in.log.Info().Str("event", "tftp_intercept_start").Strs("listen", addrs).Str("policy", in.policy.String()).
		Float64("source_rate", in.cfg.SourceRate).Float64("total_rate", in.cfg.TotalRate).Msg("tftp interceptor serving")
	close(in.ready)
	if in.cfg.NotifyStarted != nil && len(in.local) > 0 {
		in.cfg.NotifyStarted(net.UDPAddrFromAddrPort(in.local[0]))
	}
	err = ErrServerClosed
	select {
	case <-ctx.Done(): // cancelled, or Shutdown
	case err = <-errc:
	}
	in.closeLoops()
	st := in.Stats()
	in.log.Info().Str("event", "tftp_intercept_stop").Uint64("received", st.Received).Uint64("refused", st.Refused).
		Uint64("passed", st.Passed).Uint64("limited", st.SourceLimited+st.TotalLimited).Msg("tftp interceptor stopped")
	return err
}

// Stats returns the counters.
func (in *Interceptor) Stats() InterceptStats {
	c := &in.c
	return InterceptStats{
		Received: c.received.Load(), Refused: c.refused.Load(), Passed: c.passed.Load(),
		Malformed: c.malformed.Load(), Stray: c.stray.Load(), Direct: c.direct.Load(),
		SourceLimited: c.sourceLimited.Load(), TotalLimited: c.totalLimited.Load(),
		Replies: c.replies.Load(), Truncated: c.truncated.Load(), Forwarded: c.forwarded.Load(), SendErrors: c.sendErrors.Load(),
		Panics: c.panics.Load(), Errors: c.errors.Load(),
	}
}

// handle decides one datagram from client, sent to to: it records the
// request, applies the limits, and sends the refusal or the forward
// through send, using j as scratch space.
func (in *Interceptor) handle(p []byte, client, to netip.AddrPort, now int64, j *sendJob, send func(*sendJob) error) {
	defer in.recover()
	c := &in.c
	req, ok := c.parse(p)
	if !ok {
		return
	}
	ev := requestEvent(&req, client, to, nil)
	ev.Intercepted = true
	refuse := match(in.sigs.Current(), &ev, req.File) || in.policy == PolicyRefuse
	// Send first, record after: the evidence costs the client no time.
	sent := false
	if in.allow(client.Addr(), now) {
		sent = in.send(p, client, to, refuse, j, send)
	}
	if refuse {
		c.refused.Add(1)
	} else if sent {
		c.passed.Add(1)
		ev.Passed = true
	}
	if ev.Kind == evidence.TFTPRefused {
		// Both ends, as the packet matcher records them: the client asked
		// for a worm, and the host it asked is the infector serving it.
		ev.Role, ev.Peer = evidence.RoleRequester, ev.Srv.Addr()
		if srv, ok := serverEvent(ev); ok {
			in.rec.Record(ev)
			ev = srv
		}
	}
	in.rec.Record(ev)
}

// send refuses the request p (an ERROR from to, the address asked, back to
// client) or forwards it unchanged (from client to to), and reports
// whether the datagram left.
func (in *Interceptor) send(p []byte, client, to netip.AddrPort, refuse bool, j *sendJob, send func(*sendJob) error) bool {
	c := &in.c
	if refuse {
		out, cut := appendRefusal(j.buf[:0], len(p))
		if out == nil {
			return false
		}
		if cut {
			c.truncated.Add(1)
		}
		j.n, j.from, j.to, j.anyPort, j.refusal = len(out), to, client, true, true
	} else {
		j.n, j.from, j.to, j.anyPort, j.refusal = copy(j.buf[:], p), client, to, false, false
	}
	if err := send(j); err != nil {
		n := c.sendErrors.Add(1)
		if n&(n-1) == 0 {
			in.log.Warn().Str("event", "tftp_intercept_send_failed").Uint64("failures", n).Str("error", err.Error()).Msg("could not send from another host's address")
		}
		return false
	}
	if refuse {
		c.replies.Add(1)
	} else {
		c.forwarded.Add(1)
	}
	return true
}

// allow applies the per-source and overall limits.
func (in *Interceptor) allow(src netip.Addr, now int64) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.limits.allow(src, now, &in.c.tally)
}

func (in *Interceptor) recover() {
	if r := recover(); r != nil {
		n := in.c.panics.Add(1)
		if n&(n-1) == 0 {
			in.log.Error().Str("event", "tftp_panic").Uint64("panics", n).Str("panic", fmt.Sprint(r)).Msg("recovered from a panic")
		}
	}
}

// sendJob is one datagram to send from an address that is not the host's
// own: a refusal from the server's, or a forward from the client's.
type sendJob struct {
	from, to netip.AddrPort
	anyPort  bool // when from's port is taken, any port of from's address will do (a refusal: TFTP servers answer from a new port anyway)
	refusal  bool
	n        int
	buf      [tftp.MaxRequest]byte
}
