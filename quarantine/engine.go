package quarantine

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"wormsink/evidence"
	"wormsink/signatures"
	"wormsink/store"
)

// Defaults of Config.
const (
	DefaultPoll    = time.Second
	DefaultBacklog = 4096
	// touchEvery bounds how often a quarantined subject's last sighting is
	// written: a worm that keeps trying writes once a minute, not per try.
	touchEvery = time.Minute
)

// Sighting is what the engine is told of a piece of evidence: the fields of
// an evidence line that decide a quarantine.
type Sighting struct {
	Time      time.Time
	Kind      evidence.Kind // the evidence event
	Host      netip.Addr    // the address the evidence points at
	Port      uint16
	Family    string
	Signature string
	Evidence  signatures.Strength
	Proof     evidence.Proof
	Sensor    string
	// From attribution, when it is known: the subscriber, and the inside
	// address behind a NAT (the subscriber's own address).
	Subscriber string
	Inside     netip.Addr
	// Candidates is how many subscribers the address and time match when
	// attribution could not tell which (then nobody is quarantined).
	Candidates int
}

// Config is what an Engine needs.
type Config struct {
	// DB keeps the quarantines and their audit trail (required).
	DB *store.DB
	// Policy decides; nil is DefaultPolicy with automatic quarantine off
	// (only the abuse team quarantines).
	Policy *Policy
	// Log gets a line per transition (events quarantine and release):
	// the evidence log's service logger. The zero Logger writes nothing.
	Log zerolog.Logger
	// Poll is how often the store is read for changes made by another
	// process (the command line, a desk, another sensor); 0 is DefaultPoll.
	Poll time.Duration
	// Backlog is how many sightings may wait for the engine; beyond it
	// they are counted and dropped (the evidence log still has them). 0 is
	// DefaultBacklog.
	Backlog int
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Stats are the engine's counters, for metrics.
type Stats struct {
	Quarantined    int    // subjects in quarantine now
	Addresses      int    // addresses enforced now
	Entries        uint64 // entries into quarantine
	Releases       map[string]uint64
	InGrace        uint64 // sightings ignored in a self-release grace period
	Ambiguous      uint64 // sightings whose subscriber attribution could not tell
	Excluded       uint64 // sightings of addresses the policy never quarantines
	Dropped        uint64 // sightings dropped because the engine was behind
	AnswersCounted uint64
}

// Engine keeps who is in quarantine: it decides on sightings, records every
// transition in the store, and gives the enforcement points (the DNS shim,
// the RPZ feed, BGP, nftables, the notice page) the set of quarantined
// addresses. Several engines (processes) can share one PostgreSQL store:
// each sees the others' changes within Config.Poll.
type Engine struct {
	db     *store.DB
	policy *Policy
	log    zerolog.Logger
	poll   time.Duration
	now    func() time.Time

	in   chan Sighting
	snap atomic.Pointer[Snapshot]

	mu       sync.Mutex // watchers and lastSeen
	watchers []func(*Snapshot)
	lastSeen int64 // highest audit id loaded

	entries, inGrace, ambiguous, excluded, dropped atomic.Uint64
	relSelf, relAdmin, relAuto                     atomic.Uint64
}

// Snapshot is the quarantine as the enforcement points see it: read-only,
// replaced whole on every change.
type Snapshot struct {
	ByAddr  map[netip.Addr]*Entry
	Entries []*Entry
	// filter has the bit of each enforced address's hash set: the DNS
	// shim asks about every query's client, nearly all of them not in
	// quarantine, and a clear bit answers that in a few nanoseconds where
	// the map takes tens (2^20 bits: about 1% false positives with 10,000
	// addresses, which then ask the map).
	filter []uint64
}

const filterBits = 1 << 20

// NewSnapshot indexes quarantined entries by their addresses (the engine
// makes one at every change; tests and benchmarks of enforcement points too).
func NewSnapshot(list []Entry) *Snapshot {
	s := &Snapshot{ByAddr: make(map[netip.Addr]*Entry, len(list))}
	for i := range list {
		ent := &list[i]
		s.Entries = append(s.Entries, ent)
		for _, a := range ent.Addresses {
			s.ByAddr[a.Unmap()] = ent
		}
	}
	if len(s.ByAddr) > 0 {
		s.filter = make([]uint64, filterBits/64)
		for a := range s.ByAddr {
			h := addrHash(a)
			s.filter[h/64%uint64(len(s.filter))] |= 1 << (h % 64)
		}
	}
	return s
}

// addrHash mixes an address's 16 bytes into a well-spread 64-bit value.
func addrHash(a netip.Addr) uint64 {
	b := a.As16()
	x := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 | uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
	y := uint64(b[8]) | uint64(b[9])<<8 | uint64(b[10])<<16 | uint64(b[11])<<24 | uint64(b[12])<<32 | uint64(b[13])<<40 | uint64(b[14])<<48 | uint64(b[15])<<56
	h := (x ^ y*0x9e3779b97f4a7c15) * 0xbf58476d1ce4e5b9
	return h ^ h>>31
}

// Lookup returns the entry enforced on addr.
func (s *Snapshot) Lookup(addr netip.Addr) (*Entry, bool) {
	if s == nil || len(s.filter) == 0 {
		return nil, false
	}
	addr = addr.Unmap()
	h := addrHash(addr)
	if s.filter[h/64%uint64(len(s.filter))]&(1<<(h%64)) == 0 {
		return nil, false
	}
	e, ok := s.ByAddr[addr]
	return e, ok
}

const (
	entriesTable = `CREATE TABLE quarantine_entries (
	subject       TEXT PRIMARY KEY,
	state         TEXT NOT NULL,
	family        TEXT NOT NULL DEFAULT '',
	signature     TEXT NOT NULL DEFAULT '',
	since         BIGINT NOT NULL,
	first_seen    BIGINT NOT NULL DEFAULT 0,
	last_sighting BIGINT NOT NULL DEFAULT 0,
	addresses     TEXT NOT NULL DEFAULT '',
	self_releases INTEGER NOT NULL DEFAULT 0,
	released_at   BIGINT NOT NULL DEFAULT 0,
	release_kind  TEXT NOT NULL DEFAULT '',
	grace_until   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX quarantine_entries_state ON quarantine_entries (state);
`
	auditTable = `CREATE TABLE quarantine_audit (
	id        ` + store.AutoID + `,
	subject   TEXT NOT NULL,
	at        BIGINT NOT NULL,
	action    TEXT NOT NULL,
	kind      TEXT NOT NULL DEFAULT '',
	actor     TEXT NOT NULL DEFAULT '',
	note      TEXT NOT NULL DEFAULT '',
	sightings TEXT NOT NULL DEFAULT ''
);
CREATE INDEX quarantine_audit_subject ON quarantine_audit (subject, id)`
)

var migrations = []store.Migration{{Version: 1, Both: entriesTable + auditTable}}

// New migrates the store and loads the quarantines in it.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.DB == nil {
		return nil, errors.New("quarantine: no database")
	}
	if err := cfg.DB.Migrate(ctx, "quarantine", migrations); err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	e := &Engine{db: cfg.DB, policy: cfg.Policy, log: cfg.Log, poll: cfg.Poll, now: cfg.Now}
	if e.policy == nil {
		e.policy = DefaultPolicy()
		e.policy.Auto = false
	}
	if e.poll <= 0 {
		e.poll = DefaultPoll
	}
	if e.now == nil {
		e.now = time.Now
	}
	backlog := cfg.Backlog
	if backlog <= 0 {
		backlog = DefaultBacklog
	}
	e.in = make(chan Sighting, backlog)
	if err := e.reload(ctx, true); err != nil {
		return nil, err
	}
	return e, nil
}

