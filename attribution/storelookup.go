package attribution

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"wormsink/store"
)

// StoreLookup attributes sightings straight from the store, loading only
// the rows of the addresses asked about (and of the inside addresses NAT
// names for them) into an index of its own: for an analyst's question and
// for reports, without reading every binding as serve does at start.
type StoreLookup struct {
	db      *store.DB
	idx     *Index
	natDone map[netip.Addr]bool
	sesDone map[netip.Addr]bool
}

// LookupConfig is what StoreLookup needs besides the store: the same
// timeouts, subscribers file and deterministic rules serve uses.
type LookupConfig struct {
	SessionTimeout, NATTimeout time.Duration // 0: the defaults
	Subscribers                *Subscribers
	Deterministic              *Deterministic
}

// NewStoreLookup returns a lookup over db; it migrates nothing and needs
// the attribution tables to exist (Migrate creates them).
func NewStoreLookup(ctx context.Context, db *store.DB, cfg LookupConfig) (*StoreLookup, error) {
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = DefaultSessionTimeout
	}
	if cfg.NATTimeout <= 0 {
		cfg.NATTimeout = DefaultNATTimeout
	}
	if err := db.Migrate(ctx, "attribution", migrations); err != nil {
		return nil, fmt.Errorf("attribution: migrate: %w", err)
	}
	x := NewIndex(cfg.SessionTimeout, cfg.NATTimeout)
	x.static, x.det = cfg.Subscribers, cfg.Deterministic
	return &StoreLookup{db: db, idx: x, natDone: map[netip.Addr]bool{}, sesDone: map[netip.Addr]bool{}}, nil
}

// Lookup attributes a sighting of addr and port (0: none) at t.
func (l *StoreLookup) Lookup(ctx context.Context, addr netip.Addr, port uint16, t time.Time) (Result, error) {
	addr = addr.Unmap()
	insides, err := l.loadNAT(ctx, addr)
	if err != nil {
		return Result{}, err
	}
	if l.idx.det != nil {
		if r, ok := l.idx.det.lookup(addr, 0, t.UnixMilli()); ok && r.Inside.IsValid() {
			insides = append(insides, r.Inside.Addr())
		}
		if r, ok := l.idx.det.lookup(addr, port, t.UnixMilli()); ok && r.Inside.IsValid() {
			insides = append(insides, r.Inside.Addr())
		}
	}
	if err := l.loadSessions(ctx, append(insides, addr)); err != nil {
		return Result{}, err
	}
	return l.idx.Lookup(addr, port, t), nil
}

// loadNAT loads the bindings of public address addr and returns the inside
// addresses they name.
func (l *StoreLookup) loadNAT(ctx context.Context, addr netip.Addr) ([]netip.Addr, error) {
	if l.natDone[addr] {
		return nil, nil
	}
	rows, err := l.db.Query(ctx, `SELECT `+natCols+` FROM attribution_nat WHERE public_ip = ? ORDER BY start_ms`, addrText(addr))
	if err != nil {
		return nil, fmt.Errorf("attribution: lookup: %w", err)
	}
	bs, err := scanBindings(rows)
	if err != nil {
		return nil, fmt.Errorf("attribution: lookup: %w", err)
	}
	l.natDone[addr] = true
	seen := map[netip.Addr]bool{}
	var insides []netip.Addr
	l.idx.mu.Lock()
	for i := range bs {
		l.idx.putNATLocked(&bs[i])
		if in := bs[i].Inside; !seen[in] {
			seen[in] = true
			insides = append(insides, in)
		}
	}
	l.idx.mu.Unlock()
	return insides, nil
}

// sessionsPerQuery bounds the addresses of one IN list.
const sessionsPerQuery = 200

// loadSessions loads the sessions that held any of addrs: IPv4 framed
// addresses, and IPv6 prefixes of every length holding an IPv6 address.
func (l *StoreLookup) loadSessions(ctx context.Context, addrs []netip.Addr) error {
	var v4, v6 []any
	for _, a := range addrs {
		if !a.IsValid() || l.sesDone[a] {
			continue
		}
		l.sesDone[a] = true
		if a.Is4() {
			v4 = append(v4, addrText(a))
			continue
		}
		for bits := 0; bits <= 128; bits++ {
			p, _ := a.Prefix(bits)
			v6 = append(v6, p.String())
		}
	}
	query := func(cond string, args []any) error {
		for len(args) > 0 {
			n := min(len(args), sessionsPerQuery)
			marks := strings.TrimSuffix(strings.Repeat("?,", n), ",")
			q := `SELECT ` + sessionCols + ` FROM attribution_sessions WHERE ` + strings.ReplaceAll(cond, "LIST", marks) + ` ORDER BY start_ms`
			var qargs []any
			qargs = append(qargs, args[:n]...)
			if strings.Count(cond, "LIST") == 2 {
				qargs = append(qargs, args[:n]...)
			}
			rows, err := l.db.Query(ctx, q, qargs...)
			if err != nil {
				return fmt.Errorf("attribution: lookup: %w", err)
			}
			ss, err := scanSessions(rows)
			if err != nil {
				return fmt.Errorf("attribution: lookup: %w", err)
			}
			l.idx.mu.Lock()
			for i := range ss {
				l.idx.putSessionLocked(&ss[i])
			}
			l.idx.mu.Unlock()
			args = args[n:]
		}
		return nil
	}
	if err := query(`framed_ip IN (LIST)`, v4); err != nil {
		return err
	}
	return query(`framed_ipv6_prefix IN (LIST) OR delegated_ipv6_prefix IN (LIST)`, v6)
}
