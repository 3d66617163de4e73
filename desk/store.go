package desk

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"wormsink/evidence"
	"wormsink/quarantine"
	"wormsink/report"
	"wormsink/signatures"
	"wormsink/store"
)

// Case states, in the order a case usually goes through them.
const (
	StateNew         = "new"
	StateNotified    = "notified"
	StateQuarantined = "quarantined"
	StateReleased    = "released"
	StateClosed      = "closed"
)

// States lists every state, in order.
var States = []string{StateNew, StateNotified, StateQuarantined, StateReleased, StateClosed}

// Errors callers test for.
var (
	ErrNotFound   = store.ErrNotFound
	ErrTransition = errors.New("not allowed in this state")
	ErrForgeable  = errors.New("the evidence could be forged (no sighting with more than datagram proof): not quarantined")
)

// Store is the desk's state on the store: evidence lines, cases, accounts.
// It is safe for concurrent use, and several desks may share one
// PostgreSQL database.
type Store struct {
	db  *store.DB
	now func() time.Time

	mu    sync.Mutex
	stmts map[string]*sql.Stmt // ingest's statements, prepared (SQLite only)
}

// Open migrates the desk's tables on db.
func Open(ctx context.Context, db *store.DB) (*Store, error) {
	if err := db.Migrate(ctx, "desk", migrations); err != nil {
		return nil, fmt.Errorf("desk: %w", err)
	}
	dummyHash() // before the first login, which must not take longer for it
	return &Store{db: db, now: time.Now}, nil
}

// DB is the underlying database.
func (s *Store) DB() *store.DB { return s.db }

// Line is one line as shipped: Sensor, Log and Off (the line's byte offset
// in the log) are its idempotency key.
type Line struct {
	Sensor string
	Log    string
	Off    int64
	Text   []byte
}

// IngestResult counts what a batch did.
type IngestResult struct {
	Stored    int    `json:"stored"`    // evidence lines stored now
	Duplicate int    `json:"duplicate"` // lines already stored (a batch sent again)
	Skipped   int    `json:"skipped"`   // service and blank lines: not evidence
	Malformed int    `json:"malformed"` // lines that are no evidence line
	FirstBad  string `json:"first_bad,omitempty"`
}

// sighting is what a case folds from one evidence line.
type sighting struct {
	subject    string
	first      int64
	last       int64
	family     string
	strong     bool
	proof      evidence.Proof
	addr       string
	sensor     string
	count      uint64
	strongSeen bool // strong and not forgeable: reopens a closed case
}

// lineExtra is what the report's Sighting does not carry.
type lineExtra struct {
	Subscriber string `json:"subscriber"`
	NATInside  string `json:"nat_inside"`
}

// parse reads one line; ok is false for lines that make no case (network
// lines still count as stored evidence).
func parse(p *report.Parser, text []byte) (kind report.LineKind, sg sighting, err error) {
	var rec report.Sighting
	kind, err = p.Parse(text, &rec)
	if kind != report.LineEvidence {
		return kind, sg, err
	}
	sg.first, sg.last = rec.Time.UnixMilli(), rec.Last.UnixMilli()
	if sg.last < sg.first {
		sg.last = sg.first
	}
	sg.family = string(rec.Family)
	sg.strong = rec.Evidence == signatures.Strong
	sg.proof = rec.Proof
	sg.sensor = string(rec.Sensor)
	sg.count = rec.Count
	sg.strongSeen = sg.strong && rec.Proof.Verified()
	if !rec.Host.IsValid() {
		return kind, sg, nil // a network line: evidence, but nobody's case
	}
	host := rec.Host.Unmap()
	sg.addr = host.String()
	var x lineExtra
	if bytes.Contains(text, []byte(`"subscriber"`)) || bytes.Contains(text, []byte(`"nat_inside"`)) {
		_ = json.Unmarshal(text, &x) // the report's parser has validated the line already
	}
	switch {
	case x.Subscriber != "":
		sg.subject = quarantine.Subject{Kind: quarantine.Subscriber, ID: x.Subscriber}.String()
	case x.NATInside != "":
		if ap, err := netip.ParseAddrPort(x.NATInside); err == nil {
			host = ap.Addr().Unmap()
		} else if a, err := netip.ParseAddr(x.NATInside); err == nil {
			host = a.Unmap()
		}
		sg.addr = host.String()
		sg.subject = quarantine.AddressSubject(host).String()
	default:
		sg.subject = quarantine.AddressSubject(host).String()
	}
	return kind, sg, nil
}