// Policy is the engine's policy.
func (e *Engine) Policy() *Policy { return e.policy }

// Snapshot is the quarantine now.
func (e *Engine) Snapshot() *Snapshot { return e.snap.Load() }

// Lookup returns the quarantine entry enforced on addr, if any: the
// enforcement points' question, answered from memory without a lock.
func (e *Engine) Lookup(addr netip.Addr) (*Entry, bool) { return e.snap.Load().Lookup(addr) }

// Watch calls fn with the quarantine now and again after every change, in
// the order of changes, from the engine's goroutine (fn must not block
// long). Enforcement points that keep their own copy (RPZ, BGP, nftables)
// diff against what they had.
func (e *Engine) Watch(fn func(*Snapshot)) {
	e.mu.Lock()
	e.watchers = append(e.watchers, fn)
	e.mu.Unlock()
	fn(e.snap.Load())
}

// Observe hands a sighting to the engine without waiting. The evidence hot
// path calls it only for sightings the policy could act on (Policy.Enters),
// so it is rare.
func (e *Engine) Observe(s Sighting) {
	select {
	case e.in <- s:
	default:
		e.dropped.Add(1)
	}
}

// Serve decides on observed sightings, releases subjects whose quiet period
// passed and follows changes other processes make, until ctx ends.
func (e *Engine) Serve(ctx context.Context) error {
	poll := time.NewTicker(e.poll)
	defer poll.Stop()
	autoEvery := time.Minute
	if a := e.policy.AutoRelease; a > 0 && a/10 < autoEvery {
		autoEvery = max(a/10, 100*time.Millisecond)
	}
	auto := time.NewTicker(autoEvery)
	defer auto.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-e.in:
			if err := e.consider(ctx, s); err != nil && ctx.Err() == nil {
				e.log.Error().Str("event", "quarantine_error").Err(err).Msg("quarantine: sighting not recorded")
			}
		case <-poll.C:
			if err := e.reload(ctx, false); err != nil && ctx.Err() == nil {
				e.log.Error().Str("event", "quarantine_error").Err(err).Msg("quarantine: reading the store")
			}
		case <-auto.C:
			if err := e.autoRelease(ctx); err != nil && ctx.Err() == nil {
				e.log.Error().Str("event", "quarantine_error").Err(err).Msg("quarantine: automatic release")
			}
		}
	}
}

