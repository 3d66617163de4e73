package desk

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"wormsink/store/storetest"
)

// BenchmarkIngest stores batches of 1000 lines on SQLite, as a shipper
// sends them, from 20 to 50,000 hosts: the lines go round the hosts, so
// with 5,000 or 50,000 hosts every line of a batch is a different case and
// the cases table grows to that size. lines/s is the figure to read.
func BenchmarkIngest(b *testing.B) {
	for _, hosts := range []int{20, 500, 5000, 50000} {
		b.Run(itoa(hosts)+"hosts", func(b *testing.B) { benchIngest(b, hosts) })
	}
}

// BenchmarkIngestPostgres is the same on the test's PostgreSQL cluster
// (fsync off: what it measures is the statements, not the disk).
func BenchmarkIngestPostgres(b *testing.B) {
	for _, hosts := range []int{20, 500, 5000, 50000} {
		b.Run(itoa(hosts)+"hosts", func(b *testing.B) {
			url, err := storetest.Cluster(b).NewDatabase()
			if err != nil {
				b.Fatal(err)
			}
			benchIngestAt(b, url, hosts)
		})
	}
}

func benchIngest(b *testing.B, hosts int) {
	benchIngestAt(b, "sqlite:"+filepath.Join(b.TempDir(), "d.db"), hosts)
}

func benchIngestAt(b *testing.B, url string, hosts int) {
	st, err := Open(context.Background(), storetest.Open(b, url))
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	const batch = 1000
	texts := make([][]byte, max(hosts, batch))
	for i := range texts {
		h := i % hosts
		texts[i] = evLine(t0.Add(time.Duration(i)*time.Second), "10."+itoa(h>>16)+"."+itoa(h>>8&255)+"."+itoa(h&255), "blaster", "strong", "tcp", "s1", "")
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	var off int64
	n := 0
	for i := 0; i < b.N; i++ {
		lines := make([]Line, batch)
		for j := range lines {
			text := texts[n%len(texts)]
			n++
			lines[j] = Line{Sensor: "s1", Log: "l", Off: off, Text: text}
			off += int64(len(text) + 1)
		}
		if _, err := st.Ingest(context.Background(), lines); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "lines/s")
	// On a shared machine the wall clock counts other people's work too:
	// lines per second of this process's CPU is the steadier figure.
	b.ReportMetric(float64(b.N*batch)/(cpuTime()-cpu0).Seconds(), "lines/cpu-s")
}

// cpuTime is the CPU (user and system) this process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
