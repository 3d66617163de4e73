package desk

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"wormsink/evidence"
	"wormsink/quarantine"
	"wormsink/store"
)

// Case is one subscriber's (or address's) sightings and what was done.
type Case struct {
	ID         int64     `json:"id"`
	Ticket     string    `json:"ticket"`
	Subject    string    `json:"subject"`
	State      string    `json:"state"`
	FirstSeen  time.Time `json:"first_seen"`
	LastSeen   time.Time `json:"last_seen"`
	Families   []string  `json:"families"`
	Evidence   string    `json:"evidence"` // strong or weak: the best seen
	Proof      string    `json:"proof"`    // the best proof seen
	Addresses  []string  `json:"addresses"`
	Sensors    []string  `json:"sensors"`
	Sightings  int64     `json:"sightings"`
	Lines      int64     `json:"lines"`
	NotifiedAt time.Time `json:"notified_at,omitzero"`
	Notice     string    `json:"notice,omitempty"` // the last notice's delivery status
	UpdatedAt  time.Time `json:"updated_at"`
}

// Ticket is the case's ticket number, as notices' subjects carry it.
func Ticket(id int64) string { return fmt.Sprintf("WS-%06d", id) }

// ParseTicket reads a ticket number back ("WS-000042" or "ws-42").
func ParseTicket(s string) (int64, bool) {
	if len(s) < 4 || !strings.EqualFold(s[:3], "WS-") {
		return 0, false
	}
	id, err := strconv.ParseInt(s[3:], 10, 64)
	return id, err == nil && id > 0
}

const caseCols = `id, subject, state, first_seen, last_seen, families, strong, proof, addresses, sensors, sightings, lines, notified_at, notice, updated_at`

type scanner interface{ Scan(...any) error }

