package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"wormsink/report"
	"wormsink/signatures"
)

var reportFormats = []string{"table", "csv", "json", "shadowserver", "shadowserver6", "xarf", "html"}

// reportOptions is the parsed command line of report.
type reportOptions struct {
	format   string
	filter   report.Filter
	reporter report.Reporter
	title    string
	inputs   []string
	workers  int
	attr     reportAttribution // --db, --by: report_attribution.go
}

func runReport(ctx context.Context, e env, args []string) int {
	fs := newFlags(e, "report", "[LOG...]  (stdin when none or \"-\"; plain or gzip)")
	format := fs.String("format", "table", "output: "+strings.Join(reportFormats, ", "))
	since := fs.String("since", "", "only sightings at or after T: RFC 3339, a date (2006-01-02, UTC), or a duration before now (24h, 7d)")
	until := fs.String("until", "", "only sightings at or before T (same forms as --since)")
	ev := fs.String("evidence", "", "weakest evidence a host needs to be listed: strong, or weak (all hosts); for shadowserver, of each sighting (default strong for xarf and shadowserver, which file complaints; weak for the others)")
	family := fs.String("family", "", "only sightings of these families (comma-separated, any case)")
	org := fs.String("reporter-org", "", "xarf: reporting organisation (default: the contact's domain)")
	contact := fs.String("reporter-contact", "", "xarf: reporter's abuse contact e-mail address (required for xarf)")
	domain := fs.String("reporter-domain", "", "xarf: reporter's domain (default: the contact's domain)")
	title := fs.String("title", "", "html: page title (default \"wormsink report\")")
	var exclude prefixList
	fs.Var(&exclude, "exclude", "never list hosts in these networks, CIDR or address,... (the sinkhole's own addresses, ranges that are not customers)")
	// proof of the source address
	unverified := fs.Bool("include-unverified", false, "xarf, shadowserver: also file hosts (shadowserver: sightings) whose only proof is a lone datagram, which anyone can forge")
	workers := fs.Int("workers", runtime.NumCPU(), "goroutines parsing and counting lines; the report is the same for any number")
	var attr reportAttribution
	reportAttributionFlags(fs, &attr)
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	o := reportOptions{format: *format, title: *title, inputs: fs.Args(), workers: *workers, attr: attr}
	o.filter.Exclude = exclude
	if o.workers < 1 || o.workers > 1024 {
		return usageErr(e, "report: --workers %d: want from 1 to 1024", o.workers)
	}
	known := false
	for _, f := range reportFormats {
		known = known || f == o.format
	}
	if !known {
		return usageErr(e, "report: unknown format %q (want %s)", o.format, strings.Join(reportFormats, ", "))
	}
	now := time.Now()
	var err error
	if o.filter.Since, err = parseWhen(*since, now); err != nil {
		return usageErr(e, "report: --since: %v", err)
	}
	if o.filter.Until, err = parseWhen(*until, now); err != nil {
		return usageErr(e, "report: --until: %v", err)
	}
	if !o.filter.Since.IsZero() && !o.filter.Until.IsZero() && o.filter.Until.Before(o.filter.Since) {
		return usageErr(e, "report: --until %s is before --since %s", o.filter.Until.Format(time.RFC3339), o.filter.Since.Format(time.RFC3339))
	}
	if *ev == "" {
		*ev = defaultEvidence(o.format)
	}
	s, ok := signatures.ParseStrength(*ev)
	if !ok {
		return usageErr(e, "report: --evidence must be strong or weak, not %q", *ev)
	}
	o.filter.StrongOnly = s == signatures.Strong
	for _, f := range strings.Split(*family, ",") {
		if f = strings.TrimSpace(f); f != "" {
			o.filter.Families = append(o.filter.Families, f)
		}
	}
	// A complaint goes to a customer: a forged source address must not get
	// them one. The other formats show every host, with its proof.
	o.filter.VerifiedOnly = (o.format == "xarf" || o.format == "shadowserver") && !*unverified
	if o.format == "xarf" {
		if o.reporter, err = reporterFrom(*org, *contact, *domain); err != nil {
			return usageErr(e, "report: %v", err)
		}
	}
	if len(o.inputs) == 0 {
		o.inputs = []string{"-"}
	}
	if err := o.attr.open(ctx, o.format, o.filter, e.stderr); err != nil {
		return usageErr(e, "report: %v", err)
	}
	if o.attr.close != nil {
		defer o.attr.close()
	}
	if o.attr.attribute != nil || o.attr.sub != nil {
		o.workers = 1 // lines are changed or folded per subscriber as they are read
	}
	return writeReport(ctx, e, o)
}

