package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"wormsink/quarantine"
)

const quarantineUsage = `usage: wormsink quarantine list [--all] [--db URL]
       wormsink quarantine add ADDR|SUBSCRIBER [--address IP,...] [--family NAME] [--note TEXT] [--db URL]
       wormsink quarantine release ADDR|SUBSCRIBER [--note TEXT] [--db URL]
       wormsink quarantine note ADDR|SUBSCRIBER --note TEXT [--db URL]
       wormsink quarantine show ADDR|SUBSCRIBER [--db URL]
A running serve on the same --db sees every change within a second.`

// runQuarantine is the abuse team's hand on the quarantine: the same
// engine serve runs, on the same database.
func runQuarantine(ctx context.Context, e env, args []string) int {
	if len(args) == 0 {
		return usageErr(e, "quarantine: needs a subcommand: list, add, release, note or show (see wormsink quarantine --help)")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(e.stdout, quarantineUsage)
		return exitOK
	case "list", "add", "release", "note", "show":
	default:
		return usageErr(e, "quarantine: unknown subcommand %q (want list, add, release, note or show)", sub)
	}
	argsUsage := "ADDR|SUBSCRIBER"
	if sub == "list" {
		argsUsage = ""
	}
	fs := newFlags(e, "quarantine "+sub, argsUsage)
	var dbURL string
	dbFlag(fs, &dbURL)
	all := fs.Bool("all", false, "list: every subject ever quarantined, released ones too")
	note := fs.String("note", "", "a note for the audit trail (why)")
	family := fs.String("family", "", "add: the worm family the notice page names")
	var addrs addrList
	fs.Var(&addrs, "address", "add: the subscriber's own addresses to enforce on, IP,... (an address subject is enforced on itself)")
	policyFile := fs.String("policy", "", "the --quarantine-policy file serve uses (for its never networks and self-release rules)")
	if code, done := parseFlags(fs, e, reorderFlags(fs, args)); done {
		return code
	}
	var subj quarantine.Subject
	if sub == "list" {
		if fs.NArg() != 0 {
			return usageErr(e, "quarantine list: takes no arguments")
		}
	} else {
		if fs.NArg() != 1 {
			return usageErr(e, "quarantine %s: takes exactly one ADDR or SUBSCRIBER", sub)
		}
		var err error
		if subj, err = quarantine.ParseSubject(fs.Arg(0)); err != nil {
			return usageErr(e, "quarantine %s: %v", sub, err)
		}
	}
	if sub == "note" && *note == "" {
		return usageErr(e, "quarantine note: needs --note TEXT")
	}
	var policy *quarantine.Policy
	if *policyFile != "" {
		p, err := quarantine.LoadPolicy(*policyFile)
		if err != nil {
			return fail(e, "quarantine: %v", err)
		}
		policy = p
	}
	db, err := openDB(ctx, dbURL)
	if err != nil {
		return fail(e, "quarantine: %v", err)
	}
	defer db.Close()
	eng, err := quarantine.New(ctx, quarantine.Config{DB: db, Policy: policy})
	if err != nil {
		return fail(e, "quarantine: %v", err)
	}
	actor := actorName()
	switch sub {
	case "list":
		list, err := eng.List(ctx, *all)
		if err != nil {
			return fail(e, "quarantine: %v", err)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SUBJECT\tSTATE\tFAMILY\tSINCE\tLAST_SIGHTING\tADDRESSES\tSELF_RELEASES")
		for _, ent := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", ent.Subject, ent.State, dash(ent.Family),
				stamp(ent.Since), stamp(ent.LastSighting), dash(joinAddrs(ent.Addresses)), ent.SelfReleases)
		}
		tw.Flush()
	case "add":
		ent, err := eng.Add(ctx, subj, []netip.Addr(addrs), *family, actor, *note)
		if err != nil {
			return fail(e, "quarantine: %v", err)
		}
		if len(ent.Addresses) == 0 {
			fmt.Fprintf(e.stderr, "wormsink: quarantine: %s has no address yet: enforced from their next RADIUS Start (or give --address)\n", subj)
		}
		fmt.Fprintf(e.stdout, "%s quarantined (enforced on %s)\n", subj, dash(joinAddrs(ent.Addresses)))
	case "release":
		if _, err := eng.Release(ctx, subj, quarantine.ReleaseAdmin, actor, *note); err != nil {
			if errors.Is(err, quarantine.ErrNotQuarantined) {
				return fail(e, "quarantine: %s is not in quarantine", subj)
			}
			return fail(e, "quarantine: %v", err)
		}
		fmt.Fprintf(e.stdout, "%s released\n", subj)
	case "note":
		if err := eng.Note(ctx, subj, actor, *note); err != nil {
			return fail(e, "quarantine: %v", err)
		}
	case "show":
		ent, err := eng.Get(ctx, subj)
		if err != nil {
			return fail(e, "quarantine: %s: %v", subj, err)
		}
		fmt.Fprintf(e.stdout, "subject: %s\nstate: %s\nfamily: %s\nsince: %s\nlast sighting: %s\naddresses: %s\nself-releases: %d\n",
			ent.Subject, ent.State, dash(ent.Family), stamp(ent.Since), stamp(ent.LastSighting), dash(joinAddrs(ent.Addresses)), ent.SelfReleases)
		rows, err := eng.Audit(ctx, subj)
		if err != nil {
			return fail(e, "quarantine: %v", err)
		}
		fmt.Fprintln(e.stdout, "audit:")
		for _, r := range rows {
			fmt.Fprintf(e.stdout, "  %s  %-10s %-6s %-20s %s\n", stamp(r.At), r.Action, dash(r.Kind), r.Actor, oneLine(r.Note))
		}
	}
	return exitOK
}

// actorName is who the audit trail names for a command-line action: the
// login behind sudo when there is one.
func actorName() string {
	if s := os.Getenv("SUDO_USER"); s != "" {
		return s
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return fmt.Sprintf("uid %d", os.Getuid())
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// oneLine keeps a note on one terminal line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
