package attribution

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"wormsink/store"
)

// Defaults for Config.
const (
	// DefaultRetention is how long sessions and bindings are kept after
	// they end: long enough for complaints that arrive months later, never
	// unbounded (data-retention law is the ISP's to apply).
	DefaultRetention = 180 * 24 * time.Hour
	// DefaultSessionTimeout ends a session whose Stop was lost this long
	// after its last Start or Interim-Update.
	DefaultSessionTimeout = 24 * time.Hour
	// DefaultNATTimeout ends a NAT binding or port block whose release was
	// lost this long after its last event (allocation or interim re-send).
	DefaultNATTimeout = 24 * time.Hour
	// DefaultPruneInterval is how often expired rows are deleted.
	DefaultPruneInterval = time.Hour
	// DefaultPoll is how often the index reads what other processes
	// sharing the store (another sensor, an import) stored: a second, as
	// long as a sighting usually waits for its evidence line anyway.
	DefaultPoll = time.Second
)

// ErrClosed is returned for records offered after the Attributor stopped.
var ErrClosed = errors.New("attribution: closed")

// ErrServerClosed is what the RADIUS server's and the IPFIX collector's
// Serve return once stopped, as net/http's.
var ErrServerClosed = errors.New("attribution: server closed")

// Config configures an Attributor. Only DB is required.
type Config struct {
	DB *store.DB
	// Retention: rows that ended longer ago are deleted, every
	// PruneInterval. 0 means DefaultRetention.
	Retention     time.Duration
	PruneInterval time.Duration // 0 means DefaultPruneInterval
	// BatchDelay is how long the writer gathers records into one
	// transaction; 0 means DefaultBatchDelay.
	BatchDelay time.Duration
	// Poll is how often sessions and bindings other processes stored
	// since the last look are read into the index; 0 means DefaultPoll.
	// Only rows changed since then are read, and one cheap query finds
	// that nothing changed.
	Poll time.Duration
	// SessionTimeout, NATTimeout: 0 means the defaults.
	SessionTimeout time.Duration
	NATTimeout     time.Duration
	Subscribers    *Subscribers   // static CIDR → subscriber, behind sessions; may be nil
	Deterministic  *Deterministic // RFC 7422 rules; may be nil
	Log            zerolog.Logger
	// Now is the clock for retention; nil means time.Now.
	Now func() time.Time
	// OnStart, when set, is told of every accounting Start once it is
	// committed: the subscriber and the addresses the session gave them
	// (Framed-IP-Address, and Framed-IPv6-Prefix when it is a /128). It is
	// how a quarantine follows a subscriber to a new address. Starts other
	// processes sharing the store took in are told too, once a poll reads
	// them, if their session is still open. It is called from the writer
	// goroutine in the order of the Starts, so it must not block for long;
	// nil calls nothing.
	OnStart func(subscriber string, addrs []netip.Addr)
}

// Stats counts what the Attributor took in.
type Stats struct {
	AcctRecords, NATEvents, NATUnmatched, Batches, Errors uint64
	// Polls counts the looks for other processes' writes, Polled the
	// sessions and bindings they read, PollErrors the looks that failed
	// (retried at the next).
	Polls, Polled, PollErrors uint64
}

// Attributor keeps sessions and NAT bindings in the store and in an index
// in front of it, and attributes sightings. One goroutine (Serve) writes:
// records are batched into one transaction, and a record's caller learns
// it is stored only after the commit, when the index holds it too.
type Attributor struct {
	cfg   Config
	idx   *Index
	ops   chan *op
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	stats struct {
		acct, nat, unmatched, batches, errors, polls, polled, pollErrors atomic.Uint64
	}
	// writer tells this Attributor's rows from other processes'; seen is
	// the clock number up to which every row is in the index (Serve's
	// goroutine alone reads and writes it).
	writer int64
	seen   int64
	others bool       // another process wrote to the store since this one started
	stmts  *stmtCache // the writer's statements, prepared (Serve's goroutine)
	// wtx runs the writer's transactions: on SQLite a connection of its
	// own (writerSetup), else the pool.
	wtx  txRunner
	conn *store.Conn // the writer's own connection (Serve's), nil on PostgreSQL
}