// defaultEvidence is the --evidence a format gets when none is given. The
// formats that go to other networks' abuse desks as complaints (xarf,
// shadowserver) take only strong evidence: a lookup of a name a worm shares
// with legitimate software proves nothing about the customer. The formats
// the operator reads show everything.
func defaultEvidence(format string) string {
	switch format {
	case "xarf", "shadowserver":
		return "strong"
	}
	return "weak"
}

// reporterFrom fills the X-ARF reporter, defaulting org and domain from the
// contact address.
func reporterFrom(org, contact, domain string) (report.Reporter, error) {
	at := strings.LastIndexByte(contact, '@')
	if contact == "" || at <= 0 || at == len(contact)-1 || strings.ContainsAny(contact, " \t<>") {
		return report.Reporter{}, errors.New("xarf needs --reporter-contact with an e-mail address (abuse@isp.example)")
	}
	if domain == "" {
		domain = contact[at+1:]
	}
	if org == "" {
		org = domain
	}
	// X-ARF v4 limits: org at most 200 characters, domain a host name.
	if utf8.RuneCountInString(org) > 200 {
		return report.Reporter{}, errors.New("xarf: --reporter-org is longer than the 200 characters X-ARF allows")
	}
	if _, err := netip.ParseAddr(domain); err == nil || strings.Trim(domain, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != "" {
		return report.Reporter{}, fmt.Errorf("xarf: reporter domain %q is not a host name", domain)
	}
	return report.Reporter{Org: org, Contact: contact, Domain: domain}, nil
}

// parseWhen reads a --since/--until value: RFC 3339, a date, or a duration
// (Go syntax, plus "d" for days) meaning that long before now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseFloat(days, 64); err == nil && n >= 0 {
			return now.Add(-time.Duration(n * float64(24*time.Hour))), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time, a date nor a duration like 24h or 7d", s)
}

// writeReport reads every input in one streaming pass and writes the report.
// Input errors (unreadable file, truncated gzip) do not stop the others: the
// report of what was read is written, and the status is 1.
func writeReport(ctx context.Context, e env, o reportOptions) int {
	out := bufio.NewWriterSize(e.stdout, 64<<10)
	agg := report.NewAggregator(o.filter, o.format == "html")
	var ss *report.ShadowserverWriter
	switch o.format {
	case "shadowserver": // event4_sinkhole: IPv4 hosts
		ss = report.NewShadowserverWriter(out)
	case "shadowserver6": // event6_sinkhole: IPv6 hosts
		ss = report.NewShadowserverWriter6(out)
	}
	// Shadowserver writes one row per sighting, in log order: one reader.
	var par *report.ParallelReader
	if o.workers > 1 && ss == nil {
		par = report.NewParallelReader(o.filter, o.format == "html", o.workers)
	}
	var total report.ReadStats
	var failed []string
	for _, name := range o.inputs {
		if ctx.Err() != nil {
			failed = append(failed, "interrupted")
			break
		}
		var st report.ReadStats
		var err error
		if par != nil {
			st, err = readLogParallel(ctx, e, name, par)
		} else {
			st, err = readLog(ctx, e, name, o, agg, ss)
		}
		total.Add(st)
		if err != nil {
			failed = append(failed, err.Error())
		}
	}
	if par != nil {
		agg = par.Aggregator()
	}

	var werr error
	nets := agg.NetworkSightings()
	switch {
	case o.attr.sub != nil:
		werr = o.attr.write(out, o.format)
		if n := o.attr.sub.Unattributed(); n > 0 && o.format != "json" {
			fmt.Fprintf(e.stderr, "wormsink: report: %d sightings name no subscriber and are not in the report by subscriber\n", n)
		}
		o.format = "by-subscriber" // none of the notes below
	}
	switch o.format {
	case "shadowserver", "shadowserver6":
		werr = ss.Flush()
		if n := ss.Skipped(); n > 0 {
			other := "shadowserver6 (event6_sinkhole)"
			if o.format == "shadowserver6" {
				other = "shadowserver (event4_sinkhole)"
			}
			fmt.Fprintf(e.stderr, "wormsink: report: %d rows of hosts of the other address family left out of %s; write them with --format %s\n", n, ss.Report(), other)
		}
	case "table":
		if werr = report.WriteTable(out, agg.Hosts()); werr == nil {
			werr = report.WriteNetworkTable(out, agg.Networks())
		}
	case "csv":
		werr = report.WriteCSVSeq(out, agg.EachHost)
	case "json":
		rows := agg.Hosts()
		werr = report.WriteJSON(out, rows, summary(len(rows), agg, total))
	case "xarf":
		werr = report.WriteXARF(out, agg.Hosts(), o.reporter)
	case "html":
		rows := agg.Hosts()
		werr = report.WriteHTML(out, rows, report.HTMLPage{
			Title: o.title, Summary: summary(len(rows), agg, total), Timeline: agg.Timeline().Bin(report.TimelineBins),
		})
	}
	if werr == nil {
		werr = out.Flush()
	}
	// Network lines are not hosts: the host-only formats leave them out,
	// and say so, so that the counts can still be reconciled.
	switch o.format {
	case "csv", "xarf", "shadowserver":
		if nets != 0 {
			fmt.Fprintf(e.stderr, "wormsink: report: %d sightings are in network lines (the evidence line budget was spent); they name no host and are not in %s output (see --format table, json or html)\n",
				nets, o.format)
		}
	}
	if total.Malformed > 0 {
		fmt.Fprintf(e.stderr, "wormsink: report: skipped %d malformed or foreign lines of %d (first: %s)\n",
			total.Malformed, total.Lines, total.FirstBad)
	}
	for _, f := range failed {
		fmt.Fprintf(e.stderr, "wormsink: report: %s\n", f)
	}
	if werr != nil {
		return fail(e, "report: write: %v", werr)
	}
	if len(failed) > 0 {
		return exitFailure
	}
	return exitOK
}

