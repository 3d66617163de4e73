// Command sinkserver runs the fake TFTP server alone, as `wormsink serve
// --tftp-listen` will, so tests and the load generator can watch it as a
// process of its own (file descriptors, memory, CPU). It prints
// "listening ADDR" once it serves and stops on SIGTERM or SIGINT, flushing
// its evidence log.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"wormsink/evidence"
	"wormsink/signatures"
	"wormsink/sinkhole"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "UDP address to serve on")
	logPath := flag.String("log", "-", "evidence log (- is stdout)")
	sourceRate := flag.Float64("source-rate", 0, "replies per second per source (0 default, <0 unlimited)")
	sourceBurst := flag.Int("source-burst", 0, "per-source burst (0 default)")
	totalRate := flag.Float64("total-rate", 0, "replies per second overall (0 default, <0 unlimited)")
	totalBurst := flag.Int("total-burst", 0, "overall burst (0 default)")
	exchangeWait := flag.Duration("exchange-wait", 0, "how long a refusal's port waits for the client's follow-up (0 default)")
	flag.Parse()

	out := os.Stdout
	if *logPath != "-" {
		f, err := os.Create(*logPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sinkserver:", err)
			os.Exit(1)
		}
		defer f.Close()
		out = f
	}
	w := evidence.NewWriter(out, evidence.Config{Sensor: "sinkserver"})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	srv, err := sinkhole.New(sinkhole.Config{
		Listen:     *listen,
		SourceRate: *sourceRate, SourceBurst: *sourceBurst,
		TotalRate: *totalRate, TotalBurst: *totalBurst,
		ExchangeWait:  *exchangeWait,
		NotifyStarted: func(a net.Addr) { fmt.Fprintf(os.Stderr, "listening %s\n", a) },
	}, signatures.NewStore("", signatures.Default()), w, w.Service())
	if err == nil {
		err = srv.Serve(ctx)
	}
	if cerr := w.Close(); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil && !errors.Is(err, sinkhole.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "sinkserver:", err)
		os.Exit(1)
	}
	if srv == nil {
		os.Exit(1)
	}
	// The last line: the server's counters, for the caller to check.
	st, _ := json.Marshal(srv.Stats())
	fmt.Fprintf(os.Stderr, "stats %s\n", st)
}
