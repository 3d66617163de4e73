// Command mixgen writes the evidence logs `make perf-report` measures, one
// per shape (see internal/loggen.Variants), without the evidence writer:
//
//	go run ./testdata/report/mixgen -lines 2000000 -dir testdata/perf/mix
//	go run ./testdata/report/mixgen -list
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"wormsink/internal/loggen"
)

func main() {
	lines := flag.Int("lines", 2_000_000, "evidence lines per log")
	dir := flag.String("dir", "testdata/perf/mix", "output directory: one NAME.log per variant")
	only := flag.String("variants", "", "comma-separated variants to write (default all)")
	list := flag.Bool("list", false, "print the variants' names and shapes and exit")
	flag.Parse()
	vs := loggen.Variants(*lines)
	if *list {
		for _, v := range vs {
			fmt.Printf("%s\t%s\n", v.Name, v.Note)
		}
		return
	}
	want := map[string]bool{}
	for _, n := range strings.Split(*only, ",") {
		if n != "" {
			want[n] = true
		}
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "mixgen:", err)
		os.Exit(1)
	}
	for _, v := range vs {
		if len(want) > 0 && !want[v.Name] {
			continue
		}
		delete(want, v.Name)
		path := filepath.Join(*dir, v.Name+".log")
		if err := write(path, v.Config); err != nil {
			fmt.Fprintln(os.Stderr, "mixgen:", err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "mixgen: wrote", path)
	}
	for n := range want {
		fmt.Fprintf(os.Stderr, "mixgen: no variant %q (see -list)\n", n)
		os.Exit(2)
	}
}

func write(path string, cfg loggen.Config) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := loggen.Write(f, cfg); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
