package report

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestCountsSaturate: counts that add up past 2^64-1 are held at it (they
// used to wrap to small numbers) in hosts, networks, the timeline, the
// read statistics and a parallel read, and the report says so.
func TestCountsSaturate(t *testing.T) {
	const max = "18446744073709551615"
	var log bytes.Buffer
	for i := range 3 {
		fmt.Fprintf(&log, `{"time":"2026-11-24T12:00:0%d.000Z","event":"tftp_refused","host":"10.0.0.1","port":1,"signature":"blaster","family":"Blaster","evidence":"strong","proof":"tcp","count":%s,"sensor":"s"}`+"\n", i, max)
		fmt.Fprintf(&log, `{"time":"2026-11-24T12:00:0%d.000Z","event":"dns_sinkhole","network":"10.9.0.0/24","signature":"blaster","family":"Blaster","evidence":"strong","proof":"tcp","count":%s,"sensor":"s"}`+"\n", i, max)
	}
	for _, workers := range []int{1, 3} {
		for _, name := range []string{"json", "html", "table", "csv"} {
			f, _ := LookupFormat(name)
			var out bytes.Buffer
			rep, _ := f.New(&out, Options{})
			var a *Aggregator
			var st ReadStats
			if workers == 1 {
				a = NewAggregator(rep.Filter(), f.Timeline)
				r, _ := NewReader(bytes.NewReader(log.Bytes()), "log")
				for r.Next() {
					a.Add(r.Sighting())
				}
				st = r.Stats()
			} else {
				p := NewParallelReader(rep.Filter(), f.Timeline, workers)
				var err error
				if st, err = p.Read(t.Context(), bytes.NewReader(log.Bytes()), "log"); err != nil {
					t.Fatal(err)
				}
				a = p.Aggregator()
			}
			notes, err := rep.Finish(a, st)
			if err != nil {
				t.Fatal(err)
			}
			hosts := a.Hosts()
			if len(hosts) != 1 || hosts[0].Events != MaxCount || a.Sightings() != MaxCount || a.NetworkSightings() != MaxCount ||
				st.Sightings != MaxCount || a.Networks()[0].Events != MaxCount || !a.Saturated() {
				t.Errorf("%s, %d workers: host %+v, sightings %d, network %d, read %d", name, workers, hosts, a.Sightings(), a.NetworkSightings(), st.Sightings)
			}
			if !strings.Contains(strings.Join(notes, "\n"), "saturated") {
				t.Errorf("%s, %d workers: notes %q say nothing of the saturated sums", name, workers, notes)
			}
			if !strings.Contains(out.String(), max) {
				t.Errorf("%s, %d workers: output does not show %s", name, workers, max)
			}
			if name == "html" && !strings.Contains(out.String(), "held there") {
				t.Errorf("the page does not say the counts are saturated")
			}
			if name == "json" && !strings.Contains(out.String(), `"saturated": true`) {
				t.Errorf("json summary does not say saturated:\n%s", out.String())
			}
			if name == "html" {
				for _, s := range a.Timeline().Bin(TimelineBins).Series {
					if s.Total != MaxCount {
						t.Errorf("timeline total %d", s.Total)
					}
				}
			}
		}
	}
	// Below the limit nothing is said.
	a := NewAggregator(Filter{}, false)
	r, _ := NewReader(strings.NewReader(strings.SplitN(log.String(), "\n", 2)[0]), "log")
	for r.Next() {
		a.Add(r.Sighting())
	}
	if a.Saturated() != (a.Sightings() == MaxCount) {
		t.Error("Saturated disagrees with the sum")
	}
}

func TestAddSat(t *testing.T) {
	for _, c := range []struct{ a, b, want uint64 }{{1, 2, 3}, {MaxCount, 0, MaxCount}, {MaxCount, 1, MaxCount}, {MaxCount - 1, 1, MaxCount}, {1 << 63, 1 << 63, MaxCount}} {
		if got := addSat(c.a, c.b); got != c.want {
			t.Errorf("addSat(%d, %d) = %d", c.a, c.b, got)
		}
	}
}
