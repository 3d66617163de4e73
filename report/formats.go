package report

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"unicode/utf8"

	"wormsink/signatures"
)

// Format is one output of the report: its name, how it is written and what
// it may list. The formats are a fixed table (Formats); the command line
// only looks names up, so that every rule about a format lives here.
type Format struct {
	Name    string
	Summary string // one line for help texts

	// Complaint formats are filed with other networks' abuse desks, each
	// row a complaint about a customer. Rules gives them strong evidence
	// only unless the operator asks for weak, and no host whose only proof
	// is a lone datagram (anyone can forge its source address) unless
	// Options.IncludeUnverified: a forged packet must not get a customer a
	// complaint.
	Complaint bool
	// HostsOnly formats have no place for network lines (sightings the
	// evidence writer's line budget folded per network): they leave them
	// out and say how many.
	HostsOnly bool
	// Timeline formats chart sightings over time: the aggregator bins them.
	Timeline bool
	// NeedsReporter formats name who reports (Options.Reporter).
	NeedsReporter bool

	// Exactly one of stream and write is set. A stream format writes one
	// row per sighting as the lines are read, in log order (one reader);
	// the others are written from the aggregate once all is read.
	stream func(io.Writer) *ShadowserverWriter
	write  func(w io.Writer, a *Aggregator, o *Options, st ReadStats) error
}

// DefaultFormat is the format of a report that names none.
const DefaultFormat = "table"

// formats is the registry, in the order help texts list them.
var formats = [...]Format{
	{Name: "table", Summary: "aligned columns for a terminal, then the networks of network lines",
		write: func(w io.Writer, a *Aggregator, _ *Options, _ ReadStats) error {
			if err := WriteTable(w, a.Hosts()); err != nil {
				return err
			}
			return WriteNetworkTable(w, a.Networks())
		}},
	{Name: "csv", Summary: "one row per host, for spreadsheets", HostsOnly: true,
		write: func(w io.Writer, a *Aggregator, _ *Options, _ ReadStats) error { return writeCSVRows(w, a) }},
	{Name: "json", Summary: "hosts, networks and a summary as one JSON document",
		write: func(w io.Writer, a *Aggregator, _ *Options, st ReadStats) error {
			rows := a.Hosts()
			return WriteJSON(w, rows, a.Summary(len(rows), st))
		}},
	{Name: "shadowserver", Summary: "Shadowserver event4_sinkhole CSV: one row per sighting of an IPv4 host (complaints)",
		Complaint: true, HostsOnly: true, stream: NewShadowserverWriter},
	{Name: "shadowserver6", Summary: "Shadowserver event6_sinkhole CSV: one row per sighting of an IPv6 host (complaints)",
		Complaint: true, HostsOnly: true, stream: NewShadowserverWriter6},
	{Name: "xarf", Summary: "one X-ARF v4 botnet report per host, one per line (complaints)",
		Complaint: true, HostsOnly: true, NeedsReporter: true,
		write: func(w io.Writer, a *Aggregator, o *Options, _ ReadStats) error {
			return WriteXARF(w, a.Hosts(), o.Reporter)
		}},
	{Name: "html", Summary: "one self-contained page with a chart, a filter and sortable rows", Timeline: true,
		write: func(w io.Writer, a *Aggregator, o *Options, st ReadStats) error {
			rows := a.Hosts()
			return WriteHTML(w, rows, HTMLPage{Title: o.Title, Summary: a.Summary(len(rows), st), Timeline: a.Timeline().Bin(TimelineBins)})
		}},
}

// Formats returns the formats in the order help texts list them.
func Formats() []Format { return formats[:] }

// FormatNames returns the formats' names, in order.
func FormatNames() []string {
	names := make([]string, len(formats))
	for i := range formats {
		names[i] = formats[i].Name
	}
	return names
}

// LookupFormat returns the format called name.
func LookupFormat(name string) (*Format, error) {
	for i := range formats {
		if formats[i].Name == name {
			return &formats[i], nil
		}
	}
	return nil, fmt.Errorf("unknown format %q (want %s)", name, strings.Join(FormatNames(), ", "))
}