// enforcedAddr is the address a sighting's quarantine is enforced on: the
// inside address behind a NAT, else the host. It reports false when there
// is none that is the subject's own.
func (e *Engine) enforcedAddr(s Sighting) (netip.Addr, bool) {
	if s.Inside.IsValid() {
		return s.Inside.Unmap(), true
	}
	if s.Subscriber == "" && s.Candidates > 0 {
		return netip.Addr{}, false // a shared address: it names nobody
	}
	return s.Host.Unmap(), s.Host.IsValid()
}

func (e *Engine) consider(ctx context.Context, s Sighting) error {
	if !e.policy.Enters(s.Kind, s.Family, s.Evidence, s.Proof) {
		return nil
	}
	addr, ok := e.enforcedAddr(s)
	if !ok {
		e.ambiguous.Add(1)
		return nil
	}
	if e.policy.Excluded(addr) || e.policy.Excluded(s.Host) && !s.Inside.IsValid() ||
		!addr.IsGlobalUnicast() && !addr.IsPrivate() && !addr.IsLoopback() {
		e.excluded.Add(1)
		return nil
	}
	subj := AddressSubject(addr)
	if s.Subscriber != "" {
		subj = Subject{Subscriber, s.Subscriber}
	}
	now := e.now()
	var entered *Entry
	err := e.db.Tx(ctx, func(tx *store.Tx) error {
		entered = nil
		cur, err := getEntry(ctx, tx, subj)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err == nil && cur.State == Quarantined {
			if s.Time.Sub(cur.LastSighting) < touchEvery && !missing(cur.Addresses, addr) {
				return nil
			}
			addrs := cur.Addresses
			if missing(addrs, addr) {
				addrs = append(slices.Clone(addrs), addr)
			}
			_, err := tx.Exec(ctx, "UPDATE quarantine_entries SET last_sighting = ?, addresses = ? WHERE subject = ?",
				maxTime(cur.LastSighting, s.Time).UnixMilli(), formatAddrs(addrs), subj.String())
			if err == nil && missing(cur.Addresses, addr) {
				err = audit(ctx, tx, subj, now, "moved", "", "policy", "also enforced on "+addr.String(), "")
			}
			return err
		}
		if err == nil && now.Before(cur.GraceUntil) {
			e.inGrace.Add(1)
			return nil
		}
		sj, _ := json.Marshal([]sightingJSON{toJSON(s)})
		ent := Entry{Subject: subj, State: Quarantined, Family: s.Family, Signature: s.Signature,
			Since: now, FirstSeen: s.Time, LastSighting: s.Time, Addresses: []netip.Addr{addr}}
		if err == nil {
			ent.SelfReleases = cur.SelfReleases
			ent.FirstSeen = cur.FirstSeen
		}
		if err := putEntry(ctx, tx, &ent); err != nil {
			return err
		}
		entered = &ent
		return audit(ctx, tx, subj, now, "quarantine", "policy", "policy",
			fmt.Sprintf("%s %s evidence with proof %s from %s", s.Family, s.Evidence, s.Proof, s.Host), string(sj))
	})
	if err != nil || entered == nil {
		return err
	}
	e.entries.Add(1)
	e.logTransition("quarantine", entered, "policy", "policy", s.Sensor)
	return e.reload(ctx, false)
}