// How many rows one statement takes: each well under SQLite's 32766
// variables and PostgreSQL's 65535.
const (
	evidenceChunk = 1000 // 6 values a row
	caseChunk     = 500  // 14 values a row
	auditChunk    = 1000 // 7 values a row
)

// Ingest stores the batch's evidence lines that are not stored yet and
// folds them into cases, all in one transaction: either the whole batch is
// recorded or none of it is, so a shipper that gets an error sends it again.
//
// A batch costs a handful of statements whatever it holds: the sightings
// are folded per case in memory first, and each case touched is read once
// and written once, by multi-row statements (one statement per case and
// line made ingest from many hosts ten times slower than from a few).
func (s *Store) Ingest(ctx context.Context, lines []Line) (IngestResult, error) {
	var res IngestResult
	var p report.Parser
	var evs []parsed
	subjects := map[string]bool{}
	for i := range lines {
		l := &lines[i]
		kind, sg, perr := parse(&p, l.Text)
		switch kind {
		case report.LineEvidence:
			evs = append(evs, parsed{l: l, sg: sg})
			if sg.subject != "" {
				subjects[sg.subject] = true
			}
		case report.LineMalformed:
			res.Malformed++
			if res.FirstBad == "" {
				res.FirstBad = fmt.Sprintf("%s:%s@%d: %v", l.Sensor, l.Log, l.Off, perr)
			}
		default:
			res.Skipped++
		}
	}
	// One lock order for every writer: no deadlocks between desks.
	order := slices.Sorted(maps.Keys(subjects))
	err := s.db.Tx(ctx, func(tx *store.Tx) error {
		res.Stored = 0
		cases, err := s.lockCases(ctx, tx, order, evs)
		if err != nil {
			return err
		}
		for i := range evs {
			if c := cases[evs[i].sg.subject]; c != nil {
				evs[i].caseID = c.id
			}
		}
		stored, err := s.insertEvidence(ctx, tx, evs)
		if err != nil {
			return err
		}
		res.Stored = len(stored)
		for _, e := range stored {
			if c := cases[e.sg.subject]; c != nil {
				c.add(e.sg)
			}
		}
		return s.writeCases(ctx, tx, order, cases)
	})
	if err != nil {
		return IngestResult{}, fmt.Errorf("desk: ingest: %w", err)
	}
	res.Duplicate = len(lines) - res.Stored - res.Skipped - res.Malformed
	return res, nil
}

// parsed is an evidence line of a batch and the case it belongs to.
type parsed struct {
	l      *Line
	sg     sighting
	caseID int64
}

// caseRow is a case as the batch found it, and what the batch adds.
type caseRow struct {
	id, first, last, closedAt int64
	subject, state            string
	families, addrs, sensors  []string
	strong                    bool
	proof                     evidence.Proof
	sightings, lines          int64
	created                   bool

	newLines int64
	newAddrs []string
	reopenAt int64 // the batch's latest strong, unforgeable sighting
}

func (c *caseRow) add(sg sighting) {
	if c.newLines == 0 && c.created {
		c.first, c.last = sg.first, sg.last
	}
	c.first, c.last = min(c.first, sg.first), max(c.last, sg.last)
	c.families = addSet(c.families, sg.family)
	c.strong = c.strong || sg.strong
	c.proof = max(c.proof, sg.proof)
	if sg.addr != "" && !slices.Contains(c.addrs, sg.addr) {
		c.addrs = append(c.addrs, sg.addr)
		c.newAddrs = append(c.newAddrs, sg.addr)
	}
	c.sensors = addSet(c.sensors, sg.sensor)
	c.sightings += int64(sg.count)
	c.lines++
	c.newLines++
	if sg.strongSeen {
		c.reopenAt = max(c.reopenAt, sg.last)
	}
}

