package report

import (
	"bufio"
	"encoding/json"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"wormsink/evidence"
	"wormsink/signatures"
)

// SubscriberSummary is one row of the report by subscriber: everything the
// logs say about one subscriber, across all the addresses they had.
type SubscriberSummary struct {
	Subscriber string
	FirstSeen  time.Time
	LastSeen   time.Time
	Addresses  []string // sorted
	IPFamilies []string // "ipv4", "ipv6": the address families seen
	Events     uint64
	Evidence   signatures.Strength
	Families   []string       // worm families, sorted
	Proof      evidence.Proof // the best proof of any of their sightings
}

type subAgg struct {
	first, last int64
	addrs       map[netip.Addr]struct{}
	fams        map[string]struct{}
	events      uint64
	evidence    signatures.Strength
	proof       evidence.Proof
}

// SubscriberAggregator folds records into one row per subscriber. Lines
// that name no subscriber are only counted: a report by subscriber never
// guesses one.
type SubscriberAggregator struct {
	filter       Filter
	subs         map[string]*subAgg
	unattributed uint64
}

// NewSubscriberAggregator returns an empty aggregator applying f.
func NewSubscriberAggregator(f Filter) *SubscriberAggregator {
	return &SubscriberAggregator{filter: f, subs: map[string]*subAgg{}}
}

// Add counts one record if the filter keeps it.
func (a *SubscriberAggregator) Add(r *Sighting) {
	if r.Network.IsValid() || !a.filter.Keep(r) {
		return
	}
	if len(r.Subscriber) == 0 {
		a.unattributed += r.Count
		return
	}
	first, last := r.Time.UnixNano(), r.Last.UnixNano()
	s, ok := a.subs[string(r.Subscriber)]
	if !ok {
		s = &subAgg{first: first, last: last, addrs: map[netip.Addr]struct{}{}, fams: map[string]struct{}{},
			evidence: r.Evidence, proof: r.Proof}
		a.subs[string(r.Subscriber)] = s
	}
	s.first, s.last = min(s.first, first), max(s.last, last)
	s.addrs[r.Host] = struct{}{}
	if len(r.Family) > 0 {
		if _, ok := s.fams[string(r.Family)]; !ok {
			s.fams[string(r.Family)] = struct{}{}
		}
	}
	s.events += r.Count
	if r.Evidence < s.evidence { // Strong is the smaller value
		s.evidence = r.Evidence
	}
	if r.Proof > s.proof {
		s.proof = r.Proof
	}
}

// Unattributed is the number of sightings kept by the filter whose lines
// named no subscriber.
func (a *SubscriberAggregator) Unattributed() uint64 { return a.unattributed }

// Rows returns one row per subscriber, strongest evidence first, then best
// proof, then most events, then by name; with Filter.StrongOnly, only
// subscribers with strong evidence.
func (a *SubscriberAggregator) Rows() []SubscriberSummary {
	rows := make([]SubscriberSummary, 0, len(a.subs))
	for name, s := range a.subs {
		if a.filter.StrongOnly && s.evidence != signatures.Strong {
			continue
		}
		row := SubscriberSummary{Subscriber: name, FirstSeen: time.Unix(0, s.first).UTC(), LastSeen: time.Unix(0, s.last).UTC(),
			Events: s.events, Evidence: s.evidence, Proof: s.proof, Families: setNames(s.fams)}
		addrs := make([]netip.Addr, 0, len(s.addrs))
		v4, v6 := false, false
		for ad := range s.addrs {
			addrs = append(addrs, ad)
			v4, v6 = v4 || ad.Is4(), v6 || ad.Is6()
		}
		slices.SortFunc(addrs, netip.Addr.Compare)
		for _, ad := range addrs {
			row.Addresses = append(row.Addresses, ad.String())
		}
		if v4 {
			row.IPFamilies = append(row.IPFamilies, "ipv4")
		}
		if v6 {
			row.IPFamilies = append(row.IPFamilies, "ipv6")
		}
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(x, y SubscriberSummary) int {
		switch {
		case x.Evidence != y.Evidence:
			return int(x.Evidence) - int(y.Evidence)
		case x.Proof != y.Proof:
			return int(y.Proof) - int(x.Proof)
		case x.Events != y.Events:
			if x.Events > y.Events {
				return -1
			}
			return 1
		}
		return strings.Compare(x.Subscriber, y.Subscriber)
	})
	return rows
}

