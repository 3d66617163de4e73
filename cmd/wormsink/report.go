package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"wormsink/report"
	"wormsink/signatures"
)

// reportOptions is the parsed command line of report.
type reportOptions struct {
	format  *report.Format
	opts    report.Options
	inputs  []string
	workers int
	attr    reportAttribution // --db, --by: report_attribution.go
}

func runReport(ctx context.Context, e env, args []string) int {
	fs := newFlags(e, "report", "[LOG...]  (stdin when none or \"-\"; plain or gzip)")
	format := fs.String("format", report.DefaultFormat, "output: "+strings.Join(report.FormatNames(), ", "))
	since := fs.String("since", "", "only sightings at or after T: RFC 3339, a date (2006-01-02, UTC), or a duration before now (24h, 7d)")
	until := fs.String("until", "", "only sightings at or before T (same forms as --since)")
	ev := fs.String("evidence", "", "weakest evidence a host needs to be listed: strong, or weak (all hosts); for shadowserver and shadowserver6, of each sighting (default strong for the formats that file complaints, xarf, shadowserver and shadowserver6; weak for the others)")
	family := fs.String("family", "", "only sightings of these families (comma-separated, any case)")
	org := fs.String("reporter-org", "", "xarf: reporting organisation (default: the contact's domain)")
	contact := fs.String("reporter-contact", "", "xarf: reporter's abuse contact e-mail address (required for xarf)")
	domain := fs.String("reporter-domain", "", "xarf: reporter's domain (default: the contact's domain)")
	title := fs.String("title", "", "html: page title (default \"wormsink report\")")
	var exclude prefixList
	fs.Var(&exclude, "exclude", "never list hosts in these networks, CIDR or address,... (the sinkhole's own addresses, ranges that are not customers)")
	// proof of the source address
	unverified := fs.Bool("include-unverified", false, "xarf, shadowserver, shadowserver6: also file hosts (shadowserver: sightings) whose only proof is a lone datagram, which anyone can forge")
	workers := fs.Int("workers", runtime.NumCPU(), "goroutines parsing and counting lines; the report is the same for any number")
	var attr reportAttribution
	reportAttributionFlags(fs, &attr)
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	o := reportOptions{inputs: fs.Args(), workers: *workers, attr: attr}
	o.opts.Title = *title
	o.opts.Filter.Exclude = exclude
	o.opts.IncludeUnverified = *unverified
	if o.workers < 1 || o.workers > 1024 {
		return usageErr(e, "report: --workers %d: want from 1 to 1024", o.workers)
	}
	var err error
	if o.format, err = report.LookupFormat(*format); err != nil {
		return usageErr(e, "report: %v", err)
	}
	now := time.Now()
	if o.opts.Filter.Since, err = parseWhen(*since, now); err != nil {
		return usageErr(e, "report: --since: %v", err)
	}
	if o.opts.Filter.Until, err = parseWhen(*until, now); err != nil {
		return usageErr(e, "report: --until: %v", err)
	}
	if f := o.opts.Filter; !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		return usageErr(e, "report: --until %s is before --since %s", f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339))
	}
	if *ev != "" {
		s, ok := signatures.ParseStrength(*ev)
		if !ok {
			return usageErr(e, "report: --evidence must be strong or weak, not %q", *ev)
		}
		o.opts.Evidence = &s
	}
	for _, f := range strings.Split(*family, ",") {
		if f = strings.TrimSpace(f); f != "" {
			o.opts.Filter.Families = append(o.opts.Filter.Families, f)
		}
	}
	if o.format.NeedsReporter {
		if o.opts.Reporter, err = report.NewReporter(*org, *contact, *domain); err != nil {
			return usageErr(e, "report: %v", err)
		}
	}
	if len(o.inputs) == 0 {
		o.inputs = []string{"-"}
	}
	if err := o.attr.open(ctx, o.format, e.stderr); err != nil {
		return usageErr(e, "report: %v", err)
	}
	if o.attr.close != nil {
		defer o.attr.close()
	}
	if o.attr.attribute != nil || o.attr.by == "subscriber" {
		o.workers = 1 // lines are changed or folded per subscriber as they are read
	}
	return writeReport(ctx, e, o)
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
	rep, err := o.format.New(e.stdout, o.opts)
	if err != nil {
		return usageErr(e, "report: %v", err)
	}
	agg := report.NewAggregator(rep.Filter(), o.format.Timeline)
	if o.attr.by == "subscriber" {
		o.attr.sub = report.NewSubscriberAggregator(rep.Filter())
	}
	// A stream format writes one row per sighting, in log order: one reader.
	var par *report.ParallelReader
	if o.workers > 1 && !o.format.Streams() {
		par = report.NewParallelReader(rep.Filter(), o.format.Timeline, o.workers)
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
			st, err = readLog(ctx, e, name, rep, agg, &o.attr)
		}
		total.Add(st)
		if err != nil {
			failed = append(failed, err.Error())
		}
	}
	if par != nil {
		agg = par.Aggregator()
	}
	var notes []string
	var werr error
	if o.attr.sub != nil {
		notes, werr = o.attr.write(e.stdout, o.format.Name)
	} else {
		notes, werr = rep.Finish(agg, total)
	}
	for _, n := range notes {
		fmt.Fprintf(e.stderr, "wormsink: report: %s\n", n)
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

// readLog streams one input into the aggregator, or into the report of a
// stream format.
func readLog(ctx context.Context, e env, name string, rep *report.Report, agg *report.Aggregator, attr *reportAttribution) (report.ReadStats, error) {
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
		if rep.Format().Streams() {
			if err := rep.Add(rec); err != nil {
				return r.Stats(), fmt.Errorf("write: %w", err)
			}
		} else {
			if attr.attribute != nil {
				attr.attribute(rec)
			}
			agg.Add(rec)
			if attr.sub != nil {
				attr.sub.Add(rec)
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