// Options are what a report is asked for besides its format.
type Options struct {
	// Filter selects sightings by time, family and network. Its
	// StrongOnly and VerifiedOnly are the format's rules: Rules sets them.
	Filter Filter
	// Evidence is the weakest evidence listed (for stream formats, of each
	// sighting); nil is the format's default: strong for complaints, weak
	// (everything) for the others.
	Evidence *signatures.Strength
	// IncludeUnverified lets complaints name hosts whose only proof is a
	// lone datagram.
	IncludeUnverified bool
	Reporter          Reporter // NeedsReporter formats
	Title             string   // html: the page title; empty is "wormsink report"
}

// Rules returns o.Filter with the format's rules on evidence and proof.
// This is the one place that decides what a complaint may carry.
func (f *Format) Rules(o *Options) Filter {
	flt := o.Filter
	flt.StrongOnly = f.Complaint
	if o.Evidence != nil {
		flt.StrongOnly = *o.Evidence == signatures.Strong
	}
	flt.VerifiedOnly = f.Complaint && !o.IncludeUnverified
	return flt
}

// Streams reports whether the format writes a row per sighting, so its
// sightings must go to Report.Add one by one, in log order.
func (f *Format) Streams() bool { return f.stream != nil }

// LeftOut counts what a report's rules left out, by the first rule that
// did: hosts (or, for stream formats, rows) with weak evidence only, and
// then those whose only proof is a lone datagram.
type LeftOut struct {
	Weak       uint64
	Unverified uint64
}

// leave records r as left out, or reports that the rules keep it.
func (l *LeftOut) leave(f *Filter, strength signatures.Strength, verified bool) bool {
	switch {
	case f.StrongOnly && strength != signatures.Strong:
		l.Weak++
	case f.VerifiedOnly && !verified:
		l.Unverified++
	default:
		return false
	}
	return true
}

// Report is one report being written: made by Format.New, fed sightings,
// then finished once.
type Report struct {
	format *Format
	opts   Options
	filter Filter
	out    *bufio.Writer
	ss     *ShadowserverWriter

	left    LeftOut // stream formats: rows left out by the rules
	netSeen uint64  // stream formats: sightings in network lines
}

// New starts a report in format f on w.
func (f *Format) New(w io.Writer, o Options) (*Report, error) {
	if f.NeedsReporter && o.Reporter.Contact == "" {
		return nil, fmt.Errorf("%s needs a reporter: --reporter-contact with an e-mail address (abuse@isp.example)", f.Name)
	}
	r := &Report{format: f, opts: o, filter: f.Rules(&o), out: bufio.NewWriterSize(w, 64<<10)}
	r.filter.Exclude = unmapPrefixes(r.filter.Exclude)
	if f.stream != nil {
		r.ss = f.stream(r.out)
	}
	return r, nil
}

// Format is the report's format.
func (r *Report) Format() *Format { return r.format }

// Filter is what an Aggregator (or ParallelReader) feeding Finish applies.
func (r *Report) Filter() Filter { return r.filter }

// Add writes the row of one sighting (stream formats only), or counts it
// as left out. Network lines name no host and make no row; they are
// counted for the note.
func (r *Report) Add(rec *Sighting) error {
	if r.ss == nil {
		return errors.New("report: Add on a format that is not a stream")
	}
	if !r.filter.Keep(rec) {
		return nil
	}
	if rec.Network.IsValid() {
		r.netSeen = addSat(r.netSeen, rec.Count)
		return nil
	}
	if !r.ss.family(rec.Host) {
		// The other family's report: counted by the writer only if the
		// rules would file it there.
		if !r.filter.StrongOnly || rec.Evidence == signatures.Strong {
			if !r.filter.VerifiedOnly || rec.Proof.Verified() {
				r.ss.skipped++
			}
		}
		return nil
	}
	if r.left.leave(&r.filter, rec.Evidence, rec.Proof.Verified()) {
		return nil
	}
	return r.ss.Write(rec)
}

