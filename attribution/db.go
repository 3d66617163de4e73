package attribution

import (
	"context"
	"database/sql"
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"wormsink/store"
)

// What the store holds. Times are Unix milliseconds (BIGINT); addresses
// and prefixes are canonical text (netip's String: "192.0.2.1",
// "2001:db8::/56"), empty when absent, so both dialects share one schema
// and an operator can read the tables with sqlite3 or psql. A 0 stop_ms or
// end_ms means still open: an open row ends, when it is read, at its
// last_ms plus the timeout or at the start of the next row on the same
// address (port), so a lost Stop or release never needs a write.
var migrations = []store.Migration{
	{Version: 1, Both: `CREATE TABLE attribution_sessions (
	id ` + store.AutoID + `,
	nas TEXT NOT NULL,
	session_id TEXT NOT NULL,
	subscriber TEXT NOT NULL,
	framed_ip TEXT NOT NULL DEFAULT '',
	framed_ipv6_prefix TEXT NOT NULL DEFAULT '',
	delegated_ipv6_prefix TEXT NOT NULL DEFAULT '',
	calling_station TEXT NOT NULL DEFAULT '',
	start_ms BIGINT NOT NULL,
	last_ms BIGINT NOT NULL,
	stop_ms BIGINT NOT NULL DEFAULT 0,
	UNIQUE (nas, session_id, start_ms))`},
	{Version: 2, SQLite: `CREATE INDEX attribution_sessions_open ON attribution_sessions (nas, stop_ms)`},
	{Version: 3, SQLite: `CREATE INDEX attribution_sessions_framed ON attribution_sessions (framed_ip, start_ms)`},
	{Version: 4, SQLite: `CREATE TABLE attribution_nat (
	public_ip TEXT NOT NULL,
	port_lo INTEGER NOT NULL,
	port_hi INTEGER NOT NULL,
	inside_ip TEXT NOT NULL,
	inside_port INTEGER NOT NULL,
	start_ms BIGINT NOT NULL,
	last_ms BIGINT NOT NULL,
	end_ms BIGINT NOT NULL DEFAULT 0,
	source TEXT NOT NULL,
	PRIMARY KEY (public_ip, port_lo, start_ms, inside_ip, inside_port))`},
	{Version: 5, SQLite: `CREATE INDEX attribution_nat_last ON attribution_nat (last_ms)`},
	// Sensors sharing one database read what the others stored: every
	// write transaction takes the next number from attribution_clock and
	// stamps the rows it inserts or changes with it and with its writer.
	// The clock's row stays locked until the commit, so transactions
	// commit in the order of their numbers: once the clock reads N, every
	// row stamped N or less is visible, and a reader that has applied
	// everything up to N never needs to look below N again.
	{Version: 6, SQLite: `ALTER TABLE attribution_sessions ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE attribution_sessions ADD COLUMN writer BIGINT NOT NULL DEFAULT 0;
ALTER TABLE attribution_nat ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE attribution_nat ADD COLUMN writer BIGINT NOT NULL DEFAULT 0;
CREATE INDEX attribution_sessions_seq ON attribution_sessions (seq);
CREATE INDEX attribution_nat_seq ON attribution_nat (seq);
CREATE TABLE attribution_clock (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL);
INSERT INTO attribution_clock (id, seq) VALUES (1, 0)`},
	// Only Accounting-On/Off looks sessions up by NAS, and only the open
	// ones: an index of the open sessions alone is smaller, and a Stop
	// takes its session out of it instead of moving it to a new place
	// (one B-tree write fewer per Stop, on both databases).
	{Version: 7, SQLite: `DROP INDEX attribution_sessions_open;
CREATE INDEX attribution_sessions_open ON attribution_sessions (nas) WHERE stop_ms = 0`},
}

// stamp is what a write transaction marks its rows with: its number from
// attribution_clock and the writer (one per Attributor), so that a reader
// skips its own rows.
type stamp struct{ seq, writer int64 }

