// Command dnsload sends DNS queries over UDP faster than one server core
// can answer them and counts the answers: the load of perf-radius-dns.sh's SATURATE=1.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

const vector = 64

// The figure there is the shim's own rate with its core all its own:
//
//	go run ./scripts/dnsload -addr 127.0.0.1:5300 -names queries.txt -duration 10s
//
// dnsperf cannot do that here: one dnsperf thread on one core of this
// machine asks for fewer queries a second than the shim answers on the
// other, so a dnsperf figure is dnsperf's rate, and whatever else runs on
// its core (the RADIUS generator) lowers it. dnsload sends with sendmmsg
// and reads with recvmmsg, 64 datagrams a call, from -socks sockets, so
// that it asks for more than the server answers and its own core has room
// to spare; what it cannot deliver the kernel drops at the server's
// socket, which costs the server nothing.
//
// -names is dnsperf's format ("NAME TYPE" a line); every query is one of
// them in turn, with its own ID. -rate paces the queries (a second's
// worth spread evenly); 0 sends as fast as the sockets take them. It
// prints one line: queries sent, answers read, and answers a second over
// -duration (answers that come after it are not counted).
func main() {
	addr := flag.String("addr", "", "the DNS server, HOST:PORT")
	names := flag.String("names", "", `file of queries, "NAME TYPE" a line (dnsperf's format)`)
	rate := flag.Float64("rate", 0, "queries a second, all sockets together; 0: as fast as they go")
	socks := flag.Int("socks", 2, "client sockets (each its own source port)")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	flag.Parse()
	if err := run(*addr, *names, *rate, *socks, *duration); err != nil {
		fmt.Fprintln(os.Stderr, "dnsload:", err)
		os.Exit(1)
	}
}

// readQueries packs every line of the file as a query (ID 0, RD set).
func readQueries(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var qs [][]byte
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fs := strings.Fields(sc.Text())
		if len(fs) == 0 || strings.HasPrefix(fs[0], "#") {
			continue
		}
		qtype := dns.TypeA
		if len(fs) > 1 {
			t, ok := dns.StringToType[strings.ToUpper(fs[1])]
			if !ok {
				return nil, fmt.Errorf("%s:%d: unknown type %q", path, line, fs[1])
			}
			qtype = t
		}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(fs[0]), qtype)
		m.Id = 0
		b, err := m.Pack()
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		qs = append(qs, b)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(qs) == 0 {
		return nil, fmt.Errorf("%s: no queries", path)
	}
	return qs, nil
}

func run(addr, names string, rate float64, socks int, d time.Duration) error {
	if addr == "" || names == "" {
		return errors.New("-addr and -names are required")
	}
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return err
	}
	qs, err := readQueries(names)
	if err != nil {
		return err
	}
	var sent, answered atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	for s := 0; s < max(socks, 1); s++ {
		c, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetReadBuffer(4 << 20)
		c.SetWriteBuffer(4 << 20)
		pc := ipv4.NewPacketConn(c)
		wg.Add(2)
		go func() {
			defer wg.Done()
			send(pc, qs, s, rate/float64(max(socks, 1)), start, &sent, &stop)
		}()
		go func() {
			defer wg.Done()
			read(pc, &answered, &stop)
		}()
	}
	time.Sleep(time.Until(start.Add(d)))
	n := answered.Load()
	took := time.Since(start)
	stop.Store(true) // the readers see it at their next deadline
	wg.Wait()
	fmt.Printf("sent %d answered %d in %.2fs: %.0f answers/s\n", sent.Load(), n, took.Seconds(), float64(n)/took.Seconds())
	return nil
}

// send writes queries in vectors of 64, each with the next ID, paced to
// rate (0: unpaced).
func send(pc *ipv4.PacketConn, qs [][]byte, seed int, rate float64, start time.Time, sent *atomic.Int64, stop *atomic.Bool) {
	bufs := make([][]byte, vector)
	msgs := make([]ipv4.Message, vector)
	for i := range bufs {
		bufs[i] = make([]byte, 512)
		msgs[i].Buffers = [][]byte{nil}
	}
	next := seed * 7919
	var id uint16
	var done int64
	for !stop.Load() {
		n := vector
		if rate > 0 {
			due := int64(rate*time.Since(start).Seconds()) - done
			if due <= 0 {
				time.Sleep(100 * time.Microsecond)
				continue
			}
			n = int(min(due, vector))
		}
		for i := 0; i < n; i++ {
			q := qs[next%len(qs)]
			next++
			b := bufs[i][:len(q)]
			copy(b, q)
			id++
			b[0], b[1] = byte(id>>8), byte(id)
			msgs[i].Buffers[0] = b
		}
		w, err := pc.WriteBatch(msgs[:n], 0)
		if err != nil {
			// A full send buffer (ENOBUFS, EAGAIN): the server's socket
			// is what cannot keep up; try again.
			continue
		}
		done += int64(w)
		sent.Add(int64(w))
	}
}

// read counts answers until stop; a read deadline lets it see stop.
func read(pc *ipv4.PacketConn, answered *atomic.Int64, stop *atomic.Bool) {
	msgs := make([]ipv4.Message, vector)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 1500)}
	}
	for !stop.Load() {
		pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := pc.ReadBatch(msgs, 0)
		if err != nil {
			continue
		}
		for _, m := range msgs[:n] {
			// An answer: QR set.
			if m.N >= 12 && m.Buffers[0][2]&0x80 != 0 {
				answered.Add(1)
			}
		}
	}
}