// Finish writes the report (from a, for formats that are not streams;
// a may be nil for streams) and flushes it. notes are lines for the
// operator: what the rules and the format left out, and why.
func (r *Report) Finish(a *Aggregator, st ReadStats) (notes []string, err error) {
	f := r.format
	left, unit, nets := r.left, "rows", r.netSeen
	if r.ss != nil {
		err = r.ss.Flush()
		if n := r.ss.Skipped(); n > 0 {
			other := "shadowserver6 (" + ShadowserverReport6 + ")"
			if r.ss.ipv6 {
				other = "shadowserver (" + ShadowserverReport4 + ")"
			}
			notes = append(notes, fmt.Sprintf("%d rows of hosts of the other address family left out of %s; write them with --format %s", n, r.ss.Report(), other))
		}
	} else {
		if a == nil {
			return nil, errors.New("report: Finish without an aggregate")
		}
		err = f.write(r.out, a, &r.opts, st)
		left, unit, nets = a.LeftOut(), "hosts", a.NetworkSightings()
	}
	if err == nil {
		err = r.out.Flush()
	}
	if n := leftOutNote(f.Name, unit, left); n != "" {
		notes = append([]string{n}, notes...)
	}
	if a != nil && a.Saturated() {
		notes = append(notes, fmt.Sprintf("the sightings reach %d (2^64-1), the largest count: sums that reached it were held there (saturated) and may be below their true value", uint64(MaxCount)))
	}
	if f.HostsOnly && nets != 0 {
		notes = append(notes, fmt.Sprintf("%d sightings are in network lines (the evidence line budget was spent); they name no host and are not in %s output (see --format table, json or html)", nets, f.Name))
	}
	return notes, err
}

func leftOutNote(format, unit string, l LeftOut) string {
	var parts []string
	if l.Weak > 0 {
		parts = append(parts, fmt.Sprintf("%d %s with weak evidence only (--evidence weak lists them)", l.Weak, unit))
	}
	if l.Unverified > 0 {
		parts = append(parts, fmt.Sprintf("%d %s whose only proof is a lone datagram, which anyone can forge (--include-unverified files them)", l.Unverified, unit))
	}
	if len(parts) == 0 {
		return ""
	}
	return "left out of " + format + ": " + strings.Join(parts, " and ")
}

// NewReporter makes the X-ARF reporter from an abuse contact address; org
// and domain default to the contact's domain.
func NewReporter(org, contact, domain string) (Reporter, error) {
	at := strings.LastIndexByte(contact, '@')
	if contact == "" || at <= 0 || at == len(contact)-1 || strings.ContainsAny(contact, " \t<>") {
		return Reporter{}, errors.New("xarf needs --reporter-contact with an e-mail address (abuse@isp.example)")
	}
	if domain == "" {
		domain = contact[at+1:]
	}
	if org == "" {
		org = domain
	}
	// X-ARF v4 limits: org at most 200 characters, domain a host name.
	if utf8.RuneCountInString(org) > 200 {
		return Reporter{}, errors.New("xarf: --reporter-org is longer than the 200 characters X-ARF allows")
	}
	if _, err := netip.ParseAddr(domain); err == nil || strings.Trim(domain, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != "" {
		return Reporter{}, fmt.Errorf("xarf: reporter domain %q is not a host name", domain)
	}
	return Reporter{Org: org, Contact: contact, Domain: domain}, nil
}

// Summary describes what a report of hosts rows was made from.
func (a *Aggregator) Summary(hosts int, st ReadStats) Summary {
	nets := a.Networks()
	return Summary{Hosts: hosts, Sightings: a.Sightings(), Lines: st.Lines, Malformed: st.Malformed, Service: st.Service,
		Networks: len(nets), NetworkSightings: a.NetworkSightings(), NetworkRows: nets, Saturated: a.Saturated()}
}

// LeftOut counts the hosts the evidence and proof rules leave out of
// Hosts.
func (a *Aggregator) LeftOut() LeftOut {
	var l LeftOut
	for i := range uint32(a.aggs.len()) {
		h := a.aggs.at(i)
		l.leave(&a.filter, h.evidence, h.proof.Verified())
	}
	return l
}