// SubscriberCSVHeader is the header of the CSV report by subscriber.
var SubscriberCSVHeader = []string{"subscriber", "first_seen", "last_seen", "addresses", "ip_families", "events", "evidence", "families", "proof"}

func (s *SubscriberSummary) cells() []string {
	return []string{
		s.Subscriber,
		s.FirstSeen.Format(evidence.TimeFormat),
		s.LastSeen.Format(evidence.TimeFormat),
		strings.Join(s.Addresses, listSep),
		strings.Join(s.IPFamilies, listSep),
		strconv.FormatUint(s.Events, 10),
		s.Evidence.String(),
		strings.Join(s.Families, listSep),
		s.Proof.String(),
	}
}

// WriteSubscriberTable writes the rows as aligned columns, names escaped as
// WriteTable does.
func WriteSubscriberTable(w io.Writer, rows []SubscriberSummary) error {
	bw := bufio.NewWriter(w)
	return writeAligned(bw, "SUBSCRIBER\tFIRST SEEN\tLAST SEEN\tADDRESSES\tIP\tEVENTS\tEVIDENCE\tFAMILIES\tPROOF",
		len(rows), func(i int) []string { return rows[i].cells() })
}

// WriteSubscriberCSV writes the rows under SubscriberCSVHeader, cells
// neutralised as WriteCSV's.
func WriteSubscriberCSV(w io.Writer, rows []SubscriberSummary) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var row []byte
	write := func(cells []string) error {
		row = row[:0]
		for i, c := range cells {
			if i > 0 {
				row = append(row, ',')
			}
			row = appendCSVCell(row, []byte(c))
		}
		row = append(row, '\n')
		_, err := bw.Write(row)
		return err
	}
	if err := write(SubscriberCSVHeader); err != nil {
		return err
	}
	for i := range rows {
		if err := write(rows[i].cells()); err != nil {
			return err
		}
	}
	return bw.Flush()
}

type jsonSubscriber struct {
	Subscriber string   `json:"subscriber"`
	FirstSeen  string   `json:"first_seen"`
	LastSeen   string   `json:"last_seen"`
	Addresses  []string `json:"addresses"`
	IPFamilies []string `json:"ip_families"`
	Events     uint64   `json:"events"`
	Evidence   string   `json:"evidence"`
	Families   []string `json:"families"`
	Proof      string   `json:"proof"`
}

// WriteSubscriberJSON writes {"subscribers": [...], "unattributed": N}.
func WriteSubscriberJSON(w io.Writer, rows []SubscriberSummary, unattributed uint64) error {
	doc := struct {
		Subscribers  []jsonSubscriber `json:"subscribers"`
		Unattributed uint64           `json:"unattributed"`
	}{Subscribers: make([]jsonSubscriber, 0, len(rows)), Unattributed: unattributed}
	for _, s := range rows {
		doc.Subscribers = append(doc.Subscribers, jsonSubscriber{Subscriber: s.Subscriber,
			FirstSeen: s.FirstSeen.Format(evidence.TimeFormat), LastSeen: s.LastSeen.Format(evidence.TimeFormat),
			Addresses: nonNil(s.Addresses), IPFamilies: nonNil(s.IPFamilies), Events: s.Events, Evidence: s.Evidence.String(),
			Families: nonNil(s.Families), Proof: s.Proof.String()})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}