// lockCases reads (on PostgreSQL: locks) the cases of subjects, in their
// order, and makes those that do not exist yet. Only missing subjects are
// inserted: an insert that conflicts still takes a number from the id
// sequence, and ticket numbers would skip.
func (s *Store) lockCases(ctx context.Context, tx *store.Tx, subjects []string, evs []parsed) (map[string]*caseRow, error) {
	cases := make(map[string]*caseRow, len(subjects))
	if err := s.readCases(ctx, tx, subjects, cases, nil); err != nil {
		return nil, err
	}
	var missing []string
	for _, subj := range subjects {
		if cases[subj] == nil {
			missing = append(missing, subj)
		}
	}
	if len(missing) == 0 {
		return cases, nil
	}
	// A new case starts with the batch's times; writeCases sets them
	// from the lines actually stored.
	span := make(map[string][2]int64, len(missing))
	for _, e := range evs {
		if e.sg.subject == "" {
			continue
		}
		v, ok := span[e.sg.subject]
		if !ok {
			v = [2]int64{e.sg.first, e.sg.last}
		}
		span[e.sg.subject] = [2]int64{min(v[0], e.sg.first), max(v[1], e.sg.last)}
	}
	now := s.now().UnixMilli()
	created := map[string]bool{}
	for rest := missing; len(rest) > 0; {
		chunk := rest[:min(len(rest), caseChunk)]
		rest = rest[len(chunk):]
		var b strings.Builder
		b.WriteString("INSERT INTO desk_cases (subject, state, first_seen, last_seen, created_at, updated_at) VALUES ")
		args := make([]any, 0, 6*len(chunk))
		for i, subj := range chunk {
			values(&b, i, 6)
			args = append(args, subj, StateNew, span[subj][0], span[subj][1], now, now)
		}
		// DO NOTHING: another desk made the case meanwhile.
		b.WriteString(" ON CONFLICT (subject) DO NOTHING RETURNING subject")
		if err := s.queryEach(ctx, tx, b.String(), args, func(r scanner) error {
			var subj string
			if err := r.Scan(&subj); err != nil {
				return err
			}
			created[subj] = true
			return nil
		}); err != nil {
			return nil, err
		}
	}
	if err := s.readCases(ctx, tx, missing, cases, created); err != nil {
		return nil, err
	}
	if len(cases) != len(subjects) {
		return nil, fmt.Errorf("%d of %d cases found", len(cases), len(subjects))
	}
	return cases, nil
}

