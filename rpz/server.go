// Package rpz serves the signature set as a live Response Policy Zone: the
// primary ISP resolvers follow by AXFR/IXFR and NOTIFY, behind an ACL and TSIG.
package rpz

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"wormsink/internal/dnsaddr"
	"wormsink/internal/lifecycle"
	"wormsink/signatures"
)

// Source is where the zone's content comes from: the signature set in
// service, and a signal when it changes (the zone is rebuilt then, not
// per query).
type Source interface {
	signatures.Source
	Subscribe() (<-chan struct{}, func())
}

// DefaultZone is the zone name resolvers configure when none is given.
const DefaultZone = "rpz.wormsink."

// DefaultJournal is how many serials of changes IXFR can bridge.
const DefaultJournal = 16

// Config describes the primary.
type Config struct {
	Listen  string   // UDP and TCP address
	Zone    string   // zone name; DefaultZone when empty
	Journal int      // serials kept for IXFR; 0 means DefaultJournal, negative none
	Notify  []string // secondaries told of each new serial, IP[:port] (dnsaddr.Parse; port 53 when left out)
	// NotifySource is the address NOTIFY leaves from. Secondaries accept a
	// NOTIFY only from an address they list as primary, so when empty it is
	// the address of Listen (a wildcard Listen leaves the choice to the
	// kernel, which picks by route: set NotifySource then).
	NotifySource netip.Addr
	Allow        []netip.Prefix // who may query and transfer
	Key          *Key           // when set, requests must be signed with it...
	Unsigned     []netip.Prefix // ...except from these (resolvers that cannot sign, e.g. Unbound)
	Sinkhole     []netip.Addr   // local data of sinkhole names

	// NotifyTimeout is how long one NOTIFY waits for its answer; attempts
	// back off from it, doubling, NotifyAttempts times. Zero: 1 s and 6.
	NotifyTimeout  time.Duration
	NotifyAttempts int
	// Notice turns on the walled garden's zones (AllowPrefix+Zone and
	// GardenPrefix+Zone): the addresses a quarantined client's lookups
	// are answered with. Empty: only the signatures' zone is served.
	Notice []netip.Addr
	// Passthru are the names a quarantined client still resolves (the
	// allow zone's rules): a name and the names below it, "*.name" only
	// the names below.
	Passthru []string

	// MaxTransfers bounds the zone transfers in progress, and
	// MaxTransfersPerClient those of one client address; a transfer past
	// either is REFUSED (as BIND's transfers-out). Zero: the defaults.
	MaxTransfers          int
	MaxTransfersPerClient int
	// MaxConns and MaxConnsPerClient bound the TCP connections held, in
	// all and per client address; a connection past them is closed at
	// once. Zero: the defaults.
	MaxConns          int
	MaxConnsPerClient int
	// WriteTimeout ends a transfer whose reader takes none of a message for
	// that long. Zero: DefaultWriteTimeout.
	WriteTimeout time.Duration
}

// Server is the RPZ primary.
type Server struct {
	cfg  Config
	src  Source
	log  zerolog.Logger
	zone atomic.Pointer[zone]
	// The walled garden's zones, nil without Config.Notice.
	allow, garden atomic.Pointer[zone]
	gardenMu      sync.Mutex                      // one SetQuarantined at a time
	serving       atomic.Pointer[context.Context] // Serve's, for the NOTIFYs of SetQuarantined
	stats         stats

	udp     net.PacketConn
	tcp     net.Listener
	servers []*dns.Server

	transfers *slots // transfers in progress
	conns     *slots // TCP connections held

	notifyWG sync.WaitGroup

	gate lifecycle.Gate // Serve against Shutdown
}

// ErrServerClosed is what Serve returns once stopped, by Shutdown or by
// its context.
var ErrServerClosed = errors.New("rpz: server closed")

// New checks cfg, builds the first version of the zone and binds the UDP
// and TCP sockets of cfg.Listen, so a privileged port can be bound before
// privileges are dropped.
func New(cfg Config, src Source, log zerolog.Logger) (*Server, error) {
	s, err := newServer(cfg, src, log)
	if err != nil {
		return nil, err
	}
	if err := s.listen(); err != nil {
		return nil, err
	}
	return s, nil
}

