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
