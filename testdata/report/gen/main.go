// Command gen writes a large evidence log for measuring `wormsink report`:
// lines made by the real evidence.Writer, from several sensors, hosts with a
// skewed share of sightings, times out of order within a day, a few service
// lines and a few malformed ones. Output goes to testdata/perf/ (git-ignored).
//
//	go run ./testdata/report/gen -lines 10000000 -hosts 100000
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"wormsink/evidence"
	"wormsink/signatures"
)

func main() {
	lines := flag.Int("lines", 10_000_000, "evidence lines to write (about)")
	hosts := flag.Int("hosts", 100_000, "distinct hosts")
	sensors := flag.Int("sensors", 3, "sensors, one file each")
	dir := flag.String("dir", "testdata/perf", "output directory")
	seed := flag.Uint64("seed", 1, "random seed")
	start := flag.String("start", "2026-11-24T00:00:00Z", "start of the day the sightings fall in")
	bad := flag.Bool("bad", true, "add a foreign and a torn line every million lines (jq stops at a torn line: -bad=false for the jq comparison)")
	flag.Parse()
	t0, err := time.Parse(time.RFC3339, *start)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(2)
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	sigs := signatures.Default().Signatures()
	for s := 0; s < *sensors; s++ {
		name := filepath.Join(*dir, fmt.Sprintf("sensor%d.log", s+1))
		n := *lines / *sensors
		if s == 0 {
			n += *lines % *sensors
		}
		if err := writeSensor(name, fmt.Sprintf("sensor-%d", s+1), n, *hosts, *bad, sigs, t0, rand.New(rand.NewPCG(*seed, uint64(s)))); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "gen: wrote", name)
	}
}

func writeSensor(path, sensor string, n, hosts int, bad bool, sigs []signatures.Signature, t0 time.Time, rng *rand.Rand) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w := evidence.NewWriter(bw, evidence.Config{Sensor: sensor, Window: time.Millisecond})
	svc := w.Service()
	svc.Info().Str("event", "start").Str("version", "gen").Msg("")
	const batch = 10_000
	for i := 0; i < n; i++ {
		w.Record(event(rng, hosts, sigs, t0))
		if (i+1)%batch == 0 {
			if err := w.Flush(); err != nil {
				return err
			}
			if bad && (i+1)%(batch*100) == 0 {
				// A foreign line and a torn one now and then: the reader must skip them.
				fmt.Fprintln(bw, `{"level":"info","msg":"not ours"}`)
				fmt.Fprintln(bw, `{"time":"2026-11-24T03:00:00.000Z","event":"dns_sink`)
			}
		}
	}
	svc.Info().Str("event", "stop").Msg("")
	if err := w.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// event makes one sighting. Hosts are skewed: a tenth of them make half the
// sightings, as a few badly infected machines do in an outbreak.
func event(rng *rand.Rand, hosts int, sigs []signatures.Signature, t0 time.Time) evidence.Event {
	var h int
	if rng.IntN(2) == 0 {
		h = rng.IntN(max(hosts/10, 1))
	} else {
		h = rng.IntN(hosts)
	}
	host := netip.AddrFrom4([4]byte{10, byte(h >> 16), byte(h >> 8), byte(h)})
	// Outbreak shape: sightings grow through the day.
	at := t0.Add(time.Duration(float64(24*time.Hour) * (1 - rng.Float64()*rng.Float64())))
	sig := &sigs[rng.IntN(len(sigs))]
	ev := evidence.Event{
		Time: at, Host: host, Port: uint16(1024 + rng.IntN(64000)),
		Sig: sig.ID, Family: sig.Family, Evidence: signatures.Strong, Serial: 2026112501,
	}
	switch k := rng.IntN(10); {
	case k < 6 && len(sig.Domains) > 0:
		d := sig.Domains[rng.IntN(len(sig.Domains))]
		ev.Kind, ev.QName, ev.QType, ev.Transport, ev.Evidence = evidence.DNSSinkhole, d.Name, "A", "udp", d.Evidence
	case k < 9 && len(sig.TFTPFiles) > 0:
		ev.Kind, ev.File, ev.Mode, ev.Op = evidence.TFTPRefused, sig.TFTPFiles[rng.IntN(len(sig.TFTPFiles))], "octet", "read"
		ev.Srv = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, 69}), 69)
	default:
		ev.Kind, ev.Peer, ev.Role, ev.Proto, ev.DstPort = evidence.WireMatch, netip.AddrFrom4([4]byte{10, 9, 9, 9}), evidence.RoleRequester, "udp", 69
		ev.File, ev.Mode, ev.Op = "msblast.exe", "octet", "read"
	}
	return ev
}
