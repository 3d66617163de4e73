package evidence

import (
	"bufio"
	"hash/maphash"
	"io"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"wormsink/signatures"
)

// TimeFormat is how every time in the log is written: UTC, RFC 3339 with
// milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Defaults for Config.
const (
	DefaultWindow     = time.Second
	DefaultMaxPending = 1 << 16

	DefaultAggregateWindow = time.Minute
	DefaultMaxAggregates   = 4096

	// DefaultHostLines is how many detailed lines one host may open per
	// event and signature in an AggregateWindow: a worm asks for a handful
	// of names or files, so 32 show what it did; past them its sightings
	// fold into its summary line.
	DefaultHostLines = 32
)

// The line budget serve uses unless told otherwise: with lines of about
// 300 bytes, a burst of 10,000 host lines is 3 MB and 500 lines a second
// 150 kB/s, whatever the flood.
const (
	DefaultLineRate  = 500
	DefaultLineBurst = 10_000
)

// Config tunes a Writer. The zero value is usable.
type Config struct {
	Sensor string // recorded in every line
	// Window is how long repeats of one sighting are folded into one line.
	Window time.Duration
	// MaxPending bounds the distinct sightings held between flushes. Past
	// it, new sightings fold into one line per host, event and signature,
	// so memory stays bounded and the host is still counted.
	MaxPending int

	// TrustedSources are networks whose edge drops forged source addresses
	// (BCP 38 / uRPF): a sighting from inside them has at least
	// ProofTrustedSource.
	TrustedSources Networks

	// The line budget. Every host line the writer opens takes a token from
	// a bucket holding LineBurst tokens and refilled at LineRate a second.
	// A sighting that finds the bucket empty (and no line of its host open
	// to fold into) is folded into a network line instead: one per event,
	// signature, evidence strength and /24 (IPv4) or /48 (IPv6), carrying
	// "network" in place of "host". Every sighting is still counted. With
	// LineRate 0 there is no budget (scan, tests); network lines are then
	// only the fallback when both host tables are full.
	LineRate  float64
	LineBurst int
	// AggregateWindow is how long a network line collects before it is
	// written; MaxAggregates bounds the network lines open at once. Past
	// it, sightings fold into one line per event and signature for all of
	// IPv4 (0.0.0.0/0) or IPv6 (::/0). So a flood writes at most
	// LineBurst + LineRate·t host lines plus about MaxAggregates network
	// lines per AggregateWindow.
	AggregateWindow time.Duration
	MaxAggregates   int

	// HostLines bounds the detailed lines one host opens per event and
	// signature (and resolver, for dns_lookup) in an AggregateWindow,
	// whatever its proof. 0 means DefaultHostLines with a line budget
	// and no bound without one (scan, tests); negative means no bound. Past it, its sightings fold
	// into one summary line per host, event and signature a Window, which
	// carries "names", the number of distinct names (qname or file) it
	// counts. So one host sending distinct names at full speed writes
	// HostLines lines a minute plus one line a second, and a host that
	// proved itself by a round trip still has a line naming it when the
	// budget is spent.
	HostLines int

	// Exclude lists addresses that are never recorded as a host: the
	// sinkhole's own addresses and networks the operator names. Their
	// sightings are dropped and counted in Stats.Excluded.
	Exclude []netip.Prefix
	// Own, when set, holds the addresses the machine has now, followed as
	// they come and go (see internal/localaddr): never a host either.
	// Contains is called on every sighting and must not allocate.
	Own interface{ Contains(netip.Addr) bool }

	// EventClock flushes by the sightings' own times instead of the wall
	// clock: for reading old captures (scan), whose lines must not depend
	// on how fast the machine reads them. Record then writes as the
	// sightings' time moves on.
	EventClock bool
}

// Stats counts what a Writer did; all fields only grow.
type Stats struct {
	Sightings uint64 // sightings recorded (sum of counts)
	Lines     uint64 // evidence lines written
	Coarse    uint64 // sightings folded per host because the detailed table was full
	Overflow  uint64 // sightings counted without a host because both tables were full
	Errors    uint64 // failed writes

	Aggregated uint64 // sightings folded into network lines (line budget spent or tables full)
	Excluded   uint64 // sightings of excluded hosts, own addresses and non-hosts (unspecified, broadcast, multicast), dropped
	HostFolded uint64 // sightings folded into a host's summary line because it had opened HostLines lines
}

