package sinkhole

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"wormsink/evidence"
	"wormsink/internal/lifecycle"
	"wormsink/signatures"
)

// Defaults for Config.
const (
	DefaultSourceRate  = 5     // replies per second to one source
	DefaultSourceBurst = 10    // replies one source may get at once
	DefaultTotalRate   = 10000 // replies per second to everyone
	DefaultTotalBurst  = 1000
	DefaultSources     = 1 << 16 // per-source buckets
	DefaultReadBuffer  = 4 << 20
	DefaultListen      = ":69" // the server's address: TFTP's port on every address
)

// RefusalText is the message of every ERROR reply. It is fixed and says
// nothing.
const RefusalText = "denied"

// ErrServerClosed is returned by Serve after Shutdown or after its context
// was cancelled.
var ErrServerClosed = errors.New("sinkhole: server closed")

// Config tunes a Server. The zero value is a sensible production setup.
//
// Every well-formed request is recorded as evidence, limited or not; the
// limits decide only which requests get an answer, so a flood costs a
// bounded number of replies, goroutines and bytes.
type Config struct {
	// Listen is the UDP address New binds (the interceptor's: the
	// address NewInterceptor binds its transparent sockets to). "" means
	// DefaultListen for the server; the interceptor needs one.
	Listen string
	// Conn, when set, is a socket already bound that the server serves
	// instead of binding Listen (a socket handed over by the caller); the
	// server closes it when it stops.
	Conn *net.UDPConn

	// SourceRate is the replies per second one source gets, a source
	// being an IPv4 address or an IPv6 /64. 0 means DefaultSourceRate,
	// a negative value no limit.
	SourceRate  float64
	SourceBurst int // 0 means DefaultSourceBurst
	// TotalRate is the replies per second to all sources together.
	// 0 means DefaultTotalRate, a negative value no limit.
	TotalRate  float64
	TotalBurst int // 0 means DefaultTotalBurst
	// Sources is how many per-source buckets are kept (a fixed table:
	// sources beyond it share slots). 0 means DefaultSources.
	Sources int
	// ReadBuffer is the socket receive buffer (SO_RCVBUF), so that a burst
	// waits in the kernel rather than being dropped there. 0 means
	// DefaultReadBuffer (the kernel caps it at net.core.rmem_max); a
	// negative value leaves the socket alone.
	ReadBuffer int
	// NotifyStarted, when set, is called once Serve reads packets (Ready
	// is closed then too).
	NotifyStarted func(local net.Addr)

	// Exchanges is how many requesters at most are put through rounds at
	// once: probes from fresh ports of their own, each waiting
	// ExchangeWait for the client's answer, the refusal after the last
	// (see exchanges); beyond it refusals go out from the main socket and
	// their sightings stay datagrams. 0 means DefaultExchanges, a negative
	// value turns the fresh ports off. A sighting in its rounds is
	// recorded when the last round's wait ends.
	Exchanges    int
	ExchangeWait time.Duration // 0 means DefaultExchangeWait
	// ExchangeRounds is how many fresh ports in turn a requester must
	// answer before its sighting has proof exchange: each a secret of
	// about 15 bits to a forger. 0 means DefaultExchangeRounds; 1 is a
	// single port (guessable in about 2^15 tries).
	ExchangeRounds int
	// Decoys is how many fresh ports are kept open beside the refusals',
	// never told to anyone: a datagram on one is a guess (see exchanges).
	// 0 means DefaultDecoys, a negative value none (then only datagrams
	// from other addresses on a refusal's port are seen as guesses).
	Decoys int
	// GuessHold is how long a guess withholds proof exchange from every
	// refusal (doubling while guesses keep coming back). 0 means
	// DefaultGuessHold.
	GuessHold time.Duration
}