// advance notes this Attributor's own write numbered seq: the mark moves
// on when nobody else wrote in between, else the next poll reads the gap.
func (a *Attributor) advance(seq int64) {
	if seq == a.seen+1 {
		a.seen = seq
	} else {
		a.others = true
	}
}

type op struct {
	acct  *AcctEvent
	accts []AcctEvent // a batch of accounting records with one waiter
	nat   NATEvent
	sync  bool       // only waits for what came before it
	done  chan error // nil: nobody waits
}

// maxBatch bounds the records of one transaction.
const maxBatch = 2048

// enoughWaiting is how many records waited for (RADIUS requests whose
// answers wait for the commit) end the batch's gathering before
// BatchDelay: a burst is not held back, and a transaction of this many
// shares its cost well enough.
const enoughWaiting = 512

// DefaultBatchDelay is how long the writer waits for more records before
// it commits a batch. A RADIUS answer comes up to this much later (a NAS
// waits seconds before it retransmits), and RADIUS at a thousand requests
// a second costs ten transactions a second instead of a thousand. On
// SQLite each transaction writes every page it changed to the WAL, one
// system call a page, and the Go runtime pays a thread switch for many of
// those calls: CPU the DNS shim in the same process would otherwise have
// had. A hundred rows to a transaction share most of those pages (serve's
// CPU per RADIUS request alone at 1,000/s, in interleaved runs on the
// 2-core test machine: median 55 µs with 100 ms, 90 µs with 20 ms).
const DefaultBatchDelay = 100 * time.Millisecond