func summary(hosts int, agg *report.Aggregator, st report.ReadStats) report.Summary {
	nets := agg.Networks()
	return report.Summary{Hosts: hosts, Sightings: agg.Sightings(), Lines: st.Lines, Malformed: st.Malformed, Service: st.Service,
		Networks: len(nets), NetworkSightings: agg.NetworkSightings(), NetworkRows: nets}
}

// readLogParallel is readLog on several cores (not for shadowserver).
func readLogParallel(ctx context.Context, e env, name string, par *report.ParallelReader) (report.ReadStats, error) {
	src, label, closeInput, err := openInput(e, name)
	if err != nil {
		return report.ReadStats{}, err
	}
	defer closeInput()
	st, err := par.Read(ctx, src, label)
	if err != nil {
		if strings.HasPrefix(err.Error(), label+": after line ") {
			// A read error, worded as readLog words it.
			return st, fmt.Errorf("%w (read %d lines, %d evidence lines, before the error)", err, st.Lines, st.Evidence)
		}
		return st, err
	}
	if st.Evidence == 0 && st.Service == 0 && st.Malformed > 0 {
		return st, fmt.Errorf("no evidence lines in %s (all %d lines skipped as malformed or foreign)", label, st.Malformed)
	}
	return st, nil
}

// readLog streams one input into the aggregator (or the per-sighting
// Shadowserver writer).
func readLog(ctx context.Context, e env, name string, o reportOptions, agg *report.Aggregator, ss *report.ShadowserverWriter) (report.ReadStats, error) {
	src, label, closeInput, err := openInput(e, name)
	if err != nil {
		return report.ReadStats{}, err
	}
	defer closeInput()
	r, err := report.NewReader(src, label)
	if err != nil {
		return report.ReadStats{}, err
	}
	defer r.Close()
	n := 0
	for r.Next() {
		rec := r.Sighting()
		if ss != nil {
			if rec.Network.IsValid() {
				agg.Add(rec) // counted, for the note on stderr; no row
			} else if o.filter.Keep(rec) && (!o.filter.StrongOnly || rec.Evidence == signatures.Strong) &&
				(!o.filter.VerifiedOnly || rec.Proof.Verified()) {
				if err := ss.Write(rec); err != nil {
					return r.Stats(), fmt.Errorf("write: %w", err)
				}
			}
		} else {
			if o.attr.attribute != nil {
				o.attr.attribute(rec)
			}
			agg.Add(rec)
			if o.attr.sub != nil {
				o.attr.sub.Add(rec)
			}
		}
		if n++; n&0xffff == 0 && ctx.Err() != nil {
			return r.Stats(), fmt.Errorf("%s: interrupted after line %d", label, r.Stats().Lines)
		}
	}
	if err := r.Err(); err != nil {
		st := r.Stats()
		return st, fmt.Errorf("%w (read %d lines, %d evidence lines, before the error)", err, st.Lines, st.Evidence)
	}
	// A file of which not one line is wormsink's (README.md, a pcap, another
	// program's log) is the wrong file, not an empty report. A log with
	// only service lines, or an empty one, is a quiet sensor: that is fine.
	if st := r.Stats(); st.Evidence == 0 && st.Service == 0 && st.Malformed > 0 {
		return st, fmt.Errorf("no evidence lines in %s (all %d lines skipped as malformed or foreign)", label, st.Malformed)
	}
	return r.Stats(), nil
}

// openInput opens a report input: stdin for "-", else the file, whose
// *PathError names it.
func openInput(e env, name string) (io.Reader, string, func() error, error) {
	if name == "-" {
		return e.stdin, "stdin", func() error { return nil }, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, "", nil, err
	}
	return f, name, f.Close, nil
}