// Writer writes evidence as JSON lines. Record never waits on the disk: it
// folds the sighting into a table under a short lock, and a background
// goroutine writes the table out. Every sighting ends up either as its own
// line or in the count of one.
type Writer struct {
	out    *syncWriter
	svc    zerolog.Logger
	sensor string
	window time.Duration
	max    int
	trust  Networks

	rate, burst float64 // line budget; rate 0: none
	aggWindow   time.Duration
	maxAgg      int
	hostLines   int // 0: no bound
	exclude     []netip.Prefix
	own         interface{ Contains(netip.Addr) bool }
	seed        maphash.Seed

	mu      sync.Mutex
	pending map[key]*slot
	coarse  map[key]*slot
	aggs    map[aggKey]*slot
	// opened counts the detailed lines each host opened per event and
	// signature since quotaAt; cleared every AggregateWindow. It only
	// grows when a line is opened, so it is no bigger than the lines.
	opened   map[key]int
	quotaAt  time.Time
	tokens   float64   // line budget left
	tokensAt time.Time // when tokens was last refilled
	ready    []*slot   // slots taken out of the table, waiting to be written
	overflow uint64    // sightings no table had room for
	seq      uint64    // slots opened so far
	closed   bool

	eventClock bool
	clock      time.Time // EventClock: the latest sighting time so far
	flushedAt  time.Time // EventClock: clock at the last flush

	writeMu sync.Mutex // one batch at a time, in order

	obs  atomic.Pointer[Observer]   // told of every sighting recorded; nil: none
	attr atomic.Pointer[Attributor] // names the subscriber of host lines; nil: none

	stop chan struct{}
	done chan struct{}

	sightings, lines, coarseN, overflowN, errs atomic.Uint64
	aggregatedN, excludedN, hostFoldedN        atomic.Uint64
}

type slot struct {
	ev    Event
	last  time.Time
	born  time.Time // wall clock (or the event clock) when the slot opened
	count uint64
	seq   uint64       // order of opening, so equal times keep the order recorded
	net   netip.Prefix // a network line's network; invalid for a host line
	names *nameCount   // a summary line's distinct names; nil for the others
}

// NewWriter starts a Writer on out. Close it to flush.
func NewWriter(out io.Writer, cfg Config) *Writer {
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.AggregateWindow <= 0 {
		cfg.AggregateWindow = DefaultAggregateWindow
	}
	if cfg.MaxAggregates <= 0 {
		cfg.MaxAggregates = DefaultMaxAggregates
	}
	if cfg.LineRate > 0 && cfg.LineBurst < 1 {
		cfg.LineBurst = 1
	}
	if cfg.HostLines == 0 && cfg.LineRate > 0 {
		cfg.HostLines = DefaultHostLines
	}
	sw := &syncWriter{w: bufio.NewWriterSize(out, 64<<10), dst: out}
	w := &Writer{
		out:       sw,
		sensor:    cfg.Sensor,
		window:    cfg.Window,
		max:       cfg.MaxPending,
		rate:      max(cfg.LineRate, 0),
		burst:     float64(cfg.LineBurst),
		aggWindow: cfg.AggregateWindow,
		maxAgg:    cfg.MaxAggregates,
		hostLines: max(cfg.HostLines, 0),
		own:       cfg.Own,
		seed:      maphash.MakeSeed(),
		trust:     cfg.TrustedSources,
		pending:   make(map[key]*slot),
		coarse:    make(map[key]*slot),
		aggs:      make(map[aggKey]*slot),
		opened:    make(map[key]int),
		tokens:    float64(cfg.LineBurst),
		tokensAt:  time.Now(),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),

		eventClock: cfg.EventClock,
	}
	for _, p := range cfg.Exclude {
		// An IPv4-mapped prefix is its IPv4 network (hosts are compared
		// unmapped); one shorter than /96 is no IPv4 network: kept whole.
		if u, ok := UnmapPrefix(p); ok && p.IsValid() {
			w.exclude = append(w.exclude, u)
		} else if p.IsValid() {
			w.exclude = append(w.exclude, p.Masked())
		}
	}
	w.sensor, _ = escapeCut(cfg.Sensor, MaxStringLen)
	// Service lines are rare and must be seen at once: they flush.
	w.svc = zerolog.New(flushingWriter{sw}).Hook(timeHook{}).With().Str(FieldSensor.Name(), w.sensor).Logger()
	if cfg.EventClock {
		close(w.done) // no background flushing: Record does it
	} else {
		go w.run()
	}
	return w
}

