package desk

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"wormsink/store/storetest"
)

// BenchmarkIngest stores batches of 1000 lines on SQLite, as a shipper
// sends them, from 500 or 20 hosts (each host's case is folded once per
// batch); lines/s is the figure to read.
func BenchmarkIngest(b *testing.B) {
	for _, hosts := range []int{500, 20} {
		b.Run(itoa(hosts)+"hosts", func(b *testing.B) { benchIngest(b, hosts) })
	}
}

func benchIngest(b *testing.B, hosts int) {
	st, err := Open(context.Background(), storetest.Open(b, "sqlite:"+filepath.Join(b.TempDir(), "d.db")))
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	const batch = 1000
	texts := make([][]byte, batch)
	for i := range texts {
		texts[i] = evLine(t0.Add(time.Duration(i)*time.Second), "10.0."+itoa(i%hosts/250)+"."+itoa(i%hosts%250+1), "blaster", "strong", "tcp", "s1", "")
	}
	b.ReportAllocs()
	b.ResetTimer()
	var off int64
	for i := 0; i < b.N; i++ {
		lines := make([]Line, batch)
		for j := range lines {
			lines[j] = Line{Sensor: "s1", Log: "l", Off: off, Text: texts[j]}
			off += int64(len(texts[j]) + 1)
		}
		if _, err := st.Ingest(context.Background(), lines); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "lines/s")
}

func itoa(i int) string {
	const d = "0123456789"
	if i < 10 {
		return d[i : i+1]
	}
	return itoa(i/10) + d[i%10:i%10+1]
}

// BenchmarkCaseList: the first page of the list and a search by address
// among 100,000 cases (one line each) on SQLite.
func BenchmarkCaseList(b *testing.B) {
	st, err := Open(context.Background(), storetest.Open(b, "sqlite:"+filepath.Join(b.TempDir(), "d.db")))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	const cases = 100000
	for i := 0; i < cases; i += 1000 {
		lines := make([]Line, 1000)
		for j := range lines {
			n := i + j
			host := "10." + itoa(n>>16&255) + "." + itoa(n>>8&255) + "." + itoa(n&255)
			lines[j] = Line{Sensor: "s", Log: "l", Off: int64(n), Text: evLine(t0.Add(time.Duration(n)*time.Second), host, "blaster", "strong", "tcp", "s", "")}
		}
		if _, err := st.Ingest(ctx, lines); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("list", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if cs, err := st.List(ctx, Filter{}); err != nil || len(cs) != DefaultLimit {
				b.Fatal(err, len(cs))
			}
		}
	})
	b.Run("search-address", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if cs, err := st.List(ctx, Filter{Q: "10.1.2.3"}); err != nil || len(cs) != 1 {
				b.Fatal(err, len(cs))
			}
		}
	})
	b.Run("filter-family-open", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := st.List(ctx, Filter{Family: "blaster", State: "open"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