// readCases reads the cases of subjects into cases.
func (s *Store) readCases(ctx context.Context, tx *store.Tx, subjects []string, cases map[string]*caseRow, created map[string]bool) error {
	for rest := subjects; len(rest) > 0; {
		chunk := rest[:min(len(rest), caseChunk)]
		rest = rest[len(chunk):]
		var b strings.Builder
		b.WriteString("SELECT id, subject, state, first_seen, last_seen, families, strong, proof, addresses, sensors, sightings, lines, closed_at FROM desk_cases WHERE subject IN (")
		args := make([]any, len(chunk))
		for i, subj := range chunk {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('?')
			args[i] = subj
		}
		b.WriteString(") ORDER BY subject")
		if tx.Dialect() == store.Postgres {
			b.WriteString(" FOR UPDATE")
		}
		if err := s.queryEach(ctx, tx, b.String(), args, func(r scanner) error {
			var c caseRow
			var fams, addrs, sensors string
			var strong, proof int
			if err := r.Scan(&c.id, &c.subject, &c.state, &c.first, &c.last, &fams, &strong, &proof, &addrs, &sensors, &c.sightings, &c.lines, &c.closedAt); err != nil {
				return err
			}
			c.families, c.addrs, c.sensors = splitSet(fams), splitSet(addrs), splitSet(sensors)
			c.strong, c.proof, c.created = strong != 0, evidence.Proof(proof), created[c.subject]
			cases[c.subject] = &c
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// insertEvidence stores the lines not stored yet and returns them.
func (s *Store) insertEvidence(ctx context.Context, tx *store.Tx, evs []parsed) ([]*parsed, error) {
	type key struct {
		sensor, log string
		off         int64
	}
	var stored []*parsed
	for len(evs) > 0 {
		n := min(len(evs), evidenceChunk)
		var b strings.Builder
		b.Grow(64 + 20*n)
		b.WriteString("INSERT INTO desk_evidence (sensor, log, off, case_id, at, line) VALUES ")
		args := make([]any, 0, 6*n)
		byKey := make(map[key]*parsed, n)
		for i := range evs[:n] {
			e := &evs[i]
			values(&b, i, 6)
			var caseID any // NULL: a network line is nobody's case
			if e.caseID != 0 {
				caseID = e.caseID
			}
			args = append(args, e.l.Sensor, e.l.Log, e.l.Off, caseID, e.sg.first, string(e.l.Text))
			byKey[key{e.l.Sensor, e.l.Log, e.l.Off}] = e // the same key twice in a batch is stored once
		}
		b.WriteString(" ON CONFLICT (sensor, log, off) DO NOTHING RETURNING sensor, log, off")
		if err := s.queryEach(ctx, tx, b.String(), args, func(r scanner) error {
			var k key
			if err := r.Scan(&k.sensor, &k.log, &k.off); err != nil {
				return err
			}
			if e := byKey[k]; e != nil {
				stored = append(stored, e)
			}
			return nil
		}); err != nil {
			return nil, err
		}
		evs = evs[n:]
	}
	return stored, nil
}

// writeCases writes every case the batch added lines to with one upsert
// per chunk, the new addresses, and the audit trail's open and reopen
// rows.
func (s *Store) writeCases(ctx context.Context, tx *store.Tx, subjects []string, cases map[string]*caseRow) error {
	now := s.now().UnixMilli()
	type audit struct {
		caseID                 int64
		action, from, to, note string
	}
	var audits []audit
	var addrArgs []any
	var touched []*caseRow
	for _, subj := range subjects {
		c := cases[subj]
		if c.created {
			audits = append(audits, audit{c.id, "open", "", StateNew, ""})
		}
		if c.newLines == 0 {
			continue
		}
		if c.state == StateClosed && c.reopenAt > c.closedAt {
			audits = append(audits, audit{c.id, "reopen", StateClosed, StateNew, "a new strong sighting"})
			c.state = StateNew
		}
		for _, a := range c.newAddrs {
			addrArgs = append(addrArgs, a, c.id)
		}
		touched = append(touched, c)
	}
	for len(touched) > 0 {
		chunk := touched[:min(len(touched), caseChunk)]
		touched = touched[len(chunk):]
		// An UPDATE from a VALUES list, not an upsert: an upsert takes
		// a number from the id sequence even when it updates.
		var b strings.Builder
		b.WriteString(`WITH v (id, state, first_seen, last_seen, families, strong, proof, addresses, sensors, sightings, lines, rank) AS (VALUES `)
		row := "(?,?,?,?,?,?,?,?,?,?,?,?)" // SQLite takes the values' own types
		if tx.Dialect() == store.Postgres {
			row = "(CAST(? AS BIGINT), ?, CAST(? AS BIGINT), CAST(? AS BIGINT), ?, CAST(? AS INTEGER), CAST(? AS INTEGER), ?, ?, CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT))"
		}
		args := make([]any, 0, 12*len(chunk)+1)
		for i, c := range chunk {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(row)
			st := 0
			if c.strong {
				st = 1
			}
			args = append(args, c.id, c.state, c.first, c.last, joinSet(c.families), st, int(c.proof),
				joinSet(c.addrs), joinSet(c.sensors), c.sightings, c.lines, rankOf(c.strong, c.proof))
		}
		b.WriteString(`) UPDATE desk_cases SET state = v.state, first_seen = v.first_seen, last_seen = v.last_seen,
families = v.families, strong = v.strong, proof = v.proof, addresses = v.addresses, sensors = v.sensors,
sightings = v.sightings, lines = v.lines, rank = v.rank, updated_at = ? FROM v WHERE desk_cases.id = v.id`)
		args = append(args, now)
		if err := s.exec(ctx, tx, b.String(), args...); err != nil {
			return err
		}
	}
	for len(addrArgs) > 0 {
		n := min(len(addrArgs)/2, auditChunk)
		var b strings.Builder
		b.WriteString("INSERT INTO desk_case_addresses (address, case_id) VALUES ")
		for i := range n {
			values(&b, i, 2)
		}
		b.WriteString(" ON CONFLICT DO NOTHING")
		if err := s.exec(ctx, tx, b.String(), addrArgs[:2*n]...); err != nil {
			return err
		}
		addrArgs = addrArgs[2*n:]
	}
	for len(audits) > 0 {
		chunk := audits[:min(len(audits), auditChunk)]
		audits = audits[len(chunk):]
		var b strings.Builder
		b.WriteString("INSERT INTO desk_audit (case_id, at, actor, action, from_state, to_state, note) VALUES ")
		args := make([]any, 0, 7*len(chunk))
		for i, a := range chunk {
			values(&b, i, 7)
			args = append(args, a.caseID, now, "desk", a.action, a.from, a.to, a.note)
		}
		if err := s.exec(ctx, tx, b.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// values writes the i'th row of n placeholders of a VALUES list.
func values(b *strings.Builder, i, n int) {
	if i > 0 {
		b.WriteByte(',')
	}
	b.WriteByte('(')
	for j := range n {
		if j > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('?')
	}
	b.WriteByte(')')
}

// maxStmts bounds the prepared statements a Store keeps: a full chunk's
// text is always the same, a batch's last chunk varies with its size.
const maxStmts = 64

// prepared is q prepared for tx, when the database is SQLite (which would
// parse a statement of hundreds of rows on every run), else nil.
func (s *Store) prepared(ctx context.Context, tx *store.Tx, q string) *sql.Stmt {
	if tx.Dialect() != store.SQLite {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stmts[q]
	if st == nil {
		if len(s.stmts) >= maxStmts {
			return nil
		}
		var err error
		if st, err = s.db.Prepare(ctx, q); err != nil {
			return nil // the statement's error comes from running it
		}
		if s.stmts == nil {
			s.stmts = map[string]*sql.Stmt{}
		}
		s.stmts[q] = st
	}
	return tx.Stmt(ctx, st)
}

// exec runs a statement in tx, prepared when that pays.
func (s *Store) exec(ctx context.Context, tx *store.Tx, q string, args ...any) error {
	var err error
	if st := s.prepared(ctx, tx, q); st != nil {
		_, err = st.ExecContext(ctx, args...)
	} else {
		_, err = tx.Exec(ctx, q, args...)
	}
	return err
}

// queryEach runs a query in tx (prepared when that pays) and hands each
// row to fn.
func (s *Store) queryEach(ctx context.Context, tx *store.Tx, q string, args []any, fn func(scanner) error) error {
	var rows *sql.Rows
	var err error
	if st := s.prepared(ctx, tx, q); st != nil {
		rows, err = st.QueryContext(ctx, args...)
	} else {
		rows, err = tx.Query(ctx, q, args...)
	}
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// addSet adds v to set unless it is empty or there already.
func addSet(set []string, v string) []string {
	if v == "" || slices.Contains(set, v) {
		return set
	}
	return append(set, v)
}

func splitSet(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func joinSet(set []string) string {
	set = slices.Clone(set)
	slices.Sort(set)
	return strings.Join(set, ",")
}

// rankOf orders the case list: strong unforgeable evidence first, then
// strong, then by proof.
func rankOf(strong bool, proof evidence.Proof) int64 {
	r := int64(proof)
	if strong {
		r += 10
		if proof.Verified() {
			r += 10
		}
	}
	return r
}

func addAudit(ctx context.Context, tx *store.Tx, caseID, at int64, actor, action, from, to, note string) error {
	_, err := tx.Exec(ctx, `INSERT INTO desk_audit (case_id, at, actor, action, from_state, to_state, note) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		caseID, at, actor, action, from, to, note)
	return err
}
