package evidence

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"time"

	"wormsink/signatures"
)

// Filter selects the sightings a report counts. The zero value takes all.
type Filter struct {
	Since, Until time.Time // zero: unbounded
	// Families keeps only sightings of these families (case-insensitive);
	// empty keeps all.
	Families []string
	// StrongOnly lists only hosts with strong evidence (their rows still
	// count their weak sightings); otherwise every host is listed.
	StrongOnly bool
}

// EvidenceStrong is the strength that proves an infection.
const EvidenceStrong = signatures.Strong

// Keep reports whether a sighting passes the time and family filter. A
// folded line counts whole when its span [Time, Last] overlaps the window:
// its count cannot be split.
func (f *Filter) Keep(r *Record) bool {
	if !f.Since.IsZero() && r.Last.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && r.Time.After(f.Until) {
		return false
	}
	if len(f.Families) > 0 {
		for _, fam := range f.Families {
			if bytes.EqualFold(r.Family, []byte(fam)) {
				return true
			}
		}
		return false
	}
	return true
}

// Sources counts sightings by where they were made.
type Sources struct {
	DNS  uint64 `json:"dns"`  // dns_sinkhole
	TFTP uint64 `json:"tftp"` // tftp_refused, tftp_request
	Wire uint64 `json:"wire"` // wire_match
}

// HostSummary is one row of the report: everything the logs say about one
// host.
type HostSummary struct {
	Host       netip.Addr
	FirstSeen  time.Time
	LastSeen   time.Time
	FirstPort  uint16 // source port of the first sighting
	LastPort   uint16 // source port of the last sighting (for CGNAT look-ups)
	Events     uint64 // sum of counts
	Evidence   signatures.Strength
	Families   []string // sorted
	Signatures []string // sorted
	Sources    Sources
	Sensors    []string // sorted
}

// hostAgg is the per-host state while reading: a few words and three small
// sets of interned ids, so memory grows with hosts, never with lines.
type hostAgg struct {
	first, last         int64 // unix nanoseconds
	firstPort, lastPort uint16
	evidence            signatures.Strength
	events              uint64
	src                 [3]uint64
	fams, sigs, sensors []uint32
}

// Aggregator folds records into per-host rows, and optionally a timeline of
// sightings per family for the HTML page.
type Aggregator struct {
	filter   Filter
	hosts    map[netip.Addr]*hostAgg
	names    interner
	timeline *Timeline
	kept     uint64 // sightings counted
}

// NewAggregator returns an empty aggregator applying f. With timeline set
// it also bins sightings over time per family.
func NewAggregator(f Filter, timeline bool) *Aggregator {
	a := &Aggregator{filter: f, hosts: make(map[netip.Addr]*hostAgg)}
	a.names.ids = make(map[string]uint32)
	if timeline {
		a.timeline = newTimeline()
	}
	return a
}

// Add counts one record if the filter keeps it.
func (a *Aggregator) Add(r *Record) {
	if !a.filter.Keep(r) {
		return
	}
	first, last := r.Time.UnixNano(), r.Last.UnixNano()
	if s := a.filter.Since; !s.IsZero() && first < s.UnixNano() {
		first = s.UnixNano()
	}
	if u := a.filter.Until; !u.IsZero() && last > u.UnixNano() {
		last = u.UnixNano()
	}
	h := a.hosts[r.Host]
	if h == nil {
		h = &hostAgg{first: first, last: last, firstPort: r.Port, lastPort: r.Port, evidence: r.Evidence}
		a.hosts[r.Host] = h
	}
	if first < h.first {
		h.first, h.firstPort = first, r.Port
	}
	if last >= h.last {
		h.last, h.lastPort = last, r.Port
	}
	if r.Evidence < h.evidence { // Strong is the smaller value
		h.evidence = r.Evidence
	}
	h.events += r.Count
	h.src[sourceOf(r.Kind)] += r.Count
	if len(r.Family) > 0 {
		h.fams = addID(h.fams, a.names.id(r.Family))
	}
	if len(r.Sig) > 0 {
		h.sigs = addID(h.sigs, a.names.id(r.Sig))
	}
	if len(r.Sensor) > 0 {
		h.sensors = addID(h.sensors, a.names.id(r.Sensor))
	}
	a.kept += r.Count
	if a.timeline != nil {
		a.timeline.add(a.names.id(r.Family), first, last, r.Count)
	}
}

func sourceOf(k Kind) int {
	switch k {
	case DNSSinkhole:
		return 0
	case TFTPRefused, TFTPRequest:
		return 1
	}
	return 2
}

func addID(set []uint32, id uint32) []uint32 {
	for _, x := range set {
		if x == id {
			return set
		}
	}
	return append(set, id)
}

// Sightings returns the sum of counts the filter kept (before the evidence
// filter, which applies to hosts).
func (a *Aggregator) Sightings() uint64 { return a.kept }

// Hosts returns the report rows: hosts passing the evidence filter,
// strongest evidence first, then most events, then by address.
func (a *Aggregator) Hosts() []HostSummary {
	out := make([]HostSummary, 0, len(a.hosts))
	for addr, h := range a.hosts {
		if a.filter.StrongOnly && h.evidence != signatures.Strong {
			continue
		}
		out = append(out, HostSummary{
			Host:       addr,
			FirstSeen:  time.Unix(0, h.first).UTC(),
			LastSeen:   time.Unix(0, h.last).UTC(),
			FirstPort:  h.firstPort,
			LastPort:   h.lastPort,
			Events:     h.events,
			Evidence:   h.evidence,
			Families:   a.names.sorted(h.fams),
			Signatures: a.names.sorted(h.sigs),
			Sources:    Sources{DNS: h.src[0], TFTP: h.src[1], Wire: h.src[2]},
			Sensors:    a.names.sorted(h.sensors),
		})
	}
	SortHosts(out)
	return out
}

// SortHosts orders rows as the report does: strongest evidence first, then
// most events, then host address.
func SortHosts(rows []HostSummary) {
	slices.SortFunc(rows, func(x, y HostSummary) int {
		if x.Evidence != y.Evidence {
			return int(x.Evidence) - int(y.Evidence)
		}
		if x.Events != y.Events {
			if x.Events > y.Events {
				return -1
			}
			return 1
		}
		return x.Host.Compare(y.Host)
	})
}

// Timeline returns the binned sightings per family, or nil when the
// aggregator was made without one.
func (a *Aggregator) Timeline() *Timeline {
	if a.timeline != nil {
		a.timeline.names = &a.names
	}
	return a.timeline
}

// interner maps the few distinct family, signature and sensor names to
// small ids; looking up a known name costs no allocation.
type interner struct {
	ids   map[string]uint32
	names []string
	last  uint32
	valid bool
}

func (n *interner) id(b []byte) uint32 {
	if n.valid && n.names[n.last] == string(b) {
		return n.last
	}
	id, ok := n.ids[string(b)]
	if !ok {
		id = uint32(len(n.names))
		s := string(b)
		n.names = append(n.names, s)
		n.ids[s] = id
	}
	n.last, n.valid = id, true
	return id
}

func (n *interner) sorted(ids []uint32) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = n.names[id]
	}
	slices.SortFunc(out, func(a, b string) int {
		if c := strings.Compare(strings.ToLower(a), strings.ToLower(b)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return out
}