// nextStamp takes the transaction's number; the clock's row stays locked
// until the transaction ends.
func nextStamp(ctx context.Context, q querier, writer int64) (stamp, error) {
	rows, err := q.Query(ctx, `UPDATE attribution_clock SET seq = seq + 1 WHERE id = 1 RETURNING seq`)
	if err != nil {
		return stamp{}, err
	}
	defer rows.Close()
	st := stamp{writer: writer}
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return stamp{}, err
		}
		return stamp{}, fmt.Errorf("no clock row")
	}
	if err := rows.Scan(&st.seq); err != nil {
		return stamp{}, err
	}
	return st, rows.Close()
}

// clock returns the number of the last committed write transaction.
func clock(ctx context.Context, q querier) (int64, error) {
	rows, err := q.Query(ctx, `SELECT seq FROM attribution_clock WHERE id = 1`)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var seq int64
	if rows.Next() {
		if err := rows.Scan(&seq); err != nil {
			return 0, err
		}
	}
	return seq, rows.Err()
}

// changedSince reads the sessions and bindings other writers stamped in
// (from, to].
func changedSince(ctx context.Context, q querier, from, to, writer int64) ([]Session, []Binding, error) {
	rows, err := q.Query(ctx, `SELECT `+sessionCols+` FROM attribution_sessions WHERE seq > ? AND seq <= ? AND writer <> ? ORDER BY start_ms`, from, to, writer)
	if err != nil {
		return nil, nil, err
	}
	ss, err := scanSessions(rows)
	if err != nil {
		return nil, nil, err
	}
	rows, err = q.Query(ctx, `SELECT `+natCols+` FROM attribution_nat WHERE seq > ? AND seq <= ? AND writer <> ? ORDER BY start_ms`, from, to, writer)
	if err != nil {
		return nil, nil, err
	}
	bs, err := scanBindings(rows)
	if err != nil {
		return nil, nil, err
	}
	return ss, bs, nil
}

const sessionCols = `nas, session_id, subscriber, framed_ip, framed_ipv6_prefix, delegated_ipv6_prefix, calling_station, start_ms, last_ms, stop_ms`