// Service returns the logger for service lines (start, reload, errors).
// Each line carries an "event" of its own and no "host".
func (w *Writer) Service() zerolog.Logger { return w.svc }

// Stats returns the writer's counters.
func (w *Writer) Stats() Stats {
	return Stats{Sightings: w.sightings.Load(), Lines: w.lines.Load(), Coarse: w.coarseN.Load(), Overflow: w.overflowN.Load(), Errors: w.errs.Load(),
		Aggregated: w.aggregatedN.Load(), Excluded: w.excludedN.Load(), HostFolded: w.hostFoldedN.Load()}
}

// excluded reports whether host is one the writer must never name.
func (w *Writer) excluded(host netip.Addr) bool {
	host = host.Unmap()
	if !IsHost(host) || w.own != nil && w.own.Contains(host) {
		return true
	}
	for _, p := range w.exclude {
		if p.Contains(host) {
			return true
		}
	}
	return false
}

// take spends one line of the budget, if there is one left; the caller
// holds w.mu.
func (w *Writer) take(now time.Time) bool {
	if w.rate == 0 {
		return true
	}
	if d := now.Sub(w.tokensAt); d > 0 {
		w.tokens = min(w.burst, w.tokens+d.Seconds()*w.rate)
		w.tokensAt = now
	}
	if w.tokens < 1 {
		return false
	}
	w.tokens--
	return true
}

