package report

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"wormsink/internal/loggen"
)

// BenchmarkReportVariants reads each log shape `make perf-report` measures
// (internal/loggen, not the evidence writer) on one worker and on two and
// writes the CSV report: the whole of `report --format csv` but the file.
func BenchmarkReportVariants(b *testing.B) {
	for _, v := range loggen.Variants(400_000) {
		var log bytes.Buffer
		if err := loggen.Write(&log, v.Config); err != nil {
			b.Fatal(err)
		}
		for _, workers := range []int{1, 2} {
			b.Run(v.Name+"/workers="+string(rune('0'+workers)), func(b *testing.B) {
				b.SetBytes(int64(log.Len()))
				b.ReportAllocs()
				for b.Loop() {
					reportCSV(b, log.Bytes(), workers, io.Discard)
				}
			})
		}
	}
}

// reportCSV writes the CSV report of log read with workers workers to w.
func reportCSV(tb testing.TB, log []byte, workers int, w io.Writer) ReadStats {
	tb.Helper()
	f, err := LookupFormat("csv")
	if err != nil {
		tb.Fatal(err)
	}
	rep, err := f.New(w, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	var st ReadStats
	var agg *Aggregator
	if workers > 1 {
		p := NewParallelReader(rep.Filter(), false, workers)
		if st, err = p.Read(context.Background(), bytes.NewReader(log), "log"); err != nil {
			tb.Fatal(err)
		}
		agg = p.Aggregator()
	} else {
		agg = NewAggregator(rep.Filter(), false)
		r, err := NewReader(bytes.NewReader(log), "log")
		if err != nil {
			tb.Fatal(err)
		}
		for r.Next() {
			agg.Add(r.Sighting())
		}
		st = r.Stats()
	}
	if _, err := rep.Finish(agg, st); err != nil {
		tb.Fatal(err)
	}
	return st
}

// TestVariantsSameOnAllCores: on every log shape of internal/loggen (small
// ones, with tiny chunks, row blocks and sort parts so that every path of
// the parallel read, merge, sort and output is taken), the CSV report on
// two and three workers is byte for byte the one-worker report. Chunks of
// 4 KiB hold fewer lines than a worker's batch; those of 64 KiB fill the
// workers' pipeline of batches (see chunkWorker) many times over.
func TestVariantsSameOnAllCores(t *testing.T) {
	oldChunk, oldBlock, oldSort := parallelChunkSize, rowBlock, parallelSortMin
	rowBlock, parallelSortMin = 64, 256
	defer func() { parallelChunkSize, rowBlock, parallelSortMin = oldChunk, oldBlock, oldSort }()
	for _, chunk := range []int{4 << 10, 64 << 10} {
		parallelChunkSize = chunk
		t.Run(fmt.Sprintf("chunk=%d", chunk), variantsSameOnAllCores)
	}
}

func variantsSameOnAllCores(t *testing.T) {
	for _, v := range loggen.Variants(12_000) {
		t.Run(v.Name, func(t *testing.T) {
			v.Hosts = min(v.Hosts, 3000)
			var log bytes.Buffer
			if err := loggen.Write(&log, v.Config); err != nil {
				t.Fatal(err)
			}
			var one bytes.Buffer
			st := reportCSV(t, log.Bytes(), 1, &one)
			if st.Lines != 12_000 || st.Evidence != st.Lines || one.Len() < 100_000 {
				t.Fatalf("one worker: %+v, %d bytes of report", st, one.Len())
			}
			for _, n := range []int{2, 3} {
				var many bytes.Buffer
				if st2 := reportCSV(t, log.Bytes(), n, &many); st2 != st {
					t.Errorf("%d workers: stats %+v, want %+v", n, st2, st)
				}
				if !bytes.Equal(many.Bytes(), one.Bytes()) {
					t.Errorf("%d workers: the report differs from one worker's (%d and %d bytes)", n, many.Len(), one.Len())
				}
			}
		})
	}
}

// BenchmarkParseVariants parses the lines of each log shape of
// BenchmarkReportVariants on one parser, without aggregating them: the
// scanner's share of the report.
func BenchmarkParseVariants(b *testing.B) {
	for _, v := range loggen.Variants(100_000) {
		var log bytes.Buffer
		if err := loggen.Write(&log, v.Config); err != nil {
			b.Fatal(err)
		}
		lines := bytes.Split(bytes.TrimSuffix(log.Bytes(), []byte("\n")), []byte("\n"))
		b.Run(v.Name, func(b *testing.B) {
			b.SetBytes(int64(log.Len() / len(lines)))
			b.ReportAllocs()
			var p Parser
			var rec Sighting
			i := 0
			for b.Loop() {
				if k, err := p.Parse(lines[i], &rec); k != LineEvidence {
					b.Fatal(err)
				}
				if i++; i == len(lines) {
					i = 0
				}
			}
		})
	}
}