// newServer is New without the sockets.
func newServer(cfg Config, src Source, log zerolog.Logger) (*Server, error) {
	if cfg.Zone == "" {
		cfg.Zone = DefaultZone
	}
	if _, ok := dns.IsDomainName(cfg.Zone); !ok || cfg.Zone == "." {
		return nil, fmt.Errorf("rpz: zone %q is not a domain name", cfg.Zone)
	}
	cfg.Zone = strings.ToLower(dns.Fqdn(cfg.Zone))
	if cfg.Journal == 0 {
		cfg.Journal = DefaultJournal
	}
	if cfg.NotifyTimeout <= 0 {
		cfg.NotifyTimeout = time.Second
	}
	if cfg.NotifyAttempts <= 0 {
		cfg.NotifyAttempts = 6
	}
	orDefault(&cfg.MaxTransfers, DefaultMaxTransfers)
	orDefault(&cfg.MaxTransfersPerClient, DefaultMaxTransfersPerClient)
	orDefault(&cfg.MaxConns, DefaultMaxConns)
	orDefault(&cfg.MaxConnsPerClient, DefaultMaxConnsPerClient)
	orDefault(&cfg.WriteTimeout, DefaultWriteTimeout)
	notify := make([]string, len(cfg.Notify))
	for i, n := range cfg.Notify {
		ap, err := dnsaddr.Parse(n)
		if err != nil {
			return nil, fmt.Errorf("rpz: notify: %w", err)
		}
		notify[i] = ap.String()
	}
	cfg.Notify = notify
	if !cfg.NotifySource.IsValid() {
		if ap, err := netip.ParseAddrPort(cfg.Listen); err == nil && !ap.Addr().IsUnspecified() {
			cfg.NotifySource = ap.Addr().Unmap()
		}
	}
	s := &Server{cfg: cfg, src: src, log: log,
		transfers: newSlots(cfg.MaxTransfers, cfg.MaxTransfersPerClient),
		conns:     newSlots(cfg.MaxConns, cfg.MaxConnsPerClient)}
	z := newZone(cfg.Zone, src.Current(), cfg.Sinkhole)
	s.zone.Store(z)
	s.logSkipped(z)
	if len(cfg.Notice) > 0 {
		serial := nextSerial(0, time.Now())
		s.allow.Store(newStaticZone(AllowPrefix+cfg.Zone, serial, allowRecords(cfg.Passthru, z)))
		g := newStaticZone(GardenPrefix+cfg.Zone, serial, nil)
		g.addOnlyIXFR = true
		s.garden.Store(g)
	}
	return s, nil
}

// listen binds the UDP and TCP sockets.
func (s *Server) listen() error {
	_, port, _ := net.SplitHostPort(s.cfg.Listen)
	for attempt := 0; ; attempt++ {
		var err error
		if s.udp, err = net.ListenPacket("udp", s.cfg.Listen); err != nil {
			return fmt.Errorf("rpz: %w", err)
		}
		// The TCP socket takes the UDP one's port, so ":0" gives one port
		// for both; that port may be taken for TCP, then try another.
		if s.tcp, err = net.Listen("tcp", s.udp.LocalAddr().String()); err == nil {
			return s.checkNotifySource()
		}
		s.udp.Close()
		if port != "0" || attempt == 20 {
			return fmt.Errorf("rpz: %w", err)
		}
	}
}

