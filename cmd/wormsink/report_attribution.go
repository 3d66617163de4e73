package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"

	"wormsink/attribution"
	"wormsink/report"
)

// The report's attribution: --db attributes at report time every line that
// lacks a subscriber (NAT logs often arrive after the sighting), and --by
// subscriber folds the lines per subscriber instead of per address.

type reportAttribution struct {
	db  string
	by  string
	sub *report.SubscriberAggregator
	// attribute fills a line's subscriber from the store; nil without --db.
	attribute func(*report.Sighting)
	close     func()
}

func reportAttributionFlags(fs *flag.FlagSet, c *reportAttribution) {
	fs.StringVar(&c.db, "db", "", "attribute every line that names no subscriber from this store (sqlite:PATH or postgres://…), as of the line's time")
	fs.StringVar(&c.by, "by", "host", "one row per host, or per subscriber (table, csv, json)")
}

// open checks the flags and opens the store; the report is then read by
// one reader, in order.
func (c *reportAttribution) open(ctx context.Context, format *report.Format, stderr io.Writer) error {
	switch c.by {
	case "host":
	case "subscriber":
		switch format.Name {
		case "table", "csv", "json":
		default:
			return fmt.Errorf("--by subscriber writes table, csv or json, not %s (complaints to other networks name addresses only)", format.Name)
		}
	default:
		return fmt.Errorf("--by %q: want host or subscriber", c.by)
	}
	if c.db == "" {
		return nil
	}
	db, err := openDB(ctx, c.db)
	if err != nil {
		return fmt.Errorf("--db: %w", err)
	}
	l, err := attribution.NewStoreLookup(ctx, db, attribution.LookupConfig{})
	if err != nil {
		db.Close()
		return err
	}
	c.close = func() { db.Close() }
	type key struct {
		host netip.Addr
		port uint16
		at   int64
	}
	cache := map[key][]byte{}
	failed := false
	c.attribute = func(r *report.Sighting) {
		if len(r.Subscriber) > 0 || !r.Host.IsValid() || failed {
			return
		}
		k := key{r.Host, r.Port, r.Time.UnixMilli()}
		sub, ok := cache[k]
		if !ok {
			res, err := l.Lookup(ctx, r.Host, r.Port, r.Time)
			if err != nil {
				failed = true // said once; the report goes on without
				fmt.Fprintf(stderr, "wormsink: report: --db: %v; lines are reported as written\n", err)
				return
			}
			if res.Subscriber != "" {
				sub = []byte(res.Subscriber)
			}
			if len(cache) < 1<<20 {
				cache[k] = sub
			}
		}
		r.Subscriber = sub
	}
	return nil
}

// write writes the report by subscriber and returns the notes for stderr.
func (c *reportAttribution) write(w io.Writer, format string) ([]string, error) {
	rows := c.sub.Rows()
	var notes []string
	if n := c.sub.Unattributed(); n > 0 && format != "json" {
		notes = append(notes, fmt.Sprintf("%d sightings name no subscriber and are not in the report by subscriber", n))
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var err error
	switch format {
	case "csv":
		err = report.WriteSubscriberCSV(bw, rows)
	case "json":
		err = report.WriteSubscriberJSON(bw, rows, c.sub.Unattributed())
	default:
		err = report.WriteSubscriberTable(bw, rows)
	}
	if err == nil {
		err = bw.Flush()
	}
	return notes, err
}