// New migrates the store and loads the index from it.
func New(ctx context.Context, cfg Config) (*Attributor, error) {
	if cfg.DB == nil {
		return nil, errors.New("attribution: no store")
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.PruneInterval <= 0 {
		cfg.PruneInterval = DefaultPruneInterval
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = DefaultSessionTimeout
	}
	if cfg.NATTimeout <= 0 {
		cfg.NATTimeout = DefaultNATTimeout
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.BatchDelay <= 0 {
		cfg.BatchDelay = DefaultBatchDelay
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.DB.Migrate(ctx, "attribution", migrations); err != nil {
		return nil, fmt.Errorf("attribution: migrate: %w", err)
	}
	a := &Attributor{
		cfg:  cfg,
		idx:  NewIndex(cfg.SessionTimeout, cfg.NATTimeout),
		ops:  make(chan *op, 4*maxBatch),
		stop: make(chan struct{}),
		done: make(chan struct{}),
		// Positive and never 0, the stamp of rows written before
		// version 6 of the schema.
		writer: rand.Int64N(math.MaxInt64-1) + 1,
	}
	a.stmts, a.wtx = newStmtCache(cfg.DB), cfg.DB
	a.idx.static = cfg.Subscribers
	a.idx.det = cfg.Deterministic
	// The clock is read before the load: what commits while the load
	// runs is read again by the first poll (applying a row twice is
	// harmless), never missed.
	seen, err := clock(ctx, cfg.DB)
	if err != nil {
		return nil, fmt.Errorf("attribution: clock: %w", err)
	}
	a.seen = seen
	if err := load(ctx, cfg.DB, a.idx, cfg.Now().Add(-cfg.Retention).UnixMilli()); err != nil {
		return nil, err
	}
	return a, nil
}

// Index returns the index the Attributor keeps.
func (a *Attributor) Index() *Index { return a.idx }

// Lookup attributes a sighting of addr and port (0: none) at t, from the
// index; it allocates nothing.
func (a *Attributor) Lookup(addr netip.Addr, port uint16, t time.Time) Result {
	return a.idx.Lookup(addr, port, t)
}

// Stats returns the counters.
func (a *Attributor) Stats() Stats {
	return Stats{AcctRecords: a.stats.acct.Load(), NATEvents: a.stats.nat.Load(), NATUnmatched: a.stats.unmatched.Load(),
		Batches: a.stats.batches.Load(), Errors: a.stats.errors.Load(),
		Polls: a.stats.polls.Load(), Polled: a.stats.polled.Load(), PollErrors: a.stats.pollErrors.Load()}
}

// Account stores one accounting record and returns once it is committed
// (a RADIUS server answers only then).
func (a *Attributor) Account(ctx context.Context, ev AcctEvent) error {
	o := &op{acct: &ev, done: make(chan error, 1)}
	return a.submit(ctx, o, true)
}

// QueueAccount queues one accounting record without waiting for it to be
// committed, as an import does (Sync then waits for all of them); it
// blocks while the queue is full.
func (a *Attributor) QueueAccount(ctx context.Context, ev AcctEvent) error {
	return a.submit(ctx, &op{acct: &ev}, false)
}

// NAT queues one NAT event; it blocks while the queue is full. Sync waits
// until everything queued before it is committed.
func (a *Attributor) NAT(ctx context.Context, ev NATEvent) error {
	return a.submit(ctx, &op{nat: ev}, false)
}

// Sync returns once every record queued before it is committed, with the
// first error of the batches it waited on.
func (a *Attributor) Sync(ctx context.Context) error {
	return a.submit(ctx, &op{sync: true, done: make(chan error, 1)}, true)
}

// Commit is a batch of accounting records queued by AccountBatch.
type Commit struct {
	a *Attributor
	o *op
}

// AccountBatch queues accounting records to be stored in one transaction
// (with whatever else the writer gathers) and returns once they are
// queued; Wait on the Commit returns once they are committed. evs must not
// change until then. It is how the RADIUS server hands over all it read
// at once: one queue operation and one wake-up for the lot instead of
// one each.
func (a *Attributor) AccountBatch(ctx context.Context, evs []AcctEvent) (Commit, error) {
	o := &op{accts: evs, done: make(chan error, 1)}
	if err := a.enqueue(ctx, o); err != nil {
		return Commit{}, err
	}
	return Commit{a, o}, nil
}

// Wait returns once the batch is committed, with the commit's error.
func (c Commit) Wait(ctx context.Context) error { return c.a.wait(ctx, c.o) }

func (a *Attributor) enqueue(ctx context.Context, o *op) error {
	select {
	case a.ops <- o:
		return nil
	case <-a.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *Attributor) submit(ctx context.Context, o *op, wait bool) error {
	if err := a.enqueue(ctx, o); err != nil || !wait {
		return err
	}
	return a.wait(ctx, o)
}

func (a *Attributor) wait(ctx context.Context, o *op) error {
	select {
	case err := <-o.done:
		return err
	case <-a.done:
		// Serve ended; the batch may still have answered.
		select {
		case err := <-o.done:
			return err
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Serve writes queued records until ctx ends, then writes what is still
// queued, and deletes expired rows every PruneInterval.
func (a *Attributor) Serve(ctx context.Context) error {
	defer close(a.done)
	if a.cfg.DB.Dialect() == store.SQLite {
		// The writer keeps a connection of its own (writerSetup). A
		// PostgreSQL connection may end (a server restart), and the pool
		// replaces it; SQLite's are an open file.
		// Taken even when ctx has already ended: what is queued is written.
		c, err := a.cfg.DB.Conn(context.WithoutCancel(ctx), writerSetup...)
		if err != nil {
			// The pool's connections work too, only less cheaply.
			a.cfg.Log.Error().Str("event", "attribution_writer_conn_failed").Str("error", err.Error()).Msg("attribution writer shares the pool")
			c = nil
		}
		// The statements stay prepared on the pool (a statement prepared
		// on the Conn would be prepared again in every transaction):
		// database/sql prepares each once on this connection.
		if c != nil {
			a.conn, a.wtx = c, c
		}
	}
	defer func() {
		a.stmts.close()
		if a.conn != nil {
			a.conn.Close()
		}
	}()
	tick := time.NewTicker(a.cfg.PruneInterval)
	defer tick.Stop()
	poll := time.NewTicker(a.cfg.Poll)
	defer poll.Stop()
	a.prune(ctx)
	batch := make([]*op, 0, maxBatch)
	gather := time.NewTimer(a.cfg.BatchDelay)
	gather.Stop()
	for {
		select {
		case o := <-a.ops:
			batch = append(batch[:0], o)
			// Group commit: records arriving a little apart (RADIUS at a
			// thousand a second) share one transaction instead of paying
			// for one each, which would take CPU from the rest of serve.
			gather.Reset(a.cfg.BatchDelay)
			// Callers waiting for the commit (RADIUS answers) end the wait
			// early once enough of them share it: a burst is not held back,
			// and the transaction's cost is shared anyway.
			waiting := o.waiters()
		drain:
			for len(batch) < maxBatch && waiting < enoughWaiting {
				select {
				case o := <-a.ops:
					batch = append(batch, o)
					waiting += o.waiters()
				case <-gather.C:
					break drain
				case <-ctx.Done():
					break drain
				}
			}
			gather.Stop()
			a.write(ctx, batch)
		case <-tick.C:
			a.prune(ctx)
		case <-poll.C:
			a.poll(ctx)
		case <-ctx.Done():
			a.once.Do(func() { close(a.stop) })
			// Whatever was queued before the stop is still written.
			for {
				batch = batch[:0]
				for len(batch) < maxBatch {
					select {
					case o := <-a.ops:
						batch = append(batch, o)
						continue
					default:
					}
					break
				}
				if len(batch) == 0 {
					return nil
				}
				a.write(context.WithoutCancel(ctx), batch)
			}
		}
	}
}

// lastSlack is how far (ms) an Interim-Update may move a session's last
// time before it is written (applyAccounting): a sixteenth of the session
// timeout, an hour and a half by default, while NASes send one every few
// minutes.
func (a *Attributor) lastSlack() int64 { return a.cfg.SessionTimeout.Milliseconds() / 16 }

// waiters is how many records of o are waited for: a batch counts for
// every record in it, so that a full one is not held back, and a Sync
// (an import's end) ends the gathering at once: it waits for nothing
// that comes after it.
func (o *op) waiters() int {
	switch {
	case o.done == nil:
		return 0
	case o.sync:
		return enoughWaiting
	case o.accts != nil:
		return len(o.accts)
	}
	return 1
}

type bkey struct {
	pub, in netip.Addr
	lo, hi  uint16
	inPort  uint16
}

func keyOf(b *Binding) bkey { return bkey{b.Public, b.Inside, b.PortLo, b.PortHi, b.InsidePort} }

// write commits one batch and then applies it to the index.
func (a *Attributor) write(ctx context.Context, batch []*op) {
	var sessions []Session
	var bindings []Binding
	var upserts []Binding
	pending := map[bkey]int{} // the latest upsert of a binding key in this batch
	var touches []touch
	var touchOps []*op
	var accts []*AcctEvent
	var err error
	var st stamp
	{
		// store.Tx itself retries a transaction the database refused as busy.
		err = a.wtx.Tx(ctx, func(stx *store.Tx) error {
			tx := preparedTx{stx, a.stmts}
			// A retried transaction starts afresh.
			sessions, bindings, upserts, touches, touchOps, accts = sessions[:0], bindings[:0], upserts[:0], touches[:0], touchOps[:0], accts[:0]
			clear(pending)
			var err error
			if st, err = nextStamp(ctx, tx, a.writer); err != nil {
				return fmt.Errorf("attribution: clock: %w", err)
			}
			for _, o := range batch {
				if o.acct != nil {
					accts = append(accts, o.acct)
					continue
				}
				if o.accts != nil {
					for i := range o.accts {
						accts = append(accts, &o.accts[i])
					}
					continue
				}
				if o.sync {
					continue
				}
				b := o.nat.Binding
				k := keyOf(&b)
				if o.nat.Kind == NATOpen {
					if i, ok := pending[k]; ok && upserts[i].Start.Equal(b.Start) {
						continue // a repeat
					}
					pending[k] = len(upserts)
					upserts = append(upserts, b)
					continue
				}
				// A close or an interim names an open binding: one opened in
				// this batch, else one in the store.
				if i, ok := pending[k]; ok && upserts[i].End.IsZero() &&
					(b.Start.IsZero() || absMS(ms(b.Start)-ms(upserts[i].Start)) <= startSlack) {
					u := &upserts[i]
					if o.nat.At.After(u.Last) {
						u.Last = o.nat.At
					}
					if o.nat.Kind == NATClose {
						u.End = o.nat.At
					}
					continue
				}
				touches = append(touches, touchOf(&o.nat))
				touchOps = append(touchOps, o)
			}
			ss, err := applyAccounting(ctx, tx, st, accts, a.lastSlack())
			if err != nil {
				return fmt.Errorf("attribution: accounting: %w", err)
			}
			sessions = append(sessions, ss...)
			// The touches go first: an open after a close of the same key in
			// this batch is a new binding.
			got, err := touchBindings(ctx, tx, tx.Dialect() == store.Postgres, st, touches)
			if err != nil {
				return fmt.Errorf("attribution: nat: %w", err)
			}
			bindings = append(bindings, got...)
			matched := make(map[bkey][]int64, len(got))
			for i := range got {
				k := keyOf(&got[i])
				matched[k] = append(matched[k], ms(got[i].Start))
			}
			for i, t := range touches {
				o := touchOps[i]
				if starts, ok := matched[keyOf(t.b)]; ok && anyIn(starts, t.lo, t.hi) {
					continue
				}
				b := o.nat.Binding
				switch {
				case o.nat.Kind == NATInterim:
					// An interim re-send for a block whose allocation was
					// lost: it was allocated at least since then.
					b.Start, b.Last = o.nat.At, o.nat.At
				case !b.Start.IsZero():
					// A DESTROY whose NEW was lost still carries the start.
					b.Last, b.End = o.nat.At, o.nat.At
				default:
					a.stats.unmatched.Add(1)
					continue
				}
				upserts = append(upserts, b)
			}
			if err := upsertBindings(ctx, tx, st, upserts); err != nil {
				return fmt.Errorf("attribution: nat: %w", err)
			}
			return nil
		})
	}
	if err != nil {
		a.stats.errors.Add(1)
		a.cfg.Log.Error().Str("event", "attribution_write_failed").Str("error", err.Error()).Int("records", len(batch)).Msg("attribution records not stored")
	} else {
		a.stats.batches.Add(1)
		a.advance(st.seq)
		a.idx.mu.Lock()
		for i := range sessions {
			a.idx.putSessionLocked(&sessions[i])
		}
		for i := range upserts {
			a.idx.putNATLocked(&upserts[i])
		}
		for i := range bindings {
			a.idx.putNATLocked(&bindings[i])
		}
		a.idx.mu.Unlock()
		if a.cfg.OnStart != nil {
			for _, ev := range accts {
				if ev.Status == AcctStart {
					if addrs := sessionAddrs(&ev.Session); ev.Session.Subscriber != "" && len(addrs) > 0 {
						a.cfg.OnStart(ev.Session.Subscriber, addrs)
					}
				}
			}
		}
	}
	for _, o := range batch {
		switch {
		case o.accts != nil:
			a.stats.acct.Add(uint64(len(o.accts)))
		case o.acct != nil:
			a.stats.acct.Add(1)
		case !o.sync:
			a.stats.nat.Add(1)
		}
		if o.done != nil {
			o.done <- err
		}
	}
}

// sessionAddrs lists the single addresses a session gives its subscriber.
func sessionAddrs(s *Session) []netip.Addr {
	var out []netip.Addr
	if s.Framed.IsValid() {
		out = append(out, s.Framed.Unmap())
	}
	if s.FramedV6.IsValid() && s.FramedV6.Bits() == 128 {
		out = append(out, s.FramedV6.Addr())
	}
	return out
}

func anyIn(vs []int64, lo, hi int64) bool {
	for _, v := range vs {
		if lo <= v && v <= hi {
			return true
		}
	}
	return false
}

func absMS(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// pollChunk bounds the rows applied to the index under one hold of its
// lock, so that a burst of another sensor's writes does not stall look-ups.
const pollChunk = 1024

// poll reads into the index the sessions and bindings other processes
// stored or changed since the last look.
func (a *Attributor) poll(ctx context.Context) {
	now, err := clock(ctx, a.cfg.DB)
	if err == nil && now > a.seen {
		a.others = true
		var ss []Session
		var bs []Binding
		ss, bs, err = changedSince(ctx, a.cfg.DB, a.seen, now, a.writer)
		if err == nil {
			a.putPolledSessions(ss)
			putPolled(a, bs, a.idx.putNATLocked)
			a.seen = now
		}
	}
	a.stats.polls.Add(1)
	if err != nil && ctx.Err() == nil {
		a.stats.pollErrors.Add(1)
		a.cfg.Log.Error().Str("event", "attribution_poll_failed").Str("error", err.Error()).Msg("other processes' bindings not read")
	}
}

// prune deletes what ended before the retention and drops it from memory.
func (a *Attributor) prune(ctx context.Context) {
	cutoff := a.cfg.Now().Add(-a.cfg.Retention).UnixMilli()
	var s, n int64
	var st stamp
	// The deletion takes a clock number like any write, so that the other
	// processes sharing the store learn that someone pruned.
	err := a.cfg.DB.Tx(ctx, func(tx *store.Tx) error {
		var err error
		if st, err = nextStamp(ctx, tx, a.writer); err != nil {
			return fmt.Errorf("attribution: clock: %w", err)
		}
		s, n, err = prune(ctx, tx, cutoff, a.cfg.SessionTimeout.Milliseconds(), a.cfg.NATTimeout.Milliseconds())
		return err
	})
	if err == nil {
		a.advance(st.seq)
	}
	if err != nil {
		a.cfg.Log.Error().Str("event", "attribution_retention_failed").Str("error", err.Error()).Msg("expired bindings not deleted")
		return
	}
	// Another process sharing the store may have deleted the expired rows
	// first: once others are known to write, the index is compacted at
	// every prune, not only when this one's DELETE found rows.
	if s == 0 && n == 0 && !a.others {
		return
	}
	a.idx.compact(cutoff)
	a.cfg.Log.Info().Str("event", "attribution_retention").Int64("sessions", s).Int64("bindings", n).Msg("expired sessions and bindings deleted")
}

// putPolledSessions puts sessions other processes stored into the index,
// as putPolled, and tells OnStart of each it did not hold that is still
// open: a Start another sensor sharing the store took in, so that a
// quarantine follows the subscriber to the new address here too, as it
// does for the Starts this one receives. A session already stopped, or
// silent for longer than SessionTimeout (an import of old records), names
// no address its subscriber holds now.
func (a *Attributor) putPolledSessions(ss []Session) {
	var started []*Session
	now := a.cfg.Now()
	for i := 0; i < len(ss); {
		n := min(len(ss)-i, pollChunk)
		a.idx.mu.Lock()
		for j := i; j < i+n; j++ {
			s := &ss[j]
			if a.idx.putSessionLocked(s) && a.cfg.OnStart != nil && s.Stop.IsZero() && s.Subscriber != "" &&
				now.Sub(s.Last) < a.cfg.SessionTimeout {
				started = append(started, s)
			}
		}
		a.idx.mu.Unlock()
		a.stats.polled.Add(uint64(n))
		i += n
	}
	for _, s := range started {
		if addrs := sessionAddrs(s); len(addrs) > 0 {
			a.cfg.OnStart(s.Subscriber, addrs)
		}
	}
}

// putPolled puts rows another process stored into the index, pollChunk
// at a time, so look-ups never wait behind a whole poll.
func putPolled[T any](a *Attributor, rows []T, put func(*T)) {
	for len(rows) > 0 {
		n := min(len(rows), pollChunk)
		a.idx.mu.Lock()
		for i := range rows[:n] {
			put(&rows[i])
		}
		a.idx.mu.Unlock()
		rows = rows[n:]
		a.stats.polled.Add(uint64(n))
	}
}