func scanCase(r scanner) (Case, error) {
	var c Case
	var first, last, notified, updated int64
	var fams, addrs, sensors string
	var strong, proof int
	if err := r.Scan(&c.ID, &c.Subject, &c.State, &first, &last, &fams, &strong, &proof, &addrs, &sensors,
		&c.Sightings, &c.Lines, &notified, &c.Notice, &updated); err != nil {
		return c, err
	}
	c.Ticket = Ticket(c.ID)
	c.FirstSeen, c.LastSeen, c.UpdatedAt = ms(first), ms(last), ms(updated)
	if notified > 0 {
		c.NotifiedAt = ms(notified)
	}
	c.Families, c.Addresses, c.Sensors = nonNil(splitSet(fams)), nonNil(splitSet(addrs)), nonNil(splitSet(sensors))
	c.Evidence = "weak"
	if strong != 0 {
		c.Evidence = "strong"
	}
	c.Proof = evidence.Proof(proof).String()
	return c, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func ms(v int64) time.Time { return time.UnixMilli(v).UTC() }

// Filter narrows the case list. The zero Filter is every case.
type Filter struct {
	Family string    // a family the case has seen
	Proof  string    // the least proof (a Proof name)
	State  string    // one state; "open" is every state but closed
	Sensor string    // a sensor that saw the case
	Since  time.Time // last seen at or after
	Until  time.Time // first seen before
	Q      string    // a subscriber, an address, a subject or a ticket
	Limit  int       // 0 is DefaultLimit
	Offset int
}

// DefaultLimit is how many cases a list shows when Filter.Limit is 0.
const DefaultLimit = 100

// List returns the cases that pass f, the strongest and latest first.
func (s *Store) List(ctx context.Context, f Filter) ([]Case, error) {
	var where []string
	var args []any
	if f.Family != "" {
		where = append(where, "(',' || families || ',') LIKE ?")
		args = append(args, "%,"+likeEscape(f.Family)+",%")
	}
	if f.Sensor != "" {
		where = append(where, "(',' || sensors || ',') LIKE ?")
		args = append(args, "%,"+likeEscape(f.Sensor)+",%")
	}
	if f.Proof != "" {
		p, ok := evidence.ParseProof(f.Proof)
		if !ok {
			return nil, fmt.Errorf("desk: proof %q: want datagram, trusted-source, exchange or tcp", f.Proof)
		}
		where = append(where, "proof >= ?")
		args = append(args, int(p))
	}
	switch f.State {
	case "":
	case "open":
		where = append(where, "state <> ?")
		args = append(args, StateClosed)
	default:
		if !slices.Contains(States, f.State) {
			return nil, fmt.Errorf("desk: state %q: want one of %s or open", f.State, strings.Join(States, ", "))
		}
		where = append(where, "state = ?")
		args = append(args, f.State)
	}
	if !f.Since.IsZero() {
		where = append(where, "last_seen >= ?")
		args = append(args, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		where = append(where, "first_seen < ?")
		args = append(args, f.Until.UnixMilli())
	}
	if q := strings.TrimSpace(f.Q); q != "" {
		// One id list from the indexes (a UNION, not ORs: PostgreSQL
		// scanned every case for "subject IN … OR id IN (subquery)").
		cond := "SELECT id FROM desk_cases WHERE subject IN (?, ?, ?) UNION SELECT case_id FROM desk_case_addresses WHERE address = ?"
		addr := q
		if a, err := netip.ParseAddr(q); err == nil {
			addr = a.Unmap().String()
		}
		args = append(args, q, "subscriber:"+q, "address:"+addr, addr)
		if id, ok := ParseTicket(q); ok {
			cond += " UNION SELECT id FROM desk_cases WHERE id = ?"
			args = append(args, id)
		}
		where = append(where, "id IN ("+cond+")")
	}
	query := "SELECT " + caseCols + " FROM desk_cases"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	query += " ORDER BY rank DESC, last_seen DESC, id DESC LIMIT ? OFFSET ?"
	args = append(args, limit, max(f.Offset, 0))
	rows, err := s.db.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("desk: cases: %w", err)
	}
	defer rows.Close()
	out := []Case{}
	for rows.Next() {
		c, err := scanCase(rows)
		if err != nil {
			return nil, fmt.Errorf("desk: cases: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func likeEscape(s string) string {
	r := strings.NewReplacer("%", "", "_", "", ",", "")
	return r.Replace(s)
}

// Get returns one case.
func (s *Store) Get(ctx context.Context, id int64) (Case, error) {
	c, err := scanCase(s.db.QueryRow(ctx, "SELECT "+caseCols+" FROM desk_cases WHERE id = ?", id))
	if err != nil {
		if isNoRows(err) {
			return c, ErrNotFound
		}
		return c, fmt.Errorf("desk: case %d: %w", id, err)
	}
	return c, nil
}

// EvidenceLine is a stored line of a case.
type EvidenceLine struct {
	At     time.Time `json:"at"`
	Sensor string    `json:"sensor"`
	Line   string    `json:"line"`
}

// Evidence returns a case's newest lines, at most limit.
func (s *Store) Evidence(ctx context.Context, id int64, limit int) ([]EvidenceLine, error) {
	rows, err := s.db.Query(ctx, `SELECT at, sensor, line FROM desk_evidence WHERE case_id = ? ORDER BY at DESC, id DESC LIMIT ?`, id, limit)
	if err != nil {
		return nil, fmt.Errorf("desk: evidence of %d: %w", id, err)
	}
	defer rows.Close()
	out := []EvidenceLine{}
	for rows.Next() {
		var l EvidenceLine
		var at int64
		if err := rows.Scan(&at, &l.Sensor, &l.Line); err != nil {
			return nil, err
		}
		l.At = ms(at)
		out = append(out, l)
	}
	return out, rows.Err()
}

// AuditRow is one thing done to a case.
type AuditRow struct {
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	From   string    `json:"from,omitempty"`
	To     string    `json:"to,omitempty"`
	Note   string    `json:"note,omitempty"`
}

// Audit returns a case's trail, oldest first.
func (s *Store) Audit(ctx context.Context, id int64) ([]AuditRow, error) {
	rows, err := s.db.Query(ctx, `SELECT at, actor, action, from_state, to_state, note FROM desk_audit WHERE case_id = ? ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("desk: audit of %d: %w", id, err)
	}
	defer rows.Close()
	out := []AuditRow{}
	for rows.Next() {
		var a AuditRow
		var at int64
		if err := rows.Scan(&at, &a.Actor, &a.Action, &a.From, &a.To, &a.Note); err != nil {
			return nil, err
		}
		a.At = ms(at)
		out = append(out, a)
	}
	return out, rows.Err()
}

// Actions a person takes on a case.
const (
	ActNotify     = "notify"
	ActQuarantine = "quarantine"
	ActRelease    = "release"
	ActClose      = "close"
	ActNote       = "note"
)

// Actions lists them.
var Actions = []string{ActNotify, ActQuarantine, ActRelease, ActClose, ActNote}

// transitions says which states an action may start from, and where it
// goes ("" stays).
var transitions = map[string]struct {
	from []string
	to   string
}{
	ActNotify:     {[]string{StateNew, StateNotified, StateReleased}, StateNotified},
	ActQuarantine: {[]string{StateNew, StateNotified, StateReleased}, StateQuarantined},
	ActRelease:    {[]string{StateQuarantined}, StateReleased},
	ActClose:      {[]string{StateNew, StateNotified, StateReleased}, StateClosed},
	ActNote:       {States, ""},
}

// Allowed reports whether action may be taken on a case in state.
func Allowed(action, state string) bool {
	t, ok := transitions[action]
	return ok && slices.Contains(t.from, state)
}

// Transition is one case changing state, as the webhook sends it.
type Transition struct {
	Case   Case      `json:"case"`
	Action string    `json:"action"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Actor  string    `json:"actor"`
	Note   string    `json:"note,omitempty"`
	At     time.Time `json:"at"`
}

// transition records action on case id when the case is in a state it
// may start from; apply runs inside the transaction first (it may refuse).
func (s *Store) transition(ctx context.Context, id int64, action, actor, note string, apply func(tx *store.Tx, c Case) error) (Transition, error) {
	t, ok := transitions[action]
	if !ok {
		return Transition{}, fmt.Errorf("desk: unknown action %q", action)
	}
	var tr Transition
	err := s.db.Tx(ctx, func(tx *store.Tx) error {
		q := "SELECT " + caseCols + " FROM desk_cases WHERE id = ?"
		if tx.Dialect() == store.Postgres {
			q += " FOR UPDATE"
		}
		c, err := scanCase(tx.QueryRow(ctx, q, id))
		if err != nil {
			if isNoRows(err) {
				return ErrNotFound
			}
			return err
		}
		if !slices.Contains(t.from, c.State) {
			return fmt.Errorf("%s a %s case: %w", action, c.State, ErrTransition)
		}
		if apply != nil {
			if err := apply(tx, c); err != nil {
				return err
			}
		}
		to := t.to
		if to == "" {
			to = c.State
		}
		now := s.now()
		set := "state = ?, updated_at = ?"
		args := []any{to, now.UnixMilli()}
		if to == StateClosed {
			set += ", closed_at = ?"
			args = append(args, now.UnixMilli())
		}
		args = append(args, id)
		if _, err := tx.Exec(ctx, "UPDATE desk_cases SET "+set+" WHERE id = ?", args...); err != nil {
			return err
		}
		if err := addAudit(ctx, tx, id, now.UnixMilli(), actor, action, c.State, to, note); err != nil {
			return err
		}
		from := c.State
		c.State, c.UpdatedAt = to, now.UTC().Truncate(time.Millisecond)
		tr = Transition{Case: c, Action: action, From: from, To: to, Actor: actor, Note: note, At: now.UTC()}
		return nil
	})
	if err != nil {
		return Transition{}, fmt.Errorf("desk: case %d: %w", id, err)
	}
	return tr, nil
}

// Quarantiner is the quarantine engine as the desk uses it.
type Quarantiner interface {
	Add(ctx context.Context, subj quarantine.Subject, addrs []netip.Addr, family, actor, note string) (*quarantine.Entry, error)
	Release(ctx context.Context, subj quarantine.Subject, kind, actor, note string) (*quarantine.Entry, error)
}

// Act takes action on case id for actor. Quarantine and release go through
// q (on the same database, so every sensor enforces them within its poll);
// quarantine is refused for a case whose every sighting a forger could have
// produced.
func (s *Store) Act(ctx context.Context, q Quarantiner, id int64, action, actor, note string) (Transition, error) {
	return s.act(ctx, q, id, action, actor, note, nil)
}

// act is Act with apply run inside the transition's transaction, the
// case's row locked, before the state changes (it may refuse).
func (s *Store) act(ctx context.Context, q Quarantiner, id int64, action, actor, note string, apply func(tx *store.Tx, c Case) error) (Transition, error) {
	switch action {
	case ActQuarantine, ActRelease:
		c, err := s.Get(ctx, id)
		if err != nil {
			return Transition{}, err
		}
		if !Allowed(action, c.State) {
			return Transition{}, fmt.Errorf("desk: case %d: %s a %s case: %w", id, action, c.State, ErrTransition)
		}
		subj, err := quarantine.ParseSubject(c.Subject)
		if err != nil {
			return Transition{}, fmt.Errorf("desk: case %d: %w", id, err)
		}
		if q == nil {
			return Transition{}, errors.New("desk: no quarantine engine")
		}
		if action == ActQuarantine {
			if p, _ := evidence.ParseProof(c.Proof); !p.Verified() {
				return Transition{}, fmt.Errorf("desk: case %d: %w", id, ErrForgeable)
			}
			var addrs []netip.Addr
			for _, a := range c.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					addrs = append(addrs, ip)
				}
			}
			fam := ""
			if len(c.Families) > 0 {
				fam = c.Families[0]
			}
			if _, err := q.Add(ctx, subj, addrs, fam, actor, note); err != nil {
				return Transition{}, err
			}
		} else if _, err := q.Release(ctx, subj, quarantine.ReleaseAdmin, actor, note); err != nil {
			return Transition{}, err
		}
	}
	return s.transition(ctx, id, action, actor, note, apply)
}

// SetNotice records a notice's delivery status on a case.
func (s *Store) SetNotice(ctx context.Context, id int64, status string, sent bool) error {
	now := s.now().UnixMilli()
	q := "UPDATE desk_cases SET notice = ?, updated_at = ? WHERE id = ?"
	args := []any{status, now, id}
	if sent {
		q = "UPDATE desk_cases SET notice = ?, updated_at = ?, notified_at = ? WHERE id = ?"
		args = []any{status, now, now, id}
	}
	_, err := s.db.Exec(ctx, q, args...)
	return err
}

// Stats are the desk's figures.
type Stats struct {
	Lines   int64            `json:"lines"`
	Cases   int64            `json:"cases"`
	Open    int64            `json:"open"`
	ByState map[string]int64 `json:"by_state"`
	// NewPerDay counts cases opened per UTC day, the last 14 days, oldest first.
	NewPerDay []DayCount `json:"new_per_day"`
	// MeanRemediation is the mean time from opening to closing, of closed cases, in seconds.
	MeanRemediation float64 `json:"mean_time_to_remediation_s"`
}

// DayCount is one day's count.
type DayCount struct {
	Day   string `json:"day"`
	Count int64  `json:"count"`
}

// Stats computes the figures.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	st := Stats{ByState: map[string]int64{}}
	for _, v := range States {
		st.ByState[v] = 0
	}
	// Each case counts its lines: counting the evidence table itself took
	// seconds at ten million lines. Lines of nobody's case (network
	// lines) are counted through the index by case, where they sort
	// together.
	if err := s.db.QueryRow(ctx, "SELECT (SELECT COALESCE(SUM(lines), 0) FROM desk_cases) + (SELECT COUNT(*) FROM desk_evidence WHERE case_id IS NULL)").Scan(&st.Lines); err != nil {
		return st, fmt.Errorf("desk: stats: %w", err)
	}
	rows, err := s.db.Query(ctx, "SELECT state, COUNT(*) FROM desk_cases GROUP BY state")
	if err != nil {
		return st, fmt.Errorf("desk: stats: %w", err)
	}
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			rows.Close()
			return st, err
		}
		st.ByState[k] = n
		st.Cases += n
		if k != StateClosed {
			st.Open += n
		}
	}
	rows.Close()
	day := int64(24 * time.Hour / time.Millisecond)
	today := s.now().UnixMilli() / day
	counts := map[int64]int64{}
	rows, err = s.db.Query(ctx, "SELECT created_at / 86400000, COUNT(*) FROM desk_cases WHERE created_at >= ? GROUP BY created_at / 86400000", (today-13)*day)
	if err != nil {
		return st, fmt.Errorf("desk: stats: %w", err)
	}
	for rows.Next() {
		var d, n int64
		if err := rows.Scan(&d, &n); err != nil {
			rows.Close()
			return st, err
		}
		counts[d] = n
	}
	rows.Close()
	for d := today - 13; d <= today; d++ {
		st.NewPerDay = append(st.NewPerDay, DayCount{Day: time.UnixMilli(d * day).UTC().Format("2006-01-02"), Count: counts[d]})
	}
	var mean *float64
	if err := s.db.QueryRow(ctx, "SELECT AVG(CAST(closed_at - created_at AS DOUBLE PRECISION)) FROM desk_cases WHERE state = ? AND closed_at > 0", StateClosed).Scan(&mean); err != nil {
		return st, fmt.Errorf("desk: stats: %w", err)
	}
	if mean != nil {
		st.MeanRemediation = *mean / 1000
	}
	return st, nil
}