// Record folds one sighting into the log. It is safe for concurrent use and
// costs no allocation when the sighting repeats one already pending.
func (w *Writer) Record(ev Event) {
	n := ev.Count
	if n == 0 {
		n = 1
	}
	if w.excluded(ev.Host) {
		w.excludedN.Add(n)
		return
	}
	w.sightings.Add(n)
	now := time.Now()
	if ev.Time.IsZero() {
		ev.Time = now
	}
	if ev.Named {
		// Nothing the packet says raises what is known of a host that did
		// not send it.
		ev.Evidence, ev.Proof = signatures.Weak, ProofDatagram
	} else if ev.Proof < ProofTrustedSource && w.trust.Contains(ev.Host) {
		ev.Proof = ProofTrustedSource
	}
	ev.cutLong()
	if o := w.obs.Load(); o != nil {
		observe(*o, ev)
	}
	k := ev.key()
	if w.eventClock {
		defer w.flushByEventClock() // after the unlock below
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.eventClock {
		if ev.Time.After(w.clock) {
			w.clock = ev.Time
		}
		now = w.clock
	}
	if s, ok := w.pending[k]; ok {
		if ev.Time.Sub(s.ev.Time) < w.window && s.ev.Time.Sub(ev.Time) < w.window || len(w.ready) >= w.max {
			s.add(ev.Time, n)
			return
		}
		// Same sighting, later window: the old line is complete.
		w.ready = append(w.ready, s)
		delete(w.pending, k)
	}
	ck := ev.coarse()
	if s, ok := w.coarse[ck]; ok {
		// The host's summary line is open (its detailed lines are spent,
		// or the table was full): everything new of it folds there, so a
		// host sending distinct names costs one line a window.
		w.foldSummary(s, &ev, n)
		return
	}
	opened := w.opened[ck]
	if !w.closed && len(w.pending) < w.max && (w.hostLines == 0 || opened < w.hostLines) {
		// A sighting that took a round trip (tcp, exchange) needs a real
		// host at that address, so a forged flood cannot make many of
		// them: it keeps its host line even when the budget is spent, and
		// the flood cannot push proven hosts out of the log.
		if !w.take(now) && !roundTrip(&ev) {
			w.aggregate(&ev, n, now)
			return
		}
		w.seq++
		w.pending[k] = &slot{ev: ev, last: ev.Time, born: now, count: n, seq: w.seq}
		w.opened[ck] = opened + 1
		return
	}
	// The host opened its detailed lines, or the detailed table is full
	// (the writer is far behind a flood of distinct sightings): fold per
	// host while there is room and budget.
	if len(w.coarse) >= w.max || !w.take(now) && !roundTrip(&ev) {
		w.aggregate(&ev, n, now)
		return
	}
	// The summary names what its sightings asked for while that is one
	// name (foldSummary forgets it at the second).
	c := Event{Time: ev.Time, Kind: ev.Kind, Host: ev.Host, Sig: ev.Sig, Family: ev.Family, Evidence: ev.Evidence, Serial: ev.Serial, Proof: ev.Proof,
		QName: ev.QName, File: ev.File, Resolver: ev.Resolver}
	w.seq++
	s := &slot{ev: c, last: ev.Time, born: now, seq: w.seq, names: &nameCount{}}
	w.coarse[ck] = s
	w.foldSummary(s, &ev, n)
}

// observe hands an observer its own copy of a sighting. It is a function
// of its own so that only a Writer with an observer pays for the copy
// escaping to the heap: taken in Record, the address of ev made every
// sighting allocate.
func observe(o Observer, ev Event) { o.Observe(&ev) }

// foldSummary counts a sighting in its host's summary line; the caller
// holds w.mu.
func (w *Writer) foldSummary(s *slot, ev *Event, n uint64) {
	if w.hostLines > 0 && w.opened[ev.coarse()] >= w.hostLines {
		w.hostFoldedN.Add(n)
	} else {
		w.coarseN.Add(n)
	}
	s.add(ev.Time, n)
	s.ev.Proof = max(s.ev.Proof, ev.Proof)
	if ev.QName != s.ev.QName || ev.File != s.ev.File {
		s.ev.QName, s.ev.File = "", ""
	}
	name := ev.QName
	if name == "" {
		name = ev.File
	}
	s.names.add(maphash.String(w.seed, name))
}

// aggregate folds a sighting that gets no host line into its network's
// line; the caller holds w.mu.
func (w *Writer) aggregate(ev *Event, n uint64, now time.Time) {
	ak := aggKey{kind: ev.Kind, sig: ev.Sig, evidence: ev.Evidence, net: NetworkOf(ev.Host)}
	s, ok := w.aggs[ak]
	if !ok && len(w.aggs) >= w.maxAgg {
		ak.net = wholeFamily(ev.Host)
		s, ok = w.aggs[ak]
		if !ok && len(w.aggs) >= 2*w.maxAgg {
			// Every table is full. Count what cannot be attributed; the
			// flush writes it as an evidence_overflow service line.
			w.overflow += n
			w.overflowN.Add(n)
			return
		}
	}
	w.aggregatedN.Add(n)
	if ok {
		s.add(ev.Time, n)
		s.ev.Proof = max(s.ev.Proof, ev.Proof) // a network line carries the best proof it folds
		return
	}
	w.seq++
	w.aggs[ak] = &slot{ev: Event{Time: ev.Time, Kind: ev.Kind, Sig: ev.Sig, Family: ev.Family, Evidence: ev.Evidence, Serial: ev.Serial, Proof: ev.Proof},
		last: ev.Time, born: now, count: n, seq: w.seq, net: ak.net}
}

// roundTrip reports whether a sighting's proof needed the host to answer
// wormsink (tcp, exchange): what a forger cannot produce in bulk.
// trusted-source is not one: it rests on the operator's word, not on an
// answer. Nor is a dns_lookup's: its proof is what a resolver reports of
// its own transport, and whoever may stream dnstap could report a
// million hosts.
func roundTrip(ev *Event) bool { return ev.Proof >= ProofExchange && ev.Kind != DNSLookup }

func (s *slot) add(t time.Time, n uint64) {
	s.count += n
	if t.After(s.last) {
		s.last = t
	}
	if t.Before(s.ev.Time) {
		s.ev.Time = t
	}
}

func (w *Writer) run() {
	defer close(w.done)
	tick := w.window / 4
	if tick < 10*time.Millisecond {
		tick = 10 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case now := <-t.C:
			w.flush(now, false)
		}
	}
}

