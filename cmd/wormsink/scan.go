package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"time"

	"wormsink/evidence"
	"wormsink/signatures"
	"wormsink/wire"
)

func runScan(ctx context.Context, e env, args []string) int {
	fs := newFlags(e, "scan", "PCAP... (- reads standard input)")
	sigPath := fs.String("signatures", "", "signature file (default: the built-in set)")
	anyPort := fs.Bool("any-port", false, "also accept well-formed TFTP requests to ports other than 69")
	host, _ := os.Hostname()
	sensor := fs.String("sensor", host, "name recorded in every event")
	workers := fs.Int("workers", runtime.NumCPU(), "goroutines matching packets; the output is the same for any number")
	var trusted evidence.Networks
	fs.Var(&trusted, "trusted-sources", "CIDR,... of networks whose edge drops forged source addresses: their hosts' sightings get at least proof trusted-source")
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	if fs.NArg() == 0 {
		return usageErr(e, "scan: needs at least one PCAP file (- for standard input)")
	}
	if *workers < 1 || *workers > 1024 {
		return usageErr(e, "scan: --workers %d: want from 1 to 1024", *workers)
	}
	set := signatures.Default()
	if *sigPath != "" {
		var err error
		if set, err = signatures.Load(*sigPath); err != nil {
			return fail(e, "scan: %v", err)
		}
	}

	// Lines by the packets' time, not the wall clock: the same for any speed
	// and any number of workers.
	w := evidence.NewWriter(e.stdout, evidence.Config{Sensor: *sensor, TrustedSources: trusted, EventClock: true})
	rec := &hostCounter{rec: w, hosts: make(map[netip.Addr]struct{})}
	var m scanner
	if *workers == 1 {
		m = wire.NewMatcher(wire.StaticSet{Set: set}, rec, wire.Options{AnyPort: *anyPort})
	} else {
		m = wire.NewParallelScanner(wire.StaticSet{Set: set}, rec, wire.Options{AnyPort: *anyPort}, *workers)
	}

	start := time.Now()
	code := exitOK
	for _, path := range fs.Args() {
		var err error
		if path == "-" {
			_, err = m.Scan(ctx, e.stdin, "stdin")
		} else {
			_, err = m.ScanFile(ctx, path)
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "wormsink: scan: %v\n", err)
			code = exitFailure
			if ctx.Err() != nil {
				break
			}
		}
	}
	elapsed := time.Since(start)
	if err := w.Close(); err != nil {
		fmt.Fprintf(e.stderr, "wormsink: scan: writing evidence: %v\n", err)
		code = exitFailure
	}
	st := m.Stats()
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(st.Packets) / s
	}
	fmt.Fprintf(e.stderr, "wormsink: scan: %d files, %d packets, %d bytes, %d matches, %d events, %d hosts, %d tftp requests, %d fragments (%d reassembled), %d tcp segments joined to their stream (%d streams evicted), %d undecodable, in %.3fs (%.0f packets/s)\n",
		fs.NArg(), st.Packets, st.Bytes, st.Matches, st.Events, len(rec.hosts), st.TFTPRequests,
		st.Fragments, st.Reassembled, st.StreamJoined, st.StreamEvicted, st.Undecodable+st.UnknownLink, elapsed.Seconds(), rate)
	return code
}

// scanner is a wire.Matcher (one core) or a wire.ParallelScanner.
type scanner interface {
	Scan(ctx context.Context, r io.Reader, name string) (uint64, error)
	ScanFile(ctx context.Context, path string) (uint64, error)
	Stats() wire.Stats
}

// hostCounter counts the distinct hosts the evidence names, for the summary.
type hostCounter struct {
	rec   evidence.Recorder
	hosts map[netip.Addr]struct{}
}

func (h *hostCounter) Record(ev evidence.Event) {
	h.hosts[ev.Host] = struct{}{}
	h.rec.Record(ev)
}