// checkNotifySource fails the start when NOTIFY could not leave from its
// source address (not an address of this machine), instead of every
// NOTIFY failing later.
func (s *Server) checkNotifySource() error {
	src := s.cfg.NotifySource
	if !src.IsValid() || len(s.cfg.Notify) == 0 {
		return nil
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
	if err != nil {
		s.closeSockets()
		return fmt.Errorf("rpz: notify source %s: %w", src, err)
	}
	c.Close()
	return nil
}

// Addr is the bound address (UDP and TCP share the port).
func (s *Server) Addr() net.Addr { return s.udp.LocalAddr() }

// Serial is the SOA serial of the zone served.
func (s *Server) Serial() uint32 { return s.zone.Load().serial }

// Serve answers until ctx ends or Shutdown is called, following the
// store's reloads, then returns ErrServerClosed.
func (s *Server) Serve(ctx context.Context) error {
	ctx, end, err := s.gate.Begin(ctx, ErrServerClosed) // NOTIFYs in progress end with ctx
	if err != nil {
		return err
	}
	defer end()
	changed, unsubscribe := s.src.Subscribe()
	defer unsubscribe()
	s.reload(ctx) // a reload between New and Subscribe was not announced to us
	var tp dns.TsigProvider
	if s.cfg.Key != nil {
		tp = provider{key: *s.cfg.Key}
	}
	h := dns.HandlerFunc(s.serveDNS)
	ln := &listener{Listener: s.tcp, conns: s.conns, timeout: s.cfg.WriteTimeout,
		allowed: func(a netip.Addr) bool { return inPrefixes(a, s.cfg.Allow) },
		refused: &s.stats.connRefused, rejected: &s.stats.connRejected}
	s.servers = []*dns.Server{
		{PacketConn: s.udp, Handler: h, TsigProvider: tp},
		{Listener: ln, Handler: h, TsigProvider: tp, MaxTCPQueries: -1, IdleTimeout: func() time.Duration { return 30 * time.Second }},
	}
	errc := make(chan error, len(s.servers))
	for _, srv := range s.servers {
		go func() { errc <- srv.ActivateAndServe() }()
	}
	s.log.Info().Str("event", "rpz_start").Str("listen", s.Addr().String()).Str("zone", s.cfg.Zone).
		Uint32("serial", s.Serial()).Bool("tsig", s.cfg.Key != nil).Msg("RPZ primary serving")
	// A start after a reload (or a restart) tells the secondaries too: they
	// may have missed the serial while wormsink was down.
	s.serving.Store(&ctx)
	for _, z := range s.zones() {
		s.notifyAll(ctx, z)
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-changed:
			s.reload(ctx)
		case err = <-errc:
			break loop
		}
	}
	s.serving.Store(nil)
	for _, srv := range s.servers {
		sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
		srv.ShutdownContext(sctx)
		c()
	}
	s.notifyWG.Wait()
	if err != nil {
		return fmt.Errorf("rpz: %w", err)
	}
	return ErrServerClosed
}

// Shutdown stops Serve and waits for it to return (transfers in progress
// get up to 2 seconds), or for ctx. Before Serve it closes the sockets.
func (s *Server) Shutdown(ctx context.Context) error {
	serving, err := s.gate.Shutdown(ctx)
	if !serving {
		s.closeSockets()
	}
	return err
}

// reload builds the next version of the zone from the store's set.
func (s *Server) reload(ctx context.Context) {
	old := s.zone.Load()
	set := s.src.Current()
	if set == old.set {
		return
	}
	start := time.Now()
	next := old.successor(set, s.cfg.Journal)
	s.zone.Store(next)
	s.logSkipped(next)
	ev := s.log.Info().Str("event", "rpz_zone").Str("zone", next.origin).Uint32("old_serial", old.serial).
		Uint32("serial", next.serial).Int("records", next.records).Int("journal", len(next.journal)).
		Dur("took", time.Since(start))
	if n := len(next.journal); n > 0 {
		d := next.journal[n-1]
		ev = ev.Int("removed", d.nDel).Int("added", d.nAdd)
	}
	ev.Msg("policy zone rebuilt")
	s.rebuildAllow(ctx, next)
	if next.serial == old.serial {
		s.log.Warn().Str("event", "rpz_zone").Uint32("serial", next.serial).
			Msg("signature content changed but the serial did not: secondaries keep the old zone until the serial grows")
		return
	}
	s.notifyAll(ctx, next)
}

func (s *Server) logSkipped(z *zone) {
	if z.skipped > 0 {
		s.log.Warn().Str("event", "rpz_zone").Str("zone", z.origin).Int("skipped", z.skipped).
			Msg("listed names too long to fit under the zone name are left out of the policy zone")
	}
}

