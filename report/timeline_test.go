package report

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func timelineOf(times ...string) *Timeline {
	t := newTimeline()
	for _, s := range times {
		ts, err := time.Parse(time.RFC3339, s)
		if err != nil {
			panic(err)
		}
		t.add(0, ts.UnixNano(), ts.UnixNano(), 1)
	}
	return t
}

// Bins start on clock boundaries (not at the first sighting) and have a
// width a reader can count in, so a steady rate draws a flat line.
func TestTimelineBinsOnClockBoundaries(t *testing.T) {
	var times []string
	// One sighting a minute from 10:07 to 13:52: a steady rate.
	for at := time.Date(2026, 3, 4, 10, 7, 0, 0, time.UTC); !at.After(time.Date(2026, 3, 4, 13, 52, 0, 0, time.UTC)); at = at.Add(time.Minute) {
		times = append(times, at.Format(time.RFC3339))
	}
	b := timelineOf(times...).Bin(4)
	if !b.Start.Equal(time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)) || b.Width != time.Hour {
		t.Fatalf("bins start %v, %v wide; want 10:00, 1h", b.Start, b.Width)
	}
	got := b.Series[0].Counts
	if len(got) != 4 || got[1] != 60 || got[2] != 60 || got[0] != 53 || got[3] != 53 {
		t.Fatalf("counts %v, want [53 60 60 53]", got)
	}
	if !b.End.Equal(time.Date(2026, 3, 4, 14, 0, 0, 0, time.UTC)) || !b.TailPartial {
		t.Errorf("end %v, tail partial %v; want 14:00, true", b.End, b.TailPartial)
	}
	for _, w := range []struct {
		span time.Duration
		n    int
		want time.Duration
	}{{90 * time.Minute, 96, time.Minute}, {20 * time.Hour, 96, 15 * time.Minute}, {30 * 24 * time.Hour, 96, 12 * time.Hour}, {400 * 24 * time.Hour, 96, 7 * 24 * time.Hour}} {
		start := time.Date(2025, 11, 5, 8, 3, 0, 0, time.UTC)
		b := timelineOf(start.Format(time.RFC3339), start.Add(w.span).Format(time.RFC3339)).Bin(w.n)
		if b.Width != w.want || len(b.Series[0].Counts) > w.n || b.Start.After(start) || b.End.Before(start.Add(w.span)) {
			t.Errorf("span %v: %d bins of %v from %v to %v; want at most %d of %v covering it", w.span, len(b.Series[0].Counts), b.Width, b.Start, b.End, w.n, w.want)
		}
		if b.Start.UnixNano()%int64(time.Minute) != 0 || (b.Width >= 24*time.Hour && b.Start.Hour() != 0) ||
			(b.Width == 7*24*time.Hour && b.Start.Weekday() != time.Monday) {
			t.Errorf("span %v: bins start at %v, not on a %v boundary", w.span, b.Start, b.Width)
		}
	}
}

// The chart's labels carry the year when the log spans a new year.
func TestChartLabelsYear(t *testing.T) {
	page := func(tl *Timeline) string {
		var buf bytes.Buffer
		if err := WriteHTML(&buf, nil, HTMLPage{Timeline: tl.Bin(TimelineBins)}); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	across := page(timelineOf("2025-12-31T22:00:00Z", "2026-01-01T02:00:00Z"))
	if !strings.Contains(across, "2025-12-31 22:00") || !strings.Contains(across, "2026-01-01 02:00") {
		t.Errorf("labels across the new year lack the year:\n%s", across)
	}
	within := page(timelineOf("2026-03-04T10:00:00Z", "2026-03-04T14:00:00Z"))
	if strings.Contains(within, ">2026-03-04 ") || !strings.Contains(within, "03-04 10:00") {
		t.Errorf("labels within one year: want MM-DD hh:mm")
	}
	if !strings.Contains(within, "partial") {
		t.Errorf("the chart does not say its last bin is partial")
	}
}