// Stats counts what a Server did. Every field only grows. Received is the
// sum of Refused, Unknown, Writes, Malformed and Stray (give or take the
// requests being handled at the moment).
type Stats struct {
	Received  uint64 // datagrams read from the socket
	Refused   uint64 // read requests for a file a signature names (tftp_refused)
	Unknown   uint64 // read requests for any other file (tftp_request)
	Writes    uint64 // write requests, either kind
	Malformed uint64 // datagrams that are no TFTP request: never answered
	Stray     uint64 // TFTP packets other than requests, datagrams from others on a refusal's port: never answered

	SourceLimited uint64 // requests over the per-source rate: recorded, not answered
	TotalLimited  uint64 // requests over the overall rate: recorded, not answered

	Replies   uint64 // ERROR replies sent
	Truncated uint64 // replies cut to the size of their request
	Panics    uint64 // panics recovered (in a evidence.Recorder, a signatures.Source)
	Errors    uint64 // socket read and write errors

	Probes       uint64 // probes sent from fresh ports (a DATA block 0, no byte of a file)
	Exchanged    uint64 // requesters that answered every round (proof exchange unless withheld)
	Partial      uint64 // requesters that answered some rounds, not all (a client that keeps to one port): datagram
	Withheld     uint64 // of the Exchanged, those withheld exchange because a guess was seen near them
	Guesses      uint64 // datagrams on a decoy, or on a refusal's port from another address
	ExchangeBusy uint64 // refusals sent from the main socket because every fresh port was in use
}

type counters struct {
	tally
	refused, unknown, writes atomic.Uint64
	exchanged, exchangeBusy  atomic.Uint64
	withheld, guesses        atomic.Uint64
	probes, partial          atomic.Uint64
}

// Server is the fake TFTP server: it answers every read and write request
// with the same ERROR, never a byte of file data nor an option
// acknowledgement, and records who asked for what.
//
// There is no transfer to run: every request gets the one ERROR, so the
// server is a read loop (guard) that parses, records and rate-limits each
// datagram and sends at most one ERROR per request, no larger than it.
// Before the ERROR, a request may be put through rounds of empty probes
// that only the holder of its address can answer (exchanges); each probe
// after the first is sent only for an answer.
type Server struct {
	cfg  Config
	sigs signatures.Source
	rec  evidence.Recorder
	log  zerolog.Logger

	c counters

	conn  *net.UDPConn   // bound by New, closed when Serve returns or by Shutdown before Serve
	gate  lifecycle.Gate // Serve against Shutdown
	mu    sync.Mutex
	g     *guard        // while serving
	ready chan struct{} // closed once Serve reads packets
}

// New binds cfg.Listen (or takes cfg.Conn) and makes a Server that matches
// requested files against sigs, records evidence in rec and writes service
// lines to log. It binds before Serve so that a process can bind port 69
// with privileges and drop them before it reads a datagram.
func New(cfg Config, sigs signatures.Source, rec evidence.Recorder, log zerolog.Logger) (*Server, error) {
	cfg = cfg.withDefaults()
	conn := cfg.Conn
	if conn == nil {
		ua, err := net.ResolveUDPAddr("udp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
		}
		if conn, err = net.ListenUDP("udp", ua); err != nil {
			return nil, err // it names the address
		}
	}
	if cfg.ReadBuffer > 0 {
		// Best effort: the kernel caps it, and a smaller buffer only means
		// a burst is dropped earlier.
		_ = conn.SetReadBuffer(cfg.ReadBuffer)
	}
	return &Server{cfg: cfg, sigs: sigs, rec: rec, log: log, conn: conn,
		ready: make(chan struct{})}, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.conn.LocalAddr() }

