package attribution

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// The NAT log formats a file can be read in.
const (
	FormatULOGD = "ulogd-json" // ulogd2 JSON output of conntrack events (NFCT)
	FormatPBA   = "junos-pba"  // Juniper port-block allocation syslog
)

// NATLog is one --nat-log FORMAT:PATH.
type NATLog struct {
	Format, Path string
}

// ParseNATLog parses FORMAT:PATH.
func ParseNATLog(s string) (NATLog, error) {
	f, p, ok := strings.Cut(s, ":")
	if !ok || p == "" {
		return NATLog{}, fmt.Errorf("attribution: nat log %q: want FORMAT:PATH", s)
	}
	switch f {
	case FormatULOGD, FormatPBA:
	default:
		return NATLog{}, fmt.Errorf("attribution: nat log %q: unknown format %q (want %s or %s)", s, f, FormatULOGD, FormatPBA)
	}
	return NATLog{Format: f, Path: p}, nil
}

// LineParser parses one line of a NAT log.
type LineParser func(line []byte) (NATEvent, error)

// Parser returns the parser of the log's format. Times without a zone are
// read in loc; syslog headers without a year take the year that puts them
// nearest to now.
func (l NATLog) Parser(loc *time.Location, now func() time.Time) LineParser {
	if l.Format == FormatPBA {
		return func(line []byte) (NATEvent, error) { return ParsePBA(line, loc, now()) }
	}
	return func(line []byte) (NATEvent, error) { return ParseULOGD(line, loc) }
}

// NATLogStats counts what reading a NAT log found.
type NATLogStats struct {
	Lines, Events, Skipped, Errors atomic.Uint64
}

// lineHandler returns the function a reader calls for each line: it
// queues the event, or counts and reports the error (FILE:LINE) through
// report, for the first few of them.
func (a *Attributor) lineHandler(ctx context.Context, l NATLog, st *NATLogStats, report func(error)) func([]byte, int) {
	parse := l.Parser(time.Local, a.cfg.Now)
	return func(line []byte, n int) {
		st.Lines.Add(1)
		if len(strings.TrimSpace(string(line))) == 0 && line != nil {
			return
		}
		var ev NATEvent
		var err error
		if line == nil {
			err = errors.New("line too long")
		} else {
			ev, err = parse(line)
		}
		if errors.Is(err, ErrSkip) {
			st.Skipped.Add(1)
			return
		}
		if err != nil {
			if st.Errors.Add(1) <= 10 && report != nil {
				report(fmt.Errorf("%s:%d: %w", l.Path, n, err))
			}
			return
		}
		if a.NAT(ctx, ev) == nil {
			st.Events.Add(1)
		}
	}
}

// FollowNATLog follows l as it grows and rotates until ctx ends.
func (a *Attributor) FollowNATLog(ctx context.Context, l NATLog, st *NATLogStats) error {
	h := a.lineHandler(ctx, l, st, func(err error) {
		a.cfg.Log.Warn().Str("event", "nat_log_error").Str("error", err.Error()).Msg("NAT log line skipped")
	})
	return Follow(ctx, l.Path, 0, h)
}

// ImportNATLog reads l once, to its end, and waits until everything read
// is stored. Bad lines are reported through report and skipped.
func (a *Attributor) ImportNATLog(ctx context.Context, l NATLog, report func(error)) (*NATLogStats, error) {
	f, err := os.Open(l.Path)
	if err != nil {
		return nil, fmt.Errorf("attribution: import: %w", err)
	}
	defer f.Close()
	st := &NATLogStats{}
	h := a.lineHandler(ctx, l, st, report)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), maxLine+1)
	n := 0
	for sc.Scan() {
		n++
		h(sc.Bytes(), n)
	}
	if err := sc.Err(); err != nil {
		return st, fmt.Errorf("attribution: import %s:%d: %w", l.Path, n+1, err)
	}
	if err := a.Sync(ctx); err != nil {
		return st, err
	}
	return st, nil
}
