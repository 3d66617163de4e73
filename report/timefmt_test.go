package report

import (
	"math/rand/v2"
	"testing"
	"time"

	"wormsink/evidence"
)

// TestAppendTimeSameAsLayout: appendTime writes what AppendFormat writes
// with the evidence layout, for times of every day from 1970 to 9999 and
// around the edges (leap days, year ends, the last millisecond).
func TestAppendTimeSameAsLayout(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	end := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Unix()
	check := func(tm time.Time) {
		tm = tm.UTC()
		if got, want := string(appendTime(nil, tm)), tm.Format(evidence.TimeFormat); got != want {
			t.Fatalf("appendTime(%v) = %q, want %q", tm, got, want)
		}
	}
	for range 200_000 {
		check(time.Unix(r.Int64N(end+1), r.Int64N(1e9)))
	}
	for _, d := range []string{"1970-01-01", "2000-02-29", "2024-02-29", "2100-02-28", "2100-03-01", "2199-12-31", "9999-12-31"} {
		day, err := time.Parse(time.DateOnly, d)
		if err != nil {
			t.Fatal(err)
		}
		for _, off := range []time.Duration{0, time.Millisecond - 1, time.Millisecond, 24*time.Hour - 1} {
			check(day.Add(off))
		}
	}
	for _, tm := range []time.Time{time.Unix(-1, 0).UTC(), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Unix(5, 0).In(time.FixedZone("x", 3600))} {
		if got, want := string(appendTime(nil, tm)), tm.Format(evidence.TimeFormat); got != want {
			t.Errorf("appendTime(%v) = %q, want %q", tm, got, want)
		}
	}
}

func FuzzAppendTime(f *testing.F) {
	f.Add(int64(0))
	f.Add(int64(1764000000123456789))
	f.Fuzz(func(t *testing.T, secs int64) {
		tm := time.Unix(secs, secs&(1<<29-1)).UTC()
		if got, want := string(appendTime(nil, tm)), tm.Format(evidence.TimeFormat); got != want {
			t.Fatalf("appendTime(%v) = %q, want %q", tm, got, want)
		}
	})
}