// Ready is closed once Serve reads packets.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// withDefaults fills in what the zero value leaves to the defaults.
func (cfg Config) withDefaults() Config {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.SourceRate == 0 {
		cfg.SourceRate = DefaultSourceRate
	}
	if cfg.SourceBurst <= 0 {
		cfg.SourceBurst = DefaultSourceBurst
	}
	if cfg.TotalRate == 0 {
		cfg.TotalRate = DefaultTotalRate
	}
	if cfg.TotalBurst <= 0 {
		cfg.TotalBurst = DefaultTotalBurst
	}
	if cfg.Sources <= 0 {
		cfg.Sources = DefaultSources
	}
	if cfg.ReadBuffer == 0 {
		cfg.ReadBuffer = DefaultReadBuffer
	}
	if cfg.Exchanges == 0 {
		cfg.Exchanges = DefaultExchanges
	}
	if cfg.ExchangeRounds <= 0 {
		cfg.ExchangeRounds = DefaultExchangeRounds
	}
	if cfg.ExchangeWait <= 0 {
		cfg.ExchangeWait = DefaultExchangeWait
	}
	switch {
	case cfg.Decoys == 0:
		cfg.Decoys = DefaultDecoys
	case cfg.Decoys < 0:
		cfg.Decoys = 0
	}
	if cfg.GuessHold <= 0 {
		cfg.GuessHold = DefaultGuessHold
	}
	return cfg
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	c := &s.c
	return Stats{
		Received: c.received.Load(), Refused: c.refused.Load(), Unknown: c.unknown.Load(), Writes: c.writes.Load(),
		Malformed: c.malformed.Load(), Stray: c.stray.Load(),
		SourceLimited: c.sourceLimited.Load(), TotalLimited: c.totalLimited.Load(),
		Replies: c.replies.Load(), Truncated: c.truncated.Load(),
		Panics: c.panics.Load(), Errors: c.errors.Load(),
		Probes: c.probes.Load(), Exchanged: c.exchanged.Load(), Partial: c.partial.Load(), Withheld: c.withheld.Load(), Guesses: c.guesses.Load(), ExchangeBusy: c.exchangeBusy.Load(),
	}
}

// graceStop bounds how long Serve waits for its read loop to end; it
// ends at once unless a socket write is wedged.
const graceStop = 3 * time.Second

// Serve answers requests arriving on the bound socket until ctx is
// cancelled or Shutdown is called, then returns ErrServerClosed. It closes
// the socket when it returns. A Server serves once.
func (s *Server) Serve(ctx context.Context) error {
	ctx, end, err := s.gate.Begin(ctx, ErrServerClosed)
	if err != nil {
		return err
	}
	defer end()
	conn := s.conn
	defer conn.Close()
	g := newGuard(s, conn)
	s.mu.Lock()
	s.g = g
	s.mu.Unlock()
	go g.run()

	s.log.Info().Str("event", "tftp_start").Str("listen", conn.LocalAddr().String()).
		Float64("source_rate", s.cfg.SourceRate).Float64("total_rate", s.cfg.TotalRate).Msg("tftp sinkhole serving")
	close(s.ready)
	if s.cfg.NotifyStarted != nil {
		s.cfg.NotifyStarted(conn.LocalAddr())
	}

	select {
	case <-ctx.Done(): // cancelled, or Shutdown
	case <-g.failed:
		err = fmt.Errorf("serve %s: %w", conn.LocalAddr(), g.failure())
	}
	g.close()
	t := time.NewTimer(graceStop)
	defer t.Stop()
	select {
	case <-g.done:
	case <-t.C:
		s.log.Warn().Str("event", "tftp_stop_timeout").Msg("tftp read loop did not stop in time; closing its socket")
	}
	// Sightings still waiting for a follow-up are recorded now, as datagrams.
	g.drain()
	st := s.Stats()
	s.log.Info().Str("event", "tftp_stop").Uint64("received", st.Received).Uint64("replies", st.Replies).
		Uint64("limited", st.SourceLimited+st.TotalLimited).Uint64("panics", st.Panics).Msg("tftp sinkhole stopped")
	if err != nil {
		return err
	}
	return ErrServerClosed
}

// Shutdown stops Serve and waits for it to return (sightings still
// waiting for their follow-up are recorded first), or for ctx. Before
// Serve it closes the socket New bound.
func (s *Server) Shutdown(ctx context.Context) error {
	serving, err := s.gate.Shutdown(ctx)
	if !serving {
		s.conn.Close() // a Serve after this sees it stopped and returns at once
	}
	return err
}

// recoverPanic turns a panic into a count: a bad request or a bad
// dependency must never take the sinkhole down.
func (s *Server) recoverPanic() {
	if r := recover(); r != nil {
		s.panicked(r)
	}
}

// emit records one sighting; a panicking evidence.Recorder is counted, not fatal.
func (s *Server) emit(ev evidence.Event) {
	defer s.recoverPanic()
	s.rec.Record(ev)
}

func (s *Server) panicked(r any) {
	n := s.c.panics.Add(1)
	// A flood of panicking requests must not become a flood of log lines.
	if n&(n-1) == 0 {
		s.log.Error().Str("event", "tftp_panic").Uint64("panics", n).Str("panic", fmt.Sprint(r)).Msg("recovered from a panic")
	}
}
