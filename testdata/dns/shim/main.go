// Command shim runs the DNS shim alone, for testdata/dns/perf.sh, until
// SIGTERM or SIGINT. It is not part of the wormsink binary: `wormsink serve`
// wires the same package with the full flag set.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/rs/zerolog"

	"wormsink/dnsblock"
	"wormsink/evidence"
	"wormsink/signatures"
)

func main() {
	listen := flag.String("dns-listen", "127.0.0.1:5300", "UDP and TCP address")
	upstream := flag.String("upstream", "", "resolvers, comma-separated")
	sigs := flag.String("signatures", "", "signature file (default: built-in)")
	sinkhole := flag.String("sinkhole-ip", "192.0.2.66", "sinkhole addresses, comma-separated")
	cacheSize := flag.Int("cache-size", dnsblock.DefaultCacheSize, "cache entries, 0 = off")
	logPath := flag.String("log", os.DevNull, "evidence log")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}

	store, err := signatures.Open(*sigs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shim:", err)
		os.Exit(1)
	}
	var ips []netip.Addr
	for _, s := range strings.Split(*sinkhole, ",") {
		ips = append(ips, netip.MustParseAddr(s))
	}
	out, err := os.Create(*logPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shim:", err)
		os.Exit(1)
	}
	w := evidence.NewWriter(out, evidence.Config{Sensor: "perf"})
	defer w.Close()
	cfg := dnsblock.Config{Listen: *listen, Upstreams: strings.Split(*upstream, ","), SinkholeIPs: ips, CacheSize: *cacheSize}
	srv, err := dnsblock.New(cfg, store, w, zerolog.New(os.Stderr))
	if err != nil {
		fmt.Fprintln(os.Stderr, "shim:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.ListenAndServe(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "shim:", err)
		os.Exit(1)
	}
	st := srv.Stats()
	fmt.Fprintf(os.Stderr, "shim: stats %+v\n", st)
}