// allowed decides whether a request may be answered, and if not, how it
// is refused.
func (s *Server) allowed(w dns.ResponseWriter, req *dns.Msg) (rcode int, ok bool) {
	ap, _ := netip.ParseAddrPort(w.RemoteAddr().String())
	ip := ap.Addr().Unmap()
	if !inPrefixes(ip, s.cfg.Allow) {
		return dns.RcodeRefused, false
	}
	if s.cfg.Key == nil {
		return 0, true
	}
	if t := req.IsTsig(); t != nil {
		if w.TsigStatus() != nil {
			return dns.RcodeNotAuth, false // BADKEY, BADSIG, BADTIME or another algorithm
		}
		return 0, true
	}
	if inPrefixes(ip, s.cfg.Unsigned) {
		return 0, true
	}
	return dns.RcodeNotAuth, false
}

func inPrefixes(ip netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	defer func() {
		if p := recover(); p != nil {
			s.stats.panics.Add(1)
			s.log.Error().Str("event", "rpz_panic").Str("panic", fmt.Sprint(p)).Msg("recovered in the RPZ primary")
		}
	}()
	kind := kindOther
	if len(req.Question) == 1 {
		switch req.Question[0].Qtype {
		case dns.TypeAXFR:
			kind = kindAXFR
		case dns.TypeIXFR:
			kind = kindIXFR
		case dns.TypeSOA:
			kind = kindSOA
		}
	}
	if rcode, ok := s.allowed(w, req); !ok {
		s.stats.count(kind, rcodeResult(rcode))
		s.refuse(w, req, rcode)
		return
	}
	var z *zone
	if len(req.Question) == 1 {
		z = s.zoneFor(dns.Fqdn(req.Question[0].Name))
	}
	if req.Opcode != dns.OpcodeQuery || len(req.Question) != 1 || req.Question[0].Qclass != dns.ClassINET ||
		z == nil || kind == kindOther {
		s.stats.count(kind, resRefused)
		s.refuse(w, req, dns.RcodeRefused)
		return
	}
	_, isUDP := w.RemoteAddr().(*net.UDPAddr)
	switch kind {
	case kindSOA:
		m := s.reply(w, req)
		m.Answer = []dns.RR{z.soa()}
		s.write(w, m, kind, resOK)
	case kindAXFR:
		if isUDP {
			s.stats.count(kind, resRefused) // a zone does not fit a datagram
			s.refuse(w, req, dns.RcodeRefused)
			return
		}
		s.transfer(w, req, z, nil, kind)
	case kindIXFR:
		var from uint32
		var ok bool
		if len(req.Ns) == 1 {
			var soa *dns.SOA
			if soa, ok = req.Ns[0].(*dns.SOA); ok {
				from = soa.Serial
			}
		}
		if !ok {
			s.stats.count(kind, resError)
			s.refuse(w, req, dns.RcodeFormatError)
			return
		}
		if from == z.serial || isUDP {
			// Up to date; or over UDP, where RFC 1995 lets the server
			// answer with its SOA alone and the secondary retries by TCP.
			m := s.reply(w, req)
			m.Answer = []dns.RR{z.soa()}
			s.write(w, m, kind, resCurrent)
			return
		}
		deltas, inc := z.since(from)
		if !inc {
			s.transfer(w, req, z, nil, kind) // too old or unknown: the whole zone
			return
		}
		s.transfer(w, req, z, deltas, kind)
	}
}

func (s *Server) reply(w dns.ResponseWriter, req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if t := req.IsTsig(); t != nil && w.TsigStatus() == nil {
		m.SetTsig(t.Hdr.Name, t.Algorithm, t.Fudge, time.Now().Unix())
	}
	return m
}

func (s *Server) write(w dns.ResponseWriter, m *dns.Msg, k kind, r result) {
	if err := w.WriteMsg(m); err != nil {
		s.stats.count(k, resError)
		return
	}
	s.stats.count(k, r)
}

