package desk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
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

// insertChunk is how many lines one INSERT takes (5 values each: well
// under SQLite's 32766 variables and PostgreSQL's 65535).
const insertChunk = 500

// Ingest stores the batch's evidence lines that are not stored yet and
// folds them into cases, all in one transaction: either the whole batch is
// recorded or none of it is, so a shipper that gets an error sends it again.
func (s *Store) Ingest(ctx context.Context, lines []Line) (IngestResult, error) {
	var res IngestResult
	var p report.Parser
	err := s.db.Tx(ctx, func(tx *store.Tx) error {
		res = IngestResult{}
		folds := map[string]*caseFold{}
		var order []string
		type parsed struct {
			l  *Line
			sg sighting
		}
		var evs []parsed
		for i := range lines {
			l := &lines[i]
			kind, sg, perr := parse(&p, l.Text)
			switch kind {
			case report.LineEvidence:
				evs = append(evs, parsed{l, sg})
			case report.LineMalformed:
				res.Malformed++
				if res.FirstBad == "" {
					res.FirstBad = fmt.Sprintf("%s:%s@%d: %v", l.Sensor, l.Log, l.Off, perr)
				}
			default:
				res.Skipped++
			}
		}
		// Many rows per statement: one round trip per chunk, not per line.
		type key struct {
			sensor, log string
			off         int64
		}
		for len(evs) > 0 {
			n := min(len(evs), insertChunk)
			var b strings.Builder
			b.WriteString("INSERT INTO desk_evidence (sensor, log, off, at, line) VALUES ")
			args := make([]any, 0, 5*n)
			byKey := make(map[key]*parsed, n)
			for i := range evs[:n] {
				e := &evs[i]
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString("(?, ?, ?, ?, ?)")
				args = append(args, e.l.Sensor, e.l.Log, e.l.Off, e.sg.first, string(e.l.Text))
				k := key{e.l.Sensor, e.l.Log, e.l.Off}
				if byKey[k] != nil {
					res.Duplicate++ // the same key twice in one batch
				}
				byKey[k] = e
			}
			b.WriteString(" ON CONFLICT (sensor, log, off) DO NOTHING RETURNING id, sensor, log, off")
			rows, err := tx.Query(ctx, b.String(), args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var id int64
				var k key
				if err := rows.Scan(&id, &k.sensor, &k.log, &k.off); err != nil {
					rows.Close()
					return err
				}
				e := byKey[k]
				if e == nil {
					continue
				}
				res.Stored++
				if e.sg.subject == "" {
					continue
				}
				f := folds[e.sg.subject]
				if f == nil {
					f = &caseFold{}
					folds[e.sg.subject] = f
					order = append(order, e.sg.subject)
				}
				f.add(e.sg, id)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			evs = evs[n:]
		}
		res.Duplicate = len(lines) - res.Stored - res.Skipped - res.Malformed
		slices.Sort(order) // one lock order for every writer: no deadlocks between desks
		for _, subj := range order {
			if err := s.fold(ctx, tx, subj, folds[subj]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return IngestResult{}, fmt.Errorf("desk: ingest: %w", err)
	}
	return res, nil
}

// caseFold is a batch's sightings of one subject.
type caseFold struct {
	first, last int64
	families    []string
	strong      bool
	proof       evidence.Proof
	addrs       []string
	sensors     []string
	sightings   uint64
	lines       int64
	ids         []int64
	reopenAt    int64 // the latest strong, unforgeable sighting
}

func (f *caseFold) add(sg sighting, id int64) {
	if f.lines == 0 || sg.first < f.first {
		f.first = sg.first
	}
	f.last = max(f.last, sg.last)
	f.families = addSet(f.families, sg.family)
	f.strong = f.strong || sg.strong
	f.proof = max(f.proof, sg.proof)
	f.addrs = addSet(f.addrs, sg.addr)
	f.sensors = addSet(f.sensors, sg.sensor)
	f.sightings += sg.count
	f.lines++
	f.ids = append(f.ids, id)
	if sg.strongSeen {
		f.reopenAt = max(f.reopenAt, sg.last)
	}
}

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

func (s *Store) fold(ctx context.Context, tx *store.Tx, subj string, f *caseFold) error {
	now := s.now().UnixMilli()
	r, err := tx.Exec(ctx, `INSERT INTO desk_cases (subject, state, first_seen, last_seen, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (subject) DO NOTHING`, subj, StateNew, f.first, f.last, now, now)
	if err != nil {
		return err
	}
	created, _ := r.RowsAffected()
	q := `SELECT id, state, first_seen, last_seen, families, strong, proof, addresses, sensors, closed_at FROM desk_cases WHERE subject = ?`
	if tx.Dialect() == store.Postgres {
		q += " FOR UPDATE"
	}
	var (
		id, first, last, closedAt   int64
		state, fams, addrs, sensors string
		strong, proof               int
	)
	if err := tx.QueryRow(ctx, q, subj).Scan(&id, &state, &first, &last, &fams, &strong, &proof, &addrs, &sensors, &closedAt); err != nil {
		return err
	}
	if created == 1 {
		if err := addAudit(ctx, tx, id, now, "desk", "open", "", StateNew, ""); err != nil {
			return err
		}
	} else {
		first, last = min(first, f.first), max(last, f.last)
	}
	famSet, addrSet, sensorSet := splitSet(fams), splitSet(addrs), splitSet(sensors)
	for _, v := range f.families {
		famSet = addSet(famSet, v)
	}
	var newAddrs []string
	for _, v := range f.addrs {
		if !slices.Contains(addrSet, v) {
			newAddrs = append(newAddrs, v)
			addrSet = append(addrSet, v)
		}
	}
	for _, v := range f.sensors {
		sensorSet = addSet(sensorSet, v)
	}
	isStrong := strong != 0 || f.strong
	pr := max(evidence.Proof(proof), f.proof)
	if state == StateClosed && f.reopenAt > closedAt {
		if err := addAudit(ctx, tx, id, now, "desk", "reopen", StateClosed, StateNew, "a new strong sighting"); err != nil {
			return err
		}
		state = StateNew
	}
	st := 0
	if isStrong {
		st = 1
	}
	if _, err := tx.Exec(ctx, `UPDATE desk_cases SET state = ?, first_seen = ?, last_seen = ?, families = ?, strong = ?, proof = ?,
addresses = ?, sensors = ?, sightings = sightings + ?, lines = lines + ?, rank = ?, updated_at = ? WHERE id = ?`,
		state, first, last, joinSet(famSet), st, int(pr), joinSet(addrSet), joinSet(sensorSet),
		int64(f.sightings), f.lines, rankOf(isStrong, pr), now, id); err != nil {
		return err
	}
	for _, a := range newAddrs {
		if _, err := tx.Exec(ctx, `INSERT INTO desk_case_addresses (address, case_id) VALUES (?, ?) ON CONFLICT DO NOTHING`, a, id); err != nil {
			return err
		}
	}
	for ids := f.ids; len(ids) > 0; {
		n := min(len(ids), 400)
		var b strings.Builder
		b.WriteString("UPDATE desk_evidence SET case_id = ? WHERE id IN (")
		for i, v := range ids[:n] {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatInt(v, 10)) // integers from the database: no placeholder needed
		}
		b.WriteByte(')')
		if _, err := tx.Exec(ctx, b.String(), id); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

func addAudit(ctx context.Context, tx *store.Tx, caseID, at int64, actor, action, from, to, note string) error {
	_, err := tx.Exec(ctx, `INSERT INTO desk_audit (case_id, at, actor, action, from_state, to_state, note) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		caseID, at, actor, action, from, to, note)
	return err
}
