package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"wormsink/attribution"
)

const attributionUsage = `usage: wormsink attribution import [--db URL] [--radius-detail FILE]... [--nat-log FORMAT:PATH]...
       wormsink attribution who [--db URL] [--subscribers FILE] [--nat-deterministic FILE] ADDR[:PORT] TIME`

func runAttribution(ctx context.Context, e env, args []string) int {
	if len(args) == 0 {
		return usageErr(e, "attribution: needs a subcommand: import or who")
	}
	switch args[0] {
	case "import":
		return runAttributionImport(ctx, e, args[1:])
	case "who":
		return runAttributionWho(ctx, e, args[1:])
	case "-h", "-help", "--help":
		fmt.Fprintln(e.stdout, attributionUsage)
		return exitOK
	}
	return usageErr(e, "attribution: unknown subcommand %q (want import or who)", args[0])
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func runAttributionImport(ctx context.Context, e env, args []string) int {
	fs := newFlags(e, "attribution import", "")
	var db string
	dbFlag(fs, &db)
	var details stringList
	var logs natLogList
	fs.Var(&details, "radius-detail", "FreeRADIUS detail file of accounting records (repeatable)")
	fs.Var(&logs, "nat-log", "FORMAT:PATH of a NAT log, FORMAT ulogd-json or junos-pba (repeatable)")
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageErr(e, "attribution import: takes no arguments (got %q); name files with --radius-detail or --nat-log", fs.Arg(0))
	}
	if len(details) == 0 && len(logs) == 0 {
		return usageErr(e, "attribution import: nothing to import: give --radius-detail FILE or --nat-log FORMAT:PATH")
	}
	d, err := openDB(ctx, db)
	if err != nil {
		return fail(e, "attribution import: --db: %v", err)
	}
	defer d.Close()
	a, err := attribution.New(ctx, attribution.Config{DB: d, Log: zerolog.New(e.stderr)})
	if err != nil {
		return fail(e, "attribution import: %v", err)
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	go func() { served <- a.Serve(sctx) }()
	defer func() { stop(); <-served }()
	bad := 0
	report := func(err error) {
		bad++
		fmt.Fprintf(e.stderr, "attribution import: %v (skipped)\n", err)
	}
	for _, path := range details {
		n, err := importDetail(ctx, a, path, report)
		if err != nil {
			return fail(e, "attribution import: %v", err)
		}
		fmt.Fprintf(e.stdout, "%s: %d accounting records\n", path, n)
	}
	for _, l := range logs {
		st, err := a.ImportNATLog(ctx, l, report)
		if err != nil {
			return fail(e, "attribution import: %v", err)
		}
		fmt.Fprintf(e.stdout, "%s: %d NAT events, %d lines skipped, %d bad\n", l.Path, st.Events.Load(), st.Skipped.Load(), st.Errors.Load())
	}
	if err := a.Sync(ctx); err != nil {
		return fail(e, "attribution import: %v", err)
	}
	if st := a.Stats(); st.Errors > 0 {
		return fail(e, "attribution import: %d batches not stored", st.Errors)
	}
	if bad > 0 {
		return fail(e, "attribution import: %d bad records skipped", bad)
	}
	return exitOK
}

func importDetail(ctx context.Context, a *attribution.Attributor, path string, report func(error)) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := attribution.NewDetailReader(f, path, time.Local)
	n := 0
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			report(err)
			continue
		}
		// Queued, not waited for one by one: the records share
		// transactions, and the Sync after the last file reports failures.
		if err := a.QueueAccount(ctx, ev); err != nil {
			return n, err
		}
		n++
	}
}

func runAttributionWho(ctx context.Context, e env, args []string) int {
	fs := newFlags(e, "attribution who", "ADDR[:PORT] TIME")
	var db, subs, det string
	var sessionTimeout, natTimeout time.Duration
	dbFlag(fs, &db)
	fs.StringVar(&subs, "subscribers", "", `file of lines "CIDR ID [EMAIL [LANG]]" (as serve's)`)
	fs.StringVar(&det, "nat-deterministic", "", "deterministic NAT rules (as serve's)")
	fs.DurationVar(&sessionTimeout, "radius-session-timeout", attribution.DefaultSessionTimeout, "as serve's")
	fs.DurationVar(&natTimeout, "nat-timeout", attribution.DefaultNATTimeout, "as serve's")
	if code, done := parseFlags(fs, e, reorderFlags(fs, args)); done {
		return code
	}
	if fs.NArg() != 2 {
		return usageErr(e, "attribution who: want ADDR[:PORT] TIME (TIME: RFC 3339 or Unix seconds)")
	}
	addr, port, err := parseAddrPort(fs.Arg(0))
	if err != nil {
		return usageErr(e, "attribution who: %v", err)
	}
	t, err := parseInstant(fs.Arg(1))
	if err != nil {
		return usageErr(e, "attribution who: %v", err)
	}
	cfg := attribution.LookupConfig{SessionTimeout: sessionTimeout, NATTimeout: natTimeout}
	if subs != "" {
		if cfg.Subscribers, err = attribution.LoadSubscribers(subs); err != nil {
			return fail(e, "attribution who: --subscribers: %v", err)
		}
	}
	if det != "" {
		if cfg.Deterministic, err = attribution.LoadDeterministic(det); err != nil {
			return fail(e, "attribution who: --nat-deterministic: %v", err)
		}
	}
	d, err := openDB(ctx, db)
	if err != nil {
		return fail(e, "attribution who: --db: %v", err)
	}
	defer d.Close()
	l, err := attribution.NewStoreLookup(ctx, d, cfg)
	if err != nil {
		return fail(e, "attribution who: %v", err)
	}
	r, err := l.Lookup(ctx, addr, port, t)
	if err != nil {
		return fail(e, "attribution who: %v", err)
	}
	what := fs.Arg(0) + " at " + t.UTC().Format(time.RFC3339)
	switch {
	case r.Subscriber != "":
		fmt.Fprintf(e.stdout, "subscriber: %s\n", r.Subscriber)
	case r.Candidates > 0:
		fmt.Fprintf(e.stdout, "subscriber_candidates: %d\n", r.Candidates)
	default:
		fmt.Fprintf(e.stdout, "subscriber: unknown\n")
	}
	if r.Inside.IsValid() {
		if r.Inside.Port() == 0 {
			fmt.Fprintf(e.stdout, "nat_inside: %s\n", r.Inside.Addr())
		} else {
			fmt.Fprintf(e.stdout, "nat_inside: %s\n", r.Inside)
		}
	}
	if r.Subscriber == "" {
		fmt.Fprintf(e.stderr, "attribution who: no single subscriber for %s\n", what)
		return exitFailure
	}
	return exitOK
}

// reorderFlags moves flags before the positional arguments, so "who ADDR
// TIME --db URL" works as an analyst types it.
func reorderFlags(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && fs.Lookup(name) != nil && i+1 < len(args) {
				if _, isBool := fs.Lookup(name).Value.(interface{ IsBoolFlag() bool }); !isBool {
					i++
					flags = append(flags, args[i])
				}
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(append(flags, "--"), pos...)
}

// parseAddrPort reads ADDR, ADDR:PORT or [ADDR]:PORT.
func parseAddrPort(s string) (netip.Addr, uint16, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), 0, nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("%q: want ADDR or ADDR:PORT ([ADDR]:PORT for IPv6)", s)
	}
	return ap.Addr().Unmap(), ap.Port(), nil
}

// parseInstant reads RFC 3339 (with or without fractions) or Unix seconds.
func parseInstant(s string) (time.Time, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-12-06T20:45:44Z) or Unix seconds", s)
}
