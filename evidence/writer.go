package evidence

import (
	"bufio"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// TimeFormat is how every time in the log is written: UTC, RFC 3339 with
// milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Defaults for Config.
const (
	DefaultWindow     = time.Second
	DefaultMaxPending = 1 << 16
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

	mu       sync.Mutex
	pending  map[key]*slot
	coarse   map[key]*slot
	ready    []*slot // slots taken out of the table, waiting to be written
	overflow uint64  // sightings no table had room for
	seq      uint64  // slots opened so far
	closed   bool

	eventClock bool
	clock      time.Time // EventClock: the latest sighting time so far
	flushedAt  time.Time // EventClock: clock at the last flush

	writeMu sync.Mutex // one batch at a time, in order

	stop chan struct{}
	done chan struct{}

	sightings, lines, coarseN, overflowN, errs atomic.Uint64
}

type slot struct {
	ev    Event
	last  time.Time
	born  time.Time // wall clock (or the event clock) when the slot opened
	count uint64
	seq   uint64 // order of opening, so equal times keep the order recorded
}

// NewWriter starts a Writer on out. Close it to flush.
func NewWriter(out io.Writer, cfg Config) *Writer {
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	sw := &syncWriter{w: bufio.NewWriterSize(out, 64<<10), dst: out}
	w := &Writer{
		out:     sw,
		sensor:  cfg.Sensor,
		window:  cfg.Window,
		max:     cfg.MaxPending,
		pending: make(map[key]*slot),
		coarse:  make(map[key]*slot),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),

		eventClock: cfg.EventClock,
	}
	// Service lines are rare and must be seen at once: they flush.
	w.svc = zerolog.New(flushingWriter{sw}).Hook(timeHook{}).With().Str("sensor", cfg.Sensor).Logger()
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
	return Stats{Sightings: w.sightings.Load(), Lines: w.lines.Load(), Coarse: w.coarseN.Load(), Overflow: w.overflowN.Load(), Errors: w.errs.Load()}
}

// Record folds one sighting into the log. It is safe for concurrent use and
// costs no allocation when the sighting repeats one already pending.
func (w *Writer) Record(ev Event) {
	n := ev.Count
	if n == 0 {
		n = 1
	}
	w.sightings.Add(n)
	now := time.Now()
	if ev.Time.IsZero() {
		ev.Time = now
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
	if w.closed || len(w.pending) >= w.max {
		ck := ev.coarse()
		if s, ok := w.coarse[ck]; ok {
			w.coarseN.Add(n)
			s.add(ev.Time, n)
			return
		}
		if len(w.coarse) >= w.max {
			// Both tables are full: the writer is far behind a flood of
			// distinct hosts. Count what cannot be attributed; the flush
			// writes it as an evidence_overflow service line.
			w.overflow += n
			w.overflowN.Add(n)
			return
		}
		w.coarseN.Add(n)
		c := Event{Time: ev.Time, Kind: ev.Kind, Host: ev.Host, Sig: ev.Sig, Family: ev.Family, Evidence: ev.Evidence, Serial: ev.Serial}
		w.seq++
		w.coarse[ck] = &slot{ev: c, last: ev.Time, born: now, count: n, seq: w.seq}
		return
	}
	w.seq++
	w.pending[k] = &slot{ev: ev, last: ev.Time, born: now, count: n, seq: w.seq}
}

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
			w.flush(now.Add(-w.window), false)
		}
	}
}

// flushByEventClock is run's ticker for an EventClock writer: every quarter
// window of sighting time, it writes the slots opened a window before.
func (w *Writer) flushByEventClock() {
	tick := max(w.window/4, 10*time.Millisecond)
	w.mu.Lock()
	clock, due := w.clock, w.clock.Sub(w.flushedAt) >= tick
	if due {
		w.flushedAt = clock
	}
	w.mu.Unlock()
	if due {
		w.flush(clock.Add(-w.window), false)
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

// flush writes the slots opened before cutoff (all of them when all).
func (w *Writer) flush(cutoff time.Time, all bool) error {
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
	overflow := w.overflow
	w.overflow = 0
	w.mu.Unlock()
	if overflow > 0 {
		w.svc.Warn().Str("event", "evidence_overflow").Uint64("count", overflow).
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
// through w.out.w directly.
func (w *Writer) write(s *slot) {
	ev := &s.ev
	l := zerolog.New(w.out.w)
	e := l.Log().
		Str("time", ev.Time.UTC().Format(TimeFormat)).
		Str("event", string(ev.Kind)).
		Str("host", ev.Host.String()).
		Uint16("port", ev.Port).
		Str("signature", ev.Sig).
		Str("family", ev.Family).
		Str("evidence", ev.Evidence.String()).
		Uint64("count", s.count)
	if s.count > 1 && s.last.After(ev.Time) {
		e.Str("last", s.last.UTC().Format(TimeFormat))
	}
	e.Str("sensor", w.sensor).Uint64("serial", ev.Serial)
	switch ev.Kind {
	case DNSSinkhole:
		e.Str("qname", ev.QName).Str("qtype", ev.QType).Str("transport", ev.Transport)
		if ev.Rule != "" {
			e.Str("rule", ev.Rule)
		}
	case TFTPRefused, TFTPRequest:
		e.Str("file", ev.File).Str("mode", ev.Mode).Str("op", ev.Op)
		if ev.Srv.IsValid() {
			e.Str("server", ev.Srv.String())
		}
	case WireMatch:
		e.Str("peer", ev.Peer.String()).Str("role", ev.Role).Str("proto", ev.Proto).Uint16("dst_port", ev.DstPort)
		if ev.File != "" {
			e.Str("file", ev.File).Str("mode", ev.Mode).Str("op", ev.Op)
		}
		if ev.PCAP != "" {
			e.Str("pcap", ev.PCAP).Uint64("packet", ev.Packet)
		}
	}
	e.Send()
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
	e.Str("time", time.Now().UTC().Format(TimeFormat))
}
