package rpz

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// The walled garden in the resolvers: two more policy zones beside the
// signatures' one. Resolvers list them in this order:
//
//	allow.ZONE   passthru for the names a quarantined client may resolve
//	ZONE         the signature names, sinkholed for everyone
//	garden.ZONE  client-IP triggers: every other name of a quarantined
//	             client answers with the notice address
//
// Within one zone a client-IP trigger beats a QNAME trigger, and the first
// zone that matches wins: so the allowlist and the signature names each
// need a zone of their own ahead of the garden, in BIND and Unbound alike.

// Zone name prefixes of the walled garden's zones.
const (
	AllowPrefix  = "allow."
	GardenPrefix = "garden."
)

// ClientIPOwner is the owner name, relative to the zone, of the RPZ
// client-IP trigger for exactly addr: "32.4.3.2.1.rpz-client-ip" for
// 1.2.3.4, "128.7.zz.db8.2001.rpz-client-ip" for 2001:db8::7 (the groups
// reversed, "zz" for the RFC 5952 "::", which BIND requires).
func ClientIPOwner(addr netip.Addr) string {
	addr = addr.Unmap()
	var labels []string
	if addr.Is4() {
		b := addr.As4()
		labels = []string{"32", itoa(b[3]), itoa(b[2]), itoa(b[1]), itoa(b[0])}
	} else {
		left, right, double := strings.Cut(addr.String(), "::")
		var groups []string
		if left != "" {
			groups = strings.Split(left, ":")
		}
		if double {
			groups = append(groups, "zz")
			if right != "" {
				groups = append(groups, strings.Split(right, ":")...)
			}
		}
		slices.Reverse(groups)
		labels = append([]string{"128"}, groups...)
	}
	return strings.Join(labels, ".") + ".rpz-client-ip"
}

func itoa(b byte) string {
	const digits = "0123456789"
	switch {
	case b >= 100:
		return string([]byte{digits[b/100], digits[b/10%10], digits[b%10]})
	case b >= 10:
		return string([]byte{digits[b/10], digits[b%10]})
	}
	return string(digits[b])
}

// allowRecords are the allow zone's records: passthru for each allowed
// name and the names below it ("*.name" entries only the names below),
// except the signature names among them (the signatures' zone z), which
// the allow zone sinkholes itself: it comes first, and a listed name
// never passes, whatever the allowlist says.
func allowRecords(names []string, z *zone) []record {
	var recs []record
	var bases, below []string // names allowed with the names below them; names whose names below are allowed
	for _, n := range names {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if b, ok := strings.CutPrefix(n, "*."); ok {
			below = append(below, b)
			recs = append(recs, record{Owner: "*." + b, Policy: polPassthru})
			continue
		}
		bases = append(bases, n)
		recs = append(recs, record{Owner: n, Policy: polPassthru}, record{Owner: "*." + n, Policy: polPassthru})
	}
	allowed := func(name string) bool {
		for _, b := range bases {
			if name == b || strings.HasSuffix(name, "."+b) {
				return true
			}
		}
		for _, b := range below {
			if strings.HasSuffix(name, "."+b) {
				return true
			}
		}
		return false
	}
	listed := map[string]bool{}
	if len(bases)+len(below) > 0 && z != nil {
		for r := range z.each {
			if o := r.Owner; allowed(strings.TrimPrefix(o, "*.")) || strings.HasPrefix(o, "*.") && slices.Contains(below, o[2:]) {
				listed[o] = true
				recs = append(recs, r)
			}
		}
	}
	recs = slices.DeleteFunc(recs, func(r record) bool { return r.Policy == polPassthru && listed[r.Owner] })
	slices.SortFunc(recs, compareRecords)
	return slices.CompactFunc(recs, func(a, b record) bool { return compareRecords(a, b) == 0 })
}

func compareRecords(a, b record) int {
	if c := strings.Compare(a.Owner, b.Owner); c != 0 {
		return c
	}
	if a.Policy != b.Policy {
		return int(a.Policy) - int(b.Policy)
	}
	return a.Addr.Compare(b.Addr)
}

// rebuildAllow follows a new signatures' zone in the allow zone.
func (s *Server) rebuildAllow(ctx context.Context, sigs *zone) {
	if s.allow.Load() == nil {
		return
	}
	s.gardenMu.Lock()
	defer s.gardenMu.Unlock()
	old := s.allow.Load()
	recs := allowRecords(s.cfg.Passthru, sigs)
	if slices.Equal(recs, old.recs) {
		return
	}
	next := old.followedBy(newStaticZone(old.origin, nextSerial(old.serial, time.Now()), recs), s.cfg.Journal)
	s.allow.Store(next)
	s.notifyAll(ctx, next)
}

// gardenRecords are the garden zone's records: every address's client-IP
// trigger answering with each notice address.
func gardenRecords(addrs, notice []netip.Addr) []record {
	recs := make([]record, 0, len(addrs)*len(notice))
	for _, a := range addrs {
		owner := ClientIPOwner(a)
		for _, n := range notice {
			recs = append(recs, record{Owner: owner, Policy: polLocalData, Addr: n})
		}
	}
	slices.SortFunc(recs, compareRecords)
	return slices.CompactFunc(recs, func(a, b record) bool { return compareRecords(a, b) == 0 })
}

// nextSerial is a serial after old: the time in seconds when that is later,
// so a restarted primary (whose zones start over) still moves its
// secondaries forward.
func nextSerial(old uint32, now time.Time) uint32 {
	s := uint32(now.Unix())
	if int32(s-old) <= 0 {
		s = old + 1
	}
	return s
}

// SetQuarantined makes the garden zone's client-IP triggers those of addrs
// (the quarantine now) as a new serial, journaled for IXFR and announced
// by NOTIFY. It does nothing without Config.Notice. It is cheap when
// nothing changed, and safe to call from any goroutine.
func (s *Server) SetQuarantined(addrs []netip.Addr) {
	if s.garden.Load() == nil {
		return
	}
	s.gardenMu.Lock()
	defer s.gardenMu.Unlock()
	old := s.garden.Load()
	recs := gardenRecords(addrs, s.cfg.Notice)
	if slices.Equal(recs, old.recs) {
		return
	}
	nz := newStaticZone(old.origin, nextSerial(old.serial, time.Now()), recs)
	nz.addOnlyIXFR = true
	next := old.followedBy(nz, s.cfg.Journal)
	s.garden.Store(next)
	s.log.Info().Str("event", "rpz_zone").Str("zone", next.origin).Uint32("old_serial", old.serial).
		Uint32("serial", next.serial).Int("records", next.records).Msg("walled garden zone rebuilt")
	if ctx := s.serving.Load(); ctx != nil {
		s.notifyAll(*ctx, next)
	}
}

// zones are the zones served now, the signatures' first.
func (s *Server) zones() []*zone {
	zs := []*zone{s.zone.Load()}
	if a := s.allow.Load(); a != nil {
		zs = append(zs, a, s.garden.Load())
	}
	return zs
}

// zoneFor is the zone named name, or nil.
func (s *Server) zoneFor(name string) *zone {
	for _, z := range s.zones() {
		if strings.EqualFold(name, z.origin) {
			return z
		}
	}
	return nil
}

// current is the zone served now under z's name.
func (s *Server) current(z *zone) *zone {
	if c := s.zoneFor(z.origin); c != nil {
		return c
	}
	return z
}