// refuse answers without data. The answer is never signed: a request that
// failed verification cannot be answered with its key (RFC 8945 5.3.2).
func (s *Server) refuse(w dns.ResponseWriter, req *dns.Msg, rcode int) {
	m := new(dns.Msg)
	m.SetRcode(req, rcode)
	m.Extra = nil
	if rcode != dns.RcodeNotAuth && req.IsTsig() != nil && w.TsigStatus() == nil {
		m.SetTsig(req.IsTsig().Hdr.Name, req.IsTsig().Algorithm, 300, time.Now().Unix())
	}
	w.WriteMsg(m)
}

// envelopeBytes bounds one transfer message, well under the 64 KB a DNS
// message over TCP can hold.
const envelopeBytes = 32 << 10

// transfer streams the zone (deltas nil: AXFR form) or the deltas (IXFR
// form) through dns.Transfer, one envelope at a time, so a million-name
// zone never exists as RRs all at once. Past MaxTransfers in all or
// MaxTransfersPerClient from the client's address it is REFUSED, and the
// connection closed.
func (s *Server) transfer(w dns.ResponseWriter, req *dns.Msg, z *zone, deltas []*delta, k kind) {
	ap, _ := netip.ParseAddrPort(w.RemoteAddr().String())
	client := ap.Addr().Unmap()
	if !s.transfers.take(client) {
		s.stats.transfersLimited.Add(1)
		s.stats.count(k, resRefused)
		s.refuse(w, req, dns.RcodeRefused)
		w.Close()
		return
	}
	defer s.transfers.give(client)
	ch := make(chan *dns.Envelope, 2)
	done := make(chan struct{})
	go func() {
		defer close(ch)
		mk := newRRMaker(z.origin)
		var batch []dns.RR
		size := 0
		send := func(rr dns.RR, est int) bool {
			if size+est > envelopeBytes && len(batch) > 0 {
				select {
				case ch <- &dns.Envelope{RR: batch}:
				case <-done:
					return false
				}
				batch, size = nil, 0
			}
			batch = append(batch, rr)
			size += est
			return true
		}
		est := func(owner string) int { return len(owner) + len(z.origin) + 32 }
		soa := z.soa()
		if !send(soa, 64+len(z.origin)) {
			return
		}
		if deltas == nil {
			if !send(z.ns(), 32+len(z.origin)) {
				return
			}
			for r := range z.each {
				if !send(mk.rr(r.Owner, r.Policy, r.Addr), est(r.Owner)) {
					return
				}
			}
		} else {
			for _, d := range deltas {
				from := z.soa()
				from.Serial = d.from
				to := z.soa()
				to.Serial = d.to
				ok := send(from, 64+len(z.origin))
				eachPacked(d.del, func(o string, p policy, a netip.Addr) bool {
					ok = ok && send(mk.rr(o, p, a), est(o))
					return ok
				})
				ok = ok && send(to, 64+len(z.origin))
				eachPacked(d.add, func(o string, p policy, a netip.Addr) bool {
					ok = ok && send(mk.rr(o, p, a), est(o))
					return ok
				})
				if !ok {
					return
				}
			}
		}
		batch = append(batch, soa)
		select {
		case ch <- &dns.Envelope{RR: batch}:
		case <-done:
		}
	}()
	tr := new(dns.Transfer)
	err := tr.Out(w, req, ch)
	close(done)
	for range ch { // let the producer finish
	}
	res := resFull
	if deltas != nil {
		res = resIncremental
	}
	if err != nil {
		res = resError
		s.log.Warn().Str("event", "rpz_transfer_failed").Str("client", w.RemoteAddr().String()).Str("error", err.Error()).Msg("zone transfer failed")
	}
	s.stats.count(k, res)
	w.Close() // one transfer per connection, as secondaries expect
}

// Transfers is the number of zone transfers in progress.
func (s *Server) Transfers() int { return s.transfers.inUse() }

// Conns is the number of TCP connections held.
func (s *Server) Conns() int { return s.conns.inUse() }

// orDefault sets a bound left at zero (or below) to its default.
func orDefault[T int | time.Duration](p *T, d T) {
	if *p <= 0 {
		*p = d
	}
}

// closeSockets releases the sockets of a server that never served.
func (s *Server) closeSockets() {
	if s.udp != nil {
		s.udp.Close()
	}
	if s.tcp != nil {
		s.tcp.Close()
	}
}