// flushByEventClock is run's ticker for an EventClock writer: every quarter
// window of sighting time, it writes the lines opened a window before (an
// aggregate window for network lines).
func (w *Writer) flushByEventClock() {
	tick := max(w.window/4, 10*time.Millisecond)
	w.mu.Lock()
	clock, due := w.clock, w.clock.Sub(w.flushedAt) >= tick
	if due {
		w.flushedAt = clock
	}
	w.mu.Unlock()
	if due {
		w.flush(clock, false)
	}
}

// Flush writes every pending sighting now.
func (w *Writer) Flush() error {
	return w.flush(time.Time{}, true)
}

// Close flushes everything and stops the background writer. Sightings
// recorded after Close are still written, by a later Flush.
func (w *Writer) Close() error {
	w.mu.Lock()
	already := w.closed
	w.closed = true
	w.mu.Unlock()
	if !already {
		close(w.stop)
		<-w.done
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return w.out.firstErr()
}

// flush writes the host lines opened a window before now and the network
// lines opened an aggregate window before now (all of them when all).
func (w *Writer) flush(now time.Time, all bool) error {
	cutoff, aggCutoff := now.Add(-w.window), now.Add(-w.aggWindow)
	w.writeMu.Lock()
	defer w.writeMu.Unlock()
	w.mu.Lock()
	batch := w.ready
	w.ready = nil
	for k, s := range w.pending {
		if all || s.born.Before(cutoff) {
			batch = append(batch, s)
			delete(w.pending, k)
		}
	}
	for k, s := range w.coarse {
		if all || s.born.Before(cutoff) {
			batch = append(batch, s)
			delete(w.coarse, k)
		}
	}
	switch {
	case all:
		clear(w.opened)
		w.quotaAt = now
	case w.quotaAt.IsZero():
		w.quotaAt = now // the first flush starts the first period
	case w.quotaAt.Before(aggCutoff):
		clear(w.opened)
		w.quotaAt = now
	}
	for k, s := range w.aggs {
		if all || s.born.Before(aggCutoff) {
			batch = append(batch, s)
			delete(w.aggs, k)
		}
	}
	overflow := w.overflow
	w.overflow = 0
	w.mu.Unlock()
	if overflow > 0 {
		w.svc.Warn().Str(FieldEvent.Name(), "evidence_overflow").Uint64(FieldCount.Name(), overflow).
			Msg("evidence tables full: sightings counted without their hosts")
	}
	if len(batch) == 0 {
		return nil
	}
	sort.Slice(batch, func(i, j int) bool {
		a, b := batch[i], batch[j]
		if !a.ev.Time.Equal(b.ev.Time) {
			return a.ev.Time.Before(b.ev.Time)
		}
		return a.seq < b.seq
	})
	w.out.mu.Lock()
	defer w.out.mu.Unlock()
	for _, s := range batch {
		w.write(s)
	}
	if err := w.out.flush(); err != nil {
		w.errs.Add(1)
		return err
	}
	w.lines.Add(uint64(len(batch)))
	return nil
}

// write emits one line; the caller holds w.out.mu, so the logger writes
// through w.out.w directly. Keys come from the field table (fields.go);
// every string someone outside chose goes through text, the one escaping
// path: zerolog would otherwise turn bytes that are not UTF-8 into U+FFFD,
// and two different names would log the same.
func (w *Writer) write(s *slot) {
	ev := &s.ev
	l := zerolog.New(w.out.w)
	e := l.Log()
	str(e, FieldTime, ev.Time.UTC().Format(TimeFormat))
	str(e, FieldEvent, string(ev.Kind))
	if s.net.IsValid() {
		// A network line: sightings the line budget could not give a
		// host line of their own. It names no host.
		str(e, FieldNetwork, s.net.String())
	} else {
		str(e, FieldHost, ev.Host.String())
		e.Uint16(FieldPort.Name(), ev.Port)
		if a := w.attr.Load(); a != nil {
			attribute(e, (*a).Attribute(ev.Host, ev.Port, ev.Time))
		}
	}
	text(e, FieldSignature, ev.Sig, 0)
	text(e, FieldFamily, ev.Family, 0)
	str(e, FieldEvidence, ev.Evidence.String())
	str(e, FieldProof, ev.Proof.String())
	e.Uint64(FieldCount.Name(), s.count)
	if s.count > 1 && s.last.After(ev.Time) {
		str(e, FieldLast, s.last.UTC().Format(TimeFormat))
	}
	if s.names != nil {
		// A summary line: the host's sightings past its detailed lines.
		e.Uint64(FieldNames.Name(), s.names.estimate())
	}
	str(e, FieldSensor, w.sensor) // escaped and cut once, by NewWriter
	e.Uint64(FieldSerial.Name(), ev.Serial)
	if s.net.IsValid() {
		e.Send()
		return
	}
	switch ev.Kind {
	case DNSSinkhole, DNSLookup:
		text(e, FieldQName, ev.QName, ev.qnameLen)
		text(e, FieldQType, ev.QType, 0)
		text(e, FieldTransport, ev.Transport, 0)
		if ev.Rule != "" {
			text(e, FieldRule, ev.Rule, 0)
		}
		if ev.Kind == DNSLookup {
			text(e, FieldResolver, ev.Resolver, ev.resolverLen)
		}
	case TFTPRefused, TFTPRequest:
		text(e, FieldFile, ev.File, ev.fileLen)
		text(e, FieldMode, ev.Mode, ev.modeLen)
		text(e, FieldOp, ev.Op, 0)
		if ev.Srv.IsValid() {
			str(e, FieldServer, ev.Srv.String())
		}
		// The transparent interceptor's lines.
		if ev.Intercepted {
			e.Bool(FieldIntercepted.Name(), true)
			if ev.Role != "" {
				text(e, FieldRole, ev.Role, 0)
				str(e, FieldPeer, ev.Peer.String())
			}
		}
		if ev.Passed {
			e.Bool(FieldPassed.Name(), true)
		}
	case WireMatch:
		str(e, FieldPeer, ev.Peer.String())
		text(e, FieldRole, ev.Role, 0)
		text(e, FieldProto, ev.Proto, 0)
		e.Uint16(FieldDstPort.Name(), ev.DstPort)
		if ev.File != "" {
			text(e, FieldFile, ev.File, ev.fileLen)
			text(e, FieldMode, ev.Mode, ev.modeLen)
			text(e, FieldOp, ev.Op, 0)
		}
		if ev.PCAP != "" {
			text(e, FieldPCAP, ev.PCAP, 0)
			e.Uint64(FieldPacket.Name(), ev.Packet)
		}
	}
	e.Send()
}

// str writes a value the program made (a time, an address, a name from a
// fixed set): nothing in it needs escaping.
func str(e *zerolog.Event, f Field, v string) { e.Str(fieldTable[f].Name, v) }

// text writes a value someone outside chose: escaped (see Escape) and cut
// to MaxStringLen bytes as written. When the field has a length companion
// and the value was cut (here, or before folding: origLen), the companion
// records its length in bytes as received.
func text(e *zerolog.Event, f Field, v string, origLen int32) {
	spec := &fieldTable[f]
	out, cut := escapeCut(v, MaxStringLen)
	e.Str(spec.Name, out)
	if spec.Len == FieldNone {
		return
	}
	if origLen > 0 {
		e.Int(fieldTable[spec.Len].Name, int(origLen))
	} else if cut {
		e.Int(fieldTable[spec.Len].Name, len(v))
	}
}

// syncWriter serialises evidence batches and service lines on one buffer.
type syncWriter struct {
	mu    sync.Mutex
	w     *bufio.Writer
	dst   io.Writer
	first error // the first write error, for Close
}

// flush writes the buffer out; the caller holds mu. bufio keeps its first
// error forever, so after a failure (a full disk, a broken pipe) the buffer
// is reset: what was in it is lost and counted, and later lines are
// written again once the output recovers.
func (s *syncWriter) flush() error {
	err := s.w.Flush()
	if err != nil {
		s.w.Reset(s.dst)
		if s.first == nil {
			s.first = err
		}
	}
	return err
}

func (s *syncWriter) firstErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first
}

type flushingWriter struct{ s *syncWriter }

func (f flushingWriter) Write(p []byte) (int, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	n, err := f.s.w.Write(p)
	if ferr := f.s.flush(); err == nil {
		err = ferr
	}
	return n, err
}

// timeHook stamps service lines in the evidence time format without
// touching zerolog's global settings.
type timeHook struct{}

func (timeHook) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	str(e, FieldTime, time.Now().UTC().Format(TimeFormat))
}