func missing(as []netip.Addr, a netip.Addr) bool { return !slices.Contains(as, a) }

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Add puts a subject in quarantine by hand (the abuse team). Its addresses
// are the given ones, or for an address subject the address itself.
func (e *Engine) Add(ctx context.Context, subj Subject, addrs []netip.Addr, family, actor, note string) (*Entry, error) {
	if subj.Kind == Address {
		a, _ := netip.ParseAddr(subj.ID)
		if missing(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	for _, a := range addrs {
		if e.policy.Excluded(a) {
			return nil, fmt.Errorf("quarantine: %s is in a network the policy never quarantines", a)
		}
	}
	now := e.now()
	var ent Entry
	err := e.db.Tx(ctx, func(tx *store.Tx) error {
		cur, err := getEntry(ctx, tx, subj)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		ent = Entry{Subject: subj, State: Quarantined, Family: family, Since: now, FirstSeen: now, LastSighting: now, Addresses: addrs}
		if err == nil {
			ent.SelfReleases = cur.SelfReleases
			if ent.Family == "" {
				ent.Family = cur.Family
			}
			if len(ent.Addresses) == 0 {
				ent.Addresses = cur.Addresses
			}
		}
		if err := putEntry(ctx, tx, &ent); err != nil {
			return err
		}
		return audit(ctx, tx, subj, now, "quarantine", ReleaseAdmin, actor, note, "")
	})
	if err != nil {
		return nil, fmt.Errorf("quarantine: add %s: %w", subj, err)
	}
	e.entries.Add(1)
	e.logTransition("quarantine", &ent, ReleaseAdmin, actor, "")
	return &ent, e.reload(ctx, false)
}

// Release ends a subject's quarantine (kind ReleaseAdmin or ReleaseAuto).
func (e *Engine) Release(ctx context.Context, subj Subject, kind, actor, note string) (*Entry, error) {
	return e.release(ctx, subj, kind, actor, note, func(*Entry) error { return nil })
}

// SelfRelease is the customer's "my computer is clean" from addr: it
// releases the subject enforced on addr when it has self-releases left,
// and opens the grace period.
func (e *Engine) SelfRelease(ctx context.Context, addr netip.Addr) (*Entry, error) {
	addr = addr.Unmap()
	ent, ok := e.Lookup(addr)
	if !ok {
		// The snapshot may lag another process's change: ask the store.
		if err := e.reload(ctx, false); err != nil {
			return nil, err
		}
		if ent, ok = e.Lookup(addr); !ok {
			return nil, ErrNotQuarantined
		}
	}
	return e.release(ctx, ent.Subject, ReleaseSelf, "customer "+addr.String(), "", func(cur *Entry) error {
		if !slices.Contains(cur.Addresses, addr) {
			return ErrSelfReleaseAbuse
		}
		if cur.SelfReleases >= e.policy.SelfReleaseMax {
			return ErrNoSelfRelease
		}
		return nil
	})
}

func (e *Engine) release(ctx context.Context, subj Subject, kind, actor, note string, check func(*Entry) error) (*Entry, error) {
	now := e.now()
	var ent *Entry
	err := e.db.Tx(ctx, func(tx *store.Tx) error {
		cur, err := getEntry(ctx, tx, subj)
		if errors.Is(err, store.ErrNotFound) {
			return ErrNotQuarantined
		}
		if err != nil {
			return err
		}
		// Checked inside the transaction: two clicks on the release
		// button (or a click and an admin release) release once.
		if cur.State != Quarantined {
			return ErrNotQuarantined
		}
		if err := check(&cur); err != nil {
			return err
		}
		cur.State, cur.ReleasedAt, cur.ReleaseKind = Released, now, kind
		if kind == ReleaseSelf {
			cur.SelfReleases++
			cur.GraceUntil = now.Add(e.policy.SelfReleaseGrace)
		}
		if err := putEntry(ctx, tx, &cur); err != nil {
			return err
		}
		ent = &cur
		return audit(ctx, tx, subj, now, "release", kind, actor, note, "")
	})
	if errors.Is(err, ErrNoSelfRelease) {
		// On the record: the customer asked and was refused (the abuse
		// team sees who is waiting for them).
		if _, aerr := e.db.Exec(ctx, "INSERT INTO quarantine_audit (subject, at, action, kind, actor, note, sightings) VALUES (?, ?, 'refused', ?, ?, ?, '')",
			subj.String(), now.UnixMilli(), kind, actor, "self-release refused: none left"); aerr != nil {
			return nil, errors.Join(err, aerr)
		}
	}
	if err != nil {
		if errors.Is(err, ErrNoSelfRelease) || errors.Is(err, ErrNotQuarantined) || errors.Is(err, ErrSelfReleaseAbuse) {
			return nil, err
		}
		return nil, fmt.Errorf("quarantine: release %s: %w", subj, err)
	}
	switch kind {
	case ReleaseSelf:
		e.relSelf.Add(1)
	case ReleaseAuto:
		e.relAuto.Add(1)
	default:
		e.relAdmin.Add(1)
	}
	e.logTransition("release", ent, kind, actor, "")
	return ent, e.reload(ctx, false)
}

// Note adds a note to a subject's audit trail.
func (e *Engine) Note(ctx context.Context, subj Subject, actor, note string) error {
	_, err := e.db.Exec(ctx, "INSERT INTO quarantine_audit (subject, at, action, kind, actor, note, sightings) VALUES (?, ?, 'note', '', ?, ?, '')",
		subj.String(), e.now().UnixMilli(), actor, note)
	if err != nil {
		return fmt.Errorf("quarantine: note on %s: %w", subj, err)
	}
	return nil
}

// Moved tells the engine where a subscriber is now (a RADIUS Start gave
// them new addresses): a quarantined subscriber's quarantine follows them.
func (e *Engine) Moved(ctx context.Context, subscriber string, addrs []netip.Addr) error {
	subj := Subject{Subscriber, subscriber}
	if ent, ok := e.bySubject(subj); !ok || !slices.ContainsFunc(addrs, func(a netip.Addr) bool { return missing(ent.Addresses, a) }) {
		return nil // not quarantined, or nothing new: the common case costs no query
	}
	changed := false
	err := e.db.Tx(ctx, func(tx *store.Tx) error {
		changed = false
		cur, err := getEntry(ctx, tx, subj)
		if err != nil || cur.State != Quarantined {
			return nil
		}
		var add []netip.Addr
		for _, a := range addrs {
			if a = a.Unmap(); missing(cur.Addresses, a) && !e.policy.Excluded(a) {
				add = append(add, a)
			}
		}
		if len(add) == 0 {
			return nil
		}
		// The old addresses now belong to someone else: enforce on the new ones only.
		cur.Addresses = add
		if err := putEntry(ctx, tx, &cur); err != nil {
			return err
		}
		changed = true
		return audit(ctx, tx, subj, e.now(), "moved", "", "attribution", "now at "+formatAddrs(add), "")
	})
	if err != nil || !changed {
		return err
	}
	return e.reload(ctx, false)
}

func (e *Engine) bySubject(subj Subject) (*Entry, bool) {
	for _, ent := range e.snap.Load().Entries {
		if ent.Subject == subj {
			return ent, true
		}
	}
	return nil, false
}

func (e *Engine) autoRelease(ctx context.Context) error {
	if e.policy.AutoRelease <= 0 {
		return nil
	}
	cutoff := e.now().Add(-e.policy.AutoRelease)
	for _, ent := range e.snap.Load().Entries {
		if ent.LastSighting.Before(cutoff) {
			if _, err := e.release(ctx, ent.Subject, ReleaseAuto, "auto", "quiet for "+e.policy.AutoRelease.String(), func(cur *Entry) error {
				if !cur.LastSighting.Before(cutoff) {
					return ErrNotQuarantined // seen again meanwhile
				}
				return nil
			}); err != nil && !errors.Is(err, ErrNotQuarantined) {
				return err
			}
		}
	}
	return nil
}

// List returns the subjects in quarantine, or with all every subject ever
// quarantined.
func (e *Engine) List(ctx context.Context, all bool) ([]Entry, error) {
	q := "SELECT " + entryCols + " FROM quarantine_entries"
	if !all {
		q += " WHERE state = 'quarantined'"
	}
	rows, err := e.db.Query(ctx, q+" ORDER BY since, subject")
	if err != nil {
		return nil, fmt.Errorf("quarantine: list: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		ent, err := scanEntry(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, ent)
	}
	return out, rows.Err()
}

// Get returns one subject's entry.
func (e *Engine) Get(ctx context.Context, subj Subject) (Entry, error) {
	return getEntry(ctx, e.db, subj)
}

// Audit returns a subject's audit trail, oldest first.
func (e *Engine) Audit(ctx context.Context, subj Subject) ([]AuditRow, error) {
	rows, err := e.db.Query(ctx, "SELECT id, subject, at, action, kind, actor, note, sightings FROM quarantine_audit WHERE subject = ? ORDER BY id", subj.String())
	if err != nil {
		return nil, fmt.Errorf("quarantine: audit: %w", err)
	}
	defer rows.Close()
	var out []AuditRow
	for rows.Next() {
		var r AuditRow
		var subject string
		var at int64
		if err := rows.Scan(&r.ID, &subject, &at, &r.Action, &r.Kind, &r.Actor, &r.Note, &r.Sightings); err != nil {
			return nil, err
		}
		r.Subject, _ = ParseSubject(subject)
		r.At = time.UnixMilli(at).UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	s := e.snap.Load()
	return Stats{
		Quarantined: len(s.Entries), Addresses: len(s.ByAddr),
		Entries: e.entries.Load(), InGrace: e.inGrace.Load(), Ambiguous: e.ambiguous.Load(),
		Excluded: e.excluded.Load(), Dropped: e.dropped.Load(),
		Releases: map[string]uint64{ReleaseSelf: e.relSelf.Load(), ReleaseAdmin: e.relAdmin.Load(), ReleaseAuto: e.relAuto.Load()},
	}
}

// reload reads the quarantined subjects when the audit trail grew (every
// change writes a row), builds a new snapshot and tells the watchers.
func (e *Engine) reload(ctx context.Context, force bool) error {
	var top sql.NullInt64
	if err := e.db.QueryRow(ctx, "SELECT MAX(id) FROM quarantine_audit").Scan(&top); err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !force && top.Int64 == e.lastSeen {
		return nil
	}
	list, err := e.List(ctx, false)
	if err != nil {
		return err
	}
	s := NewSnapshot(list)
	e.lastSeen = top.Int64
	e.snap.Store(s)
	for _, w := range e.watchers {
		w(s)
	}
	return nil
}

func (e *Engine) logTransition(action string, ent *Entry, kind, actor, sensor string) {
	ev := e.log.Info().Str("event", action).Str("subject", ent.Subject.String()).Str("family", ent.Family).
		Strs("addresses", addrStrings(ent.Addresses)).Str("kind", kind).Str("actor", actor)
	if action == "release" {
		ev = ev.Int("self_releases", ent.SelfReleases)
	}
	if sensor != "" {
		ev = ev.Str("sensor", sensor)
	}
	ev.Msg(action)
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// querier is what both store.DB and store.Tx offer.
type querier interface {
	QueryRow(ctx context.Context, query string, args ...any) *sql.Row
}

const entryCols = "subject, state, family, signature, since, first_seen, last_sighting, addresses, self_releases, released_at, release_kind, grace_until"

type scanner interface{ Scan(...any) error }

func scanEntry(r scanner) (Entry, error) {
	var ent Entry
	var subject, state, addrs string
	var since, first, last, released, grace int64
	if err := r.Scan(&subject, &state, &ent.Family, &ent.Signature, &since, &first, &last, &addrs, &ent.SelfReleases, &released, &ent.ReleaseKind, &grace); err != nil {
		return ent, err
	}
	ent.Subject, _ = ParseSubject(subject)
	ent.State = State(state)
	ent.Since, ent.FirstSeen, ent.LastSighting = ms(since), ms(first), ms(last)
	ent.ReleasedAt, ent.GraceUntil = ms(released), ms(grace)
	ent.Addresses = parseAddrs(addrs)
	return ent, nil
}

func ms(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func getEntry(ctx context.Context, q querier, subj Subject) (Entry, error) {
	query := "SELECT " + entryCols + " FROM quarantine_entries WHERE subject = ?"
	if tx, ok := q.(*store.Tx); ok && tx.Dialect() == store.Postgres {
		// Read for a change: the row stays locked until the transaction
		// ends, so two clicks on the release button (or a click and an
		// admin release) see each other's change instead of both finding
		// the subject quarantined. SQLite's immediate transactions already
		// serialise writers.
		query += " FOR UPDATE"
	}
	ent, err := scanEntry(q.QueryRow(ctx, query, subj.String()))
	if errors.Is(err, sql.ErrNoRows) {
		return ent, store.ErrNotFound
	}
	return ent, err
}

func putEntry(ctx context.Context, tx *store.Tx, ent *Entry) error {
	_, err := tx.Exec(ctx, `INSERT INTO quarantine_entries (`+entryCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (subject) DO UPDATE SET state = excluded.state, family = excluded.family, signature = excluded.signature,
		since = excluded.since, first_seen = excluded.first_seen, last_sighting = excluded.last_sighting, addresses = excluded.addresses,
		self_releases = excluded.self_releases, released_at = excluded.released_at, release_kind = excluded.release_kind,
		grace_until = excluded.grace_until`,
		ent.Subject.String(), string(ent.State), ent.Family, ent.Signature, unixMilli(ent.Since), unixMilli(ent.FirstSeen),
		unixMilli(ent.LastSighting), formatAddrs(ent.Addresses), ent.SelfReleases, unixMilli(ent.ReleasedAt), ent.ReleaseKind,
		unixMilli(ent.GraceUntil))
	return err
}

func audit(ctx context.Context, tx *store.Tx, subj Subject, at time.Time, action, kind, actor, note, sightings string) error {
	_, err := tx.Exec(ctx, "INSERT INTO quarantine_audit (subject, at, action, kind, actor, note, sightings) VALUES (?, ?, ?, ?, ?, ?, ?)",
		subj.String(), at.UnixMilli(), action, kind, actor, note, sightings)
	return err
}

type sightingJSON struct {
	Time       time.Time `json:"time"`
	Host       string    `json:"host"`
	Port       uint16    `json:"port,omitempty"`
	Family     string    `json:"family"`
	Signature  string    `json:"signature"`
	Evidence   string    `json:"evidence"`
	Proof      string    `json:"proof"`
	Sensor     string    `json:"sensor,omitempty"`
	Subscriber string    `json:"subscriber,omitempty"`
	Inside     string    `json:"nat_inside,omitempty"`
}

func toJSON(s Sighting) sightingJSON {
	j := sightingJSON{Time: s.Time.UTC(), Host: s.Host.String(), Port: s.Port, Family: s.Family, Signature: s.Signature,
		Evidence: s.Evidence.String(), Proof: s.Proof.String(), Sensor: s.Sensor, Subscriber: s.Subscriber}
	if s.Inside.IsValid() {
		j.Inside = s.Inside.String()
	}
	return j
}

// Quarantined says whether addr is quarantined now: the DNS shim's
// walled-garden question (dnsblock.Garden).
func (e *Engine) Quarantined(addr netip.Addr) bool {
	_, ok := e.snap.Load().Lookup(addr)
	return ok
}

// Allowed says whether a quarantined client may still resolve name
// (dnsblock.Garden).
func (e *Engine) Allowed(name string) bool { return e.policy.Allowed(name) }