type querier interface {
	Exec(ctx context.Context, query string, args ...any) (sql.Result, error)
	Query(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.Unmap().String()
}

func prefixText(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.Masked().String()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

func scanSessions(rows *sql.Rows) ([]Session, error) {
	defer rows.Close()
	var out []Session
	// One set of destinations for all the rows: each variable passed to
	// Scan would otherwise be allocated anew for every row.
	var c struct {
		nas, framed, v6, del string
		start, last, stop    int64
		s                    Session
	}
	dest := []any{&c.nas, &c.s.ID, &c.s.Subscriber, &c.framed, &c.v6, &c.del, &c.s.CallingStation, &c.start, &c.last, &c.stop}
	for rows.Next() {
		c.s = Session{}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		s := c.s
		s.NAS = parseAddr(c.nas)
		s.Framed = parseAddr(c.framed)
		s.FramedV6, s.Delegated = parsePrefix(c.v6), parsePrefix(c.del)
		s.Start, s.Last, s.Stop = fromMS(c.start), fromMS(c.last), fromMS(c.stop)
		out = append(out, s)
	}
	return out, rows.Err()
}

// parseAddr and parsePrefix read what addrText and prefixText wrote: ""
// (absent, most prefixes) is the zero value, without the error netip
// would allocate for it.
func parseAddr(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	a, _ := netip.ParseAddr(s)
	return a
}

func parsePrefix(s string) netip.Prefix {
	if s == "" {
		return netip.Prefix{}
	}
	p, _ := netip.ParsePrefix(s)
	return p
}

func scanBindings(rows *sql.Rows) ([]Binding, error) {
	defer rows.Close()
	var out []Binding
	for rows.Next() {
		var b Binding
		var pub, in string
		var lo, hi, inPort int
		var start, last, end int64
		if err := rows.Scan(&pub, &lo, &hi, &in, &inPort, &start, &last, &end, &b.Source); err != nil {
			return nil, err
		}
		b.Public, _ = netip.ParseAddr(pub)
		b.Inside, _ = netip.ParseAddr(in)
		b.PortLo, b.PortHi, b.InsidePort = uint16(lo), uint16(hi), uint16(inPort)
		b.Start, b.Last, b.End = fromMS(start), fromMS(last), fromMS(end)
		out = append(out, b)
	}
	return out, rows.Err()
}

const natCols = `public_ip, port_lo, port_hi, inside_ip, inside_port, start_ms, last_ms, end_ms, source`

// AcctStatus is RFC 2866's Acct-Status-Type.
type AcctStatus uint32

const (
	AcctStart   AcctStatus = 1
	AcctStop    AcctStatus = 2
	AcctInterim AcctStatus = 3
	AcctOn      AcctStatus = 7
	AcctOff     AcctStatus = 8
)

// AcctEvent is one accounting record: a RADIUS Accounting-Request or a
// detail file record.
type AcctEvent struct {
	Status      AcctStatus
	Session     Session       // NAS and ID always; the rest as sent
	At          time.Time     // when it happened (Event-Timestamp, else received less Acct-Delay-Time)
	SessionTime time.Duration // Acct-Session-Time: how long the session had lasted at At
}

// applySession writes one accounting record and returns the session rows
// it created or changed.
func applySession(ctx context.Context, q querier, st stamp, ev *AcctEvent) ([]Session, error) {
	s := ev.Session
	at := ev.At.UnixMilli()
	nas := addrText(s.NAS)
	switch ev.Status {
	case AcctOn, AcctOff:
		// The NAS restarted or stops: every session it had is over.
		rows, err := q.Query(ctx, `UPDATE attribution_sessions SET stop_ms = ?, seq = ?, writer = ? WHERE nas = ? AND stop_ms = 0 AND start_ms <= ? RETURNING `+sessionCols, at, st.seq, st.writer, nas, at)
		if err != nil {
			return nil, err
		}
		return scanSessions(rows)
	case AcctStart:
		s.Start, s.Last = ev.At, ev.At
		return insertSession(ctx, q, st, &s)
	case AcctInterim, AcctStop:
		stop := int64(0)
		if ev.Status == AcctStop {
			stop = at
		}
		rows, err := q.Query(ctx, `UPDATE attribution_sessions SET
	last_ms = CASE WHEN last_ms < ? THEN ? ELSE last_ms END,
	stop_ms = ?, seq = ?, writer = ?,
	framed_ip = CASE WHEN framed_ip = '' THEN ? ELSE framed_ip END,
	framed_ipv6_prefix = CASE WHEN framed_ipv6_prefix = '' THEN ? ELSE framed_ipv6_prefix END,
	delegated_ipv6_prefix = CASE WHEN delegated_ipv6_prefix = '' THEN ? ELSE delegated_ipv6_prefix END
	WHERE nas = ? AND session_id = ? AND stop_ms = 0 RETURNING `+sessionCols,
			at, at, stop, st.seq, st.writer, addrText(s.Framed), prefixText(s.FramedV6), prefixText(s.Delegated), nas, s.ID)
		if err != nil {
			return nil, err
		}
		got, err := scanSessions(rows)
		if err != nil || len(got) > 0 {
			return got, err
		}
		if ev.Status == AcctStop {
			// A retransmitted Stop finds its session already stopped.
			rows, err := q.Query(ctx, `SELECT `+sessionCols+` FROM attribution_sessions WHERE nas = ? AND session_id = ? AND stop_ms = ?`, nas, s.ID, at)
			if err != nil {
				return nil, err
			}
			got, err := scanSessions(rows)
			if err != nil || len(got) > 0 {
				return nil, err
			}
		}
		// The Start was lost (or came before wormsink did): the session
		// began Acct-Session-Time before this record.
		s.Start = ev.At.Add(-ev.SessionTime)
		s.Last = ev.At
		if ev.Status == AcctStop {
			s.Stop = ev.At
		}
		return insertSession(ctx, q, st, &s)
	}
	return nil, fmt.Errorf("unknown Acct-Status-Type %d", ev.Status)
}

func insertSession(ctx context.Context, q querier, st stamp, s *Session) ([]Session, error) {
	rows, err := q.Query(ctx, `INSERT INTO attribution_sessions (`+sessionCols+`, seq, writer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (nas, session_id, start_ms) DO UPDATE SET seq = excluded.seq, writer = excluded.writer,
	last_ms = CASE WHEN excluded.last_ms > attribution_sessions.last_ms THEN excluded.last_ms ELSE attribution_sessions.last_ms END,
	stop_ms = CASE WHEN excluded.stop_ms <> 0 THEN excluded.stop_ms ELSE attribution_sessions.stop_ms END
	RETURNING `+sessionCols,
		addrText(s.NAS), s.ID, s.Subscriber, addrText(s.Framed), prefixText(s.FramedV6), prefixText(s.Delegated), s.CallingStation,
		ms(s.Start), ms(s.Last), ms(s.Stop), st.seq, st.writer)
	if err != nil {
		return nil, err
	}
	return scanSessions(rows)
}

// natRowsPerInsert bounds the rows of one multi-row INSERT (9 parameters
// each, well under SQLite's and PostgreSQL's parameter limits).
const natRowsPerInsert = 200

// upsertBindings writes bindings whose start is known: new ones are
// inserted, known ones (same public address, port, start and inside
// address and port) get the later last_ms and the end.
func upsertBindings(ctx context.Context, q querier, st stamp, bs []Binding) error {
	_, err := batched[Binding, Binding](ctx, q, bs, natRowsPerInsert,
		`INSERT INTO attribution_nat (`+natCols+`, seq, writer) VALUES `, `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		` ON CONFLICT (public_ip, port_lo, start_ms, inside_ip, inside_port) DO UPDATE SET seq = excluded.seq, writer = excluded.writer,
	last_ms = CASE WHEN excluded.last_ms > attribution_nat.last_ms THEN excluded.last_ms ELSE attribution_nat.last_ms END,
	end_ms = CASE WHEN excluded.end_ms <> 0 THEN excluded.end_ms ELSE attribution_nat.end_ms END`,
		nil, func(args []any, b Binding) []any {
			return append(args, addrText(b.Public), int(b.PortLo), int(b.PortHi), addrText(b.Inside), int(b.InsidePort),
				ms(b.Start), max(ms(b.Last), ms(b.Start)), ms(b.End), b.Source, st.seq, st.writer)
		}, nil, nil)
	return err
}

// batched runs one statement per chunk of at most per items (a power of
// two): head, then
// row once for each item (comma-separated), then tail. Every statement's
// arguments are prefix, then what add appends for each item. scan reads
// the rows a statement returns; with scan nil the statements are
// executed, done (when not nil) is given each one's result, and nothing
// is returned.
func batched[T, R any](ctx context.Context, q querier, items []T, per int, head, row, tail string, prefix []any,
	add func(args []any, item T) []any, scan func(*sql.Rows) ([]R, error), done func(sql.Result) error) ([]R, error) {
	var out []R
	var sb strings.Builder
	args := make([]any, 0, len(prefix)+min(len(items), per)*strings.Count(row, "?"))
	for len(items) > 0 {
		// A power of two rows: few texts, each prepared once by the
		// writer's stmtCache.
		n := 1 << (bits.Len(uint(min(len(items), per))) - 1)
		sb.Reset()
		args = append(args[:0], prefix...)
		sb.WriteString(head)
		for i, it := range items[:n] {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(row)
			args = add(args, it)
		}
		sb.WriteString(tail)
		if scan == nil {
			r, err := q.Exec(ctx, sb.String(), args...)
			if err != nil {
				return nil, err
			}
			if done != nil {
				if err := done(r); err != nil {
					return nil, err
				}
			}
		} else {
			rows, err := q.Query(ctx, sb.String(), args...)
			if err != nil {
				return nil, err
			}
			got, err := scan(rows)
			if err != nil {
				return nil, err
			}
			out = append(out, got...)
		}
		items = items[n:]
	}
	return out, nil
}

// startSlack is how far a record's start may be from the stored one and
// still name the same binding: conntrack writes a NEW and its DESTROY with
// flow.start a few microseconds apart.
const startSlack = 2000 // ms

// touchesPerUpdate bounds the rows of one batched UPDATE (9 parameters
// each).
const touchesPerUpdate = 200

// touch is an event that names an open binding without being sure of its
// start (a release, an interim re-send, a DESTROY): the open binding of its
// key whose start lies in [lo, hi] gets last = at and, for a close, end = at.
type touch struct {
	b      *Binding
	lo, hi int64
	at     int64
	end    int64 // at for a close, 0 for an interim
}

func touchOf(ev *NATEvent) touch {
	at := ev.At.UnixMilli()
	t := touch{b: &ev.Binding, lo: 0, hi: at, at: at}
	if !ev.Binding.Start.IsZero() {
		// conntrack writes a NEW and its DESTROY with flow.start a few
		// microseconds apart: the same binding within startSlack.
		t.lo, t.hi = ms(ev.Binding.Start)-startSlack, ms(ev.Binding.Start)+startSlack
	}
	if ev.Kind == NATClose {
		t.end = at
	}
	return t
}

// touchBindings applies touches in batched UPDATEs and returns the rows
// they changed.
func touchBindings(ctx context.Context, q querier, pg bool, st stamp, ts []touch) ([]Binding, error) {
	row := `(?, ?, ?, ?, ?, ?, ?, ?, ?)`
	if pg {
		// The casts give PostgreSQL the types (parameters in VALUES would
		// be text); SQLite compares without them, and parses faster.
		row = `(CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS INTEGER), CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT))`
	}
	return batched(ctx, q, ts, touchesPerUpdate, `UPDATE attribution_nat SET seq = ?, writer = ?,
	last_ms = CASE WHEN v.column8 > attribution_nat.last_ms THEN v.column8 ELSE attribution_nat.last_ms END,
	end_ms = v.column9
	FROM (VALUES `, row, `) AS v
	WHERE attribution_nat.public_ip = v.column1 AND attribution_nat.port_lo = v.column2 AND attribution_nat.port_hi = v.column3
	AND attribution_nat.inside_ip = v.column4 AND attribution_nat.inside_port = v.column5
	AND attribution_nat.end_ms = 0 AND attribution_nat.start_ms BETWEEN v.column6 AND v.column7
	RETURNING `+qualified("attribution_nat", natCols),
		[]any{st.seq, st.writer}, func(args []any, t touch) []any {
			return append(args, addrText(t.b.Public), int(t.b.PortLo), int(t.b.PortHi), addrText(t.b.Inside), int(t.b.InsidePort), t.lo, t.hi, t.at, t.end)
		}, scanBindings, nil)
}

func qualified(table, cols string) string {
	f := strings.Split(cols, ", ")
	for i := range f {
		f[i] = table + "." + f[i]
	}
	return strings.Join(f, ", ")
}

// load reads every session and binding that may still matter at now
// (within the retention) into the index, oldest first.
func load(ctx context.Context, db *store.DB, x *Index, cutoff int64) error {
	rows, err := db.Query(ctx, `SELECT `+sessionCols+` FROM attribution_sessions WHERE stop_ms = 0 OR stop_ms >= ? ORDER BY start_ms`, cutoff)
	if err != nil {
		return fmt.Errorf("attribution: load sessions: %w", err)
	}
	ss, err := scanSessions(rows)
	if err != nil {
		return fmt.Errorf("attribution: load sessions: %w", err)
	}
	x.mu.Lock()
	for i := range ss {
		x.putSessionLocked(&ss[i])
	}
	x.mu.Unlock()
	rows, err = db.Query(ctx, `SELECT `+natCols+` FROM attribution_nat WHERE end_ms = 0 OR end_ms >= ? ORDER BY start_ms`, cutoff)
	if err != nil {
		return fmt.Errorf("attribution: load bindings: %w", err)
	}
	defer rows.Close()
	// Row by row: ten million bindings are not held twice.
	var b Binding
	var pub, in string
	var lo, hi, inPort int
	var start, last, end int64
	x.mu.Lock()
	defer x.mu.Unlock()
	for rows.Next() {
		if err := rows.Scan(&pub, &lo, &hi, &in, &inPort, &start, &last, &end, &b.Source); err != nil {
			return fmt.Errorf("attribution: load bindings: %w", err)
		}
		b.Public, _ = netip.ParseAddr(pub)
		b.Inside, _ = netip.ParseAddr(in)
		b.PortLo, b.PortHi, b.InsidePort = uint16(lo), uint16(hi), uint16(inPort)
		b.Start, b.Last, b.End = fromMS(start), fromMS(last), fromMS(end)
		x.putNATLocked(&b)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("attribution: load bindings: %w", err)
	}
	return nil
}

// prune deletes what ended before cutoff.
func prune(ctx context.Context, db querier, cutoff, sessionTimeout, natTimeout int64) (sessions, nat int64, err error) {
	r, err := db.Exec(ctx, `DELETE FROM attribution_sessions WHERE (stop_ms <> 0 AND stop_ms < ?) OR (stop_ms = 0 AND last_ms < ?)`, cutoff, cutoff-sessionTimeout)
	if err != nil {
		return 0, 0, fmt.Errorf("attribution: retention: %w", err)
	}
	sessions, _ = r.RowsAffected()
	r, err = db.Exec(ctx, `DELETE FROM attribution_nat WHERE (end_ms <> 0 AND end_ms < ?) OR (end_ms = 0 AND last_ms < ?)`, cutoff, cutoff-natTimeout)
	if err != nil {
		return sessions, 0, fmt.Errorf("attribution: retention: %w", err)
	}
	nat, _ = r.RowsAffected()
	return sessions, nat, nil
}

// sessionsPerStatement bounds the rows of one batched INSERT or UPDATE of
// sessions (10 parameters each).
const sessionsPerStatement = 200

// applyAccounting writes a batch of accounting records, in few statements:
// the Starts in multi-row upserts, then the Interim-Updates and Stops in
// batched UPDATEs, then what those did not find (a lost Start, a repeated
// Stop) and Accounting-On/Off one by one. The order keeps a Start and its
// Stop in one batch right; an update only touches sessions started no later
// than itself.
//
// An Interim-Update that would only move its open session's last time, by
// less than slack (ms), is not written: the session is read instead and
// returned with the later time, for the index. The store's last time then
// lags by less than slack, which only matters for a session whose Stop is
// lost, read back from the store (a restart, another process): it ends that
// much earlier. What an Interim-Update binds (subscriber, addresses) is
// stored before it is answered either way.
func applyAccounting(ctx context.Context, q querier, st stamp, evs []*AcctEvent, slack int64) ([]Session, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	type skey struct {
		nas, id string
		start   int64
	}
	type ukey struct{ nas, id string }
	starts := make([]Session, 0, len(evs))
	startAt := make(map[skey]int, len(evs))
	updates := make([]*AcctEvent, 0, len(evs))
	updateAt := make(map[ukey]int, len(evs))
	var rest []*AcctEvent
	for _, ev := range evs {
		switch ev.Status {
		case AcctStart:
			s := ev.Session
			s.Start, s.Last = ev.At, ev.At
			k := skey{addrText(s.NAS), s.ID, ms(s.Start)}
			if i, ok := startAt[k]; ok {
				starts[i] = s // a retransmission: one row
				continue
			}
			startAt[k] = len(starts)
			starts = append(starts, s)
		case AcctInterim, AcctStop:
			k := ukey{addrText(ev.Session.NAS), ev.Session.ID}
			if i, ok := updateAt[k]; ok {
				// Two updates of one session: the later time, and a Stop wins.
				u := *updates[i]
				if ev.At.After(u.At) {
					u.At = ev.At
				}
				if ev.Status == AcctStop {
					u.Status = AcctStop
				}
				updates[i] = &u
				continue
			}
			updateAt[k] = len(updates)
			updates = append(updates, ev)
		default:
			rest = append(rest, ev)
		}
	}
	out := make([]Session, 0, len(evs))
	got, err := insertSessions(ctx, q, st, starts)
	if err != nil {
		return nil, err
	}
	out = append(out, got...)
	got, err = updateSessions(ctx, q, st, updates, slack)
	if err != nil {
		return nil, err
	}
	found := make(map[ukey]int, len(got))
	for i := range got {
		found[ukey{addrText(got[i].NAS), got[i].ID}] = i
	}
	var unwritten []*AcctEvent // Interim-Updates not written: coalesced or of an unknown session
	for _, ev := range updates {
		k := ukey{addrText(ev.Session.NAS), ev.Session.ID}
		i, ok := found[k]
		switch {
		case ok && fills(&got[i], &ev.Session):
			// The update leaves the addresses alone (an UPDATE that sets
			// an indexed column rewrites its index entry even when the
			// value stays): the rare record that brings one its session
			// lacked fills it in here.
			filled, err := fillSession(ctx, q, st, &got[i], &ev.Session)
			if err != nil {
				return nil, err
			}
			if len(filled) > 0 {
				got[i] = filled[0]
			}
		case ok:
		case ev.Status == AcctInterim:
			unwritten = append(unwritten, ev)
		default:
			rest = append(rest, ev)
		}
	}
	out = append(out, got...)
	if len(unwritten) > 0 {
		open, err := openSessions(ctx, q, unwritten)
		if err != nil {
			return nil, err
		}
		at := make(map[ukey]time.Time, len(unwritten))
		for _, ev := range unwritten {
			at[ukey{addrText(ev.Session.NAS), ev.Session.ID}] = ev.At
		}
		for i := range open {
			k := ukey{addrText(open[i].NAS), open[i].ID}
			if t, ok := at[k]; ok {
				if t.After(open[i].Last) {
					open[i].Last = t
				}
				delete(at, k)
				out = append(out, open[i])
			}
		}
		for _, ev := range unwritten {
			if _, ok := at[ukey{addrText(ev.Session.NAS), ev.Session.ID}]; ok {
				rest = append(rest, ev) // no open session: the Start was lost
			}
		}
	}
	for _, ev := range rest {
		got, err := applySession(ctx, q, st, ev)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

// fills reports whether s brings an address or prefix that the stored row
// lacks.
func fills(row, s *Session) bool {
	return !row.Framed.IsValid() && s.Framed.IsValid() ||
		!row.FramedV6.IsValid() && s.FramedV6.IsValid() ||
		!row.Delegated.IsValid() && s.Delegated.IsValid()
}

// insertSessions stores the Starts ss and returns their rows. Most are
// new: they are inserted, nothing read back, and returned as given (what
// the store now holds). A chunk in which some session was already stored
// (a retransmitted Start) is written again as an upsert that returns the
// rows as stored.
func insertSessions(ctx context.Context, q querier, st stamp, ss []Session) ([]Session, error) {
	out := make([]Session, 0, len(ss))
	for len(ss) > 0 {
		n := 1 << (bits.Len(uint(min(len(ss), sessionsPerStatement))) - 1)
		chunk := ss[:n]
		ss = ss[n:]
		var inserted int64
		_, err := batched[Session, Session](ctx, q, chunk, n,
			`INSERT INTO attribution_sessions (`+sessionCols+`, seq, writer) VALUES `, `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			` ON CONFLICT (nas, session_id, start_ms) DO NOTHING`, nil, sessionArgs(st), nil, func(r sql.Result) error {
				var err error
				inserted, err = r.RowsAffected()
				return err
			})
		if err != nil {
			return nil, err
		}
		if inserted == int64(len(chunk)) {
			for i := range chunk {
				out = append(out, stored(&chunk[i]))
			}
			continue
		}
		got, err := batched(ctx, q, chunk, n,
			`INSERT INTO attribution_sessions (`+sessionCols+`, seq, writer) VALUES `, `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			` ON CONFLICT (nas, session_id, start_ms) DO UPDATE SET seq = excluded.seq, writer = excluded.writer,
	last_ms = CASE WHEN excluded.last_ms > attribution_sessions.last_ms THEN excluded.last_ms ELSE attribution_sessions.last_ms END,
	stop_ms = CASE WHEN excluded.stop_ms <> 0 THEN excluded.stop_ms ELSE attribution_sessions.stop_ms END
	RETURNING `+sessionCols, nil, sessionArgs(st), scanSessions, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

func sessionArgs(st stamp) func(args []any, s Session) []any {
	return func(args []any, s Session) []any {
		return append(args, addrText(s.NAS), s.ID, s.Subscriber, addrText(s.Framed), prefixText(s.FramedV6), prefixText(s.Delegated),
			s.CallingStation, ms(s.Start), ms(s.Last), ms(s.Stop), st.seq, st.writer)
	}
}

// stored is s as a row of it reads back: addresses unmapped, prefixes
// masked, times in whole milliseconds.
func stored(s *Session) Session {
	r := *s
	r.NAS, r.Framed = parseAddr(addrText(s.NAS)), parseAddr(addrText(s.Framed))
	r.FramedV6, r.Delegated = parsePrefix(prefixText(s.FramedV6)), parsePrefix(prefixText(s.Delegated))
	r.Start, r.Last, r.Stop = fromMS(ms(s.Start)), fromMS(ms(s.Last)), fromMS(ms(s.Stop))
	return r
}

// fillSession gives the stored session row the addresses s brings that it
// lacks.
func fillSession(ctx context.Context, q querier, st stamp, row, s *Session) ([]Session, error) {
	rows, err := q.Query(ctx, `UPDATE attribution_sessions SET seq = ?, writer = ?,
	framed_ip = CASE WHEN framed_ip = '' THEN ? ELSE framed_ip END,
	framed_ipv6_prefix = CASE WHEN framed_ipv6_prefix = '' THEN ? ELSE framed_ipv6_prefix END,
	delegated_ipv6_prefix = CASE WHEN delegated_ipv6_prefix = '' THEN ? ELSE delegated_ipv6_prefix END
	WHERE nas = ? AND session_id = ? AND start_ms = ? RETURNING `+sessionCols,
		st.seq, st.writer, addrText(s.Framed), prefixText(s.FramedV6), prefixText(s.Delegated), addrText(row.NAS), row.ID, ms(row.Start))
	if err != nil {
		return nil, err
	}
	return scanSessions(rows)
}

// isPostgres reports whether q is a PostgreSQL transaction.
func isPostgres(q querier) bool {
	d, ok := q.(interface{ Dialect() store.Dialect })
	return ok && d.Dialect() == store.Postgres
}

// updateSessions applies Interim-Updates and Stops (one per session) to the
// open sessions they name, and returns the rows changed. Interim-Updates
// that would move only the last time, by less than slack (ms), are left
// out (applyAccounting). The addresses are left alone: setting them, even
// to what they were, would rewrite the session's entry in the address
// index.
func updateSessions(ctx context.Context, q querier, st stamp, evs []*AcctEvent, slack int64) ([]Session, error) {
	row := `(?, ?, ?, ?, ?, ?, ?)`
	if isPostgres(q) {
		row = `(CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT))`
	}
	return batched(ctx, q, evs, sessionsPerStatement, `UPDATE attribution_sessions SET seq = ?, writer = ?,
	last_ms = CASE WHEN v.column3 > attribution_sessions.last_ms THEN v.column3 ELSE attribution_sessions.last_ms END,
	stop_ms = v.column4
	FROM (VALUES `, row, `) AS v
	WHERE attribution_sessions.nas = v.column1 AND attribution_sessions.session_id = v.column2
	AND attribution_sessions.stop_ms = 0 AND attribution_sessions.start_ms <= v.column3
	AND (v.column4 <> 0 OR v.column3 >= attribution_sessions.last_ms + `+strconv.FormatInt(slack, 10)+`
		OR (attribution_sessions.framed_ip = '' AND v.column5 <> '')
		OR (attribution_sessions.framed_ipv6_prefix = '' AND v.column6 <> '')
		OR (attribution_sessions.delegated_ipv6_prefix = '' AND v.column7 <> ''))
	RETURNING `+qualified("attribution_sessions", sessionCols),
		[]any{st.seq, st.writer}, func(args []any, ev *AcctEvent) []any {
			at := ev.At.UnixMilli()
			stop := int64(0)
			if ev.Status == AcctStop {
				stop = at
			}
			s := &ev.Session
			return append(args, addrText(s.NAS), s.ID, at, stop, addrText(s.Framed), prefixText(s.FramedV6), prefixText(s.Delegated))
		}, scanSessions, nil)
}

// openSessions reads the open sessions that Interim-Updates name (started
// no later than the update).
func openSessions(ctx context.Context, q querier, evs []*AcctEvent) ([]Session, error) {
	row := `(?, ?, ?)`
	if isPostgres(q) {
		row = `(CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT))`
	}
	return batched(ctx, q, evs, sessionsPerStatement, `SELECT `+qualified("attribution_sessions", sessionCols)+`
	FROM (VALUES `, row, `) AS v JOIN attribution_sessions ON attribution_sessions.nas = v.column1
	AND attribution_sessions.session_id = v.column2 AND attribution_sessions.stop_ms = 0
	AND attribution_sessions.start_ms <= v.column3`,
		nil, func(args []any, ev *AcctEvent) []any {
			return append(args, addrText(ev.Session.NAS), ev.Session.ID, ev.At.UnixMilli())
		}, scanSessions, nil)
}
