// Command parsefloor times the report's line parser alone on a log, the
// lower bound under any report of it; `make perf-report` prints it:
//
//	go run ./testdata/report/parsefloor -rounds 5 testdata/perf/mix/mix.log
//
// The log is mapped and cut into one part per CPU, each parsed by its own
// goroutine, nothing counted. Per round it prints the wall seconds of:
// finding the lines only, report.Parser.Parse of every line (the JSON
// checked, the fields converted), and encoding/json.Valid of every line.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"wormsink/report"
)

func main() {
	rounds := flag.Int("rounds", 3, "rounds of each measurement")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: parsefloor [-rounds N] LOG")
		os.Exit(2)
	}
	data, err := mapLog(flag.Arg(0))
	if err != nil {
		fmt.Fprintf(os.Stderr, "parsefloor: %v\n", err)
		os.Exit(1)
	}
	parts := split(data, runtime.GOMAXPROCS(0))
	for _, m := range []struct {
		name string
		each func() func(line []byte)
	}{
		{"lines", func() func([]byte) { n := 0; return func(l []byte) { n += len(l) } }},
		{"parse", func() func([]byte) {
			var p report.Parser
			var rec report.Sighting
			return func(l []byte) { p.Parse(l, &rec) }
		}},
		{"json.Valid", func() func([]byte) { return func(l []byte) { json.Valid(l) } }},
	} {
		fmt.Printf("%-10s", m.name)
		for range *rounds {
			fmt.Printf(" %.3f", run(parts, m.each).Seconds())
		}
		fmt.Println()
	}
}

// run calls a function made by each for every line of each part, a
// goroutine per part, and returns the wall time.
func run(parts [][]byte, each func() func([]byte)) time.Duration {
	start := time.Now()
	var wg sync.WaitGroup
	for _, p := range parts {
		fn := each()
		wg.Go(func() {
			for len(p) > 0 {
				j := bytes.IndexByte(p, '\n')
				if j < 0 {
					fn(p)
					return
				}
				fn(p[:j])
				p = p[j+1:]
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// split cuts data into n parts of whole lines.
func split(data []byte, n int) [][]byte {
	var parts [][]byte
	for k := n; k > 1; k-- {
		cut := len(data) / k
		j := bytes.IndexByte(data[cut:], '\n')
		if j < 0 {
			break
		}
		parts = append(parts, data[:cut+j+1])
		data = data[cut+j+1:]
	}
	return append(parts, data)
}

func mapLog(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() == 0 {
		return nil, fmt.Errorf("%s: empty", path)
	}
	return unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
}
