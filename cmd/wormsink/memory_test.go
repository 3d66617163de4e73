package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The memory a hostile client can make serve hold is bounded, and handed
// back once the load ends: measured on the serve process itself
// (/proc/PID/status), the built binary, as in production.
const (
	loadPeakLimit   = 300 << 20 // RSS during the load
	loadSettleLimit = 100 << 20 // RSS within loadSettleTime of its end
	loadSettleTime  = 30 * time.Second
)

// procStatus reads a kB field of /proc/PID/status, in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + field + `:\s+(\d+) kB`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("no %s in /proc/%d/status", field, pid)
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n << 10
}

func openFDs(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

// rssWatch samples a process's RSS until stopped, keeping the largest.
type rssWatch struct {
	mu   sync.Mutex
	peak int64
	stop chan struct{}
	done chan struct{}
}

func watchRSS(t *testing.T, pid int) *rssWatch {
	w := &rssWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err == nil {
				if m := regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB`).FindSubmatch(data); m != nil {
					n, _ := strconv.ParseInt(string(m[1]), 10, 64)
					w.mu.Lock()
					w.peak = max(w.peak, n<<10)
					w.mu.Unlock()
				}
			}
			select {
			case <-w.stop:
				return
			case <-tk.C:
			}
		}
	}()
	t.Cleanup(w.close)
	return w
}

func (w *rssWatch) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func (w *rssWatch) max() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peak
}

// holdUntilSteady keeps a load on until the process's RSS has grown by
// less than 1 MB over the last second (it has taken all the load makes it
// take), or passed limit, or 60 s passed.
func holdUntilSteady(t *testing.T, pid int, limit int64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	last, since := int64(0), time.Now()
	for time.Now().Before(deadline) {
		rss := procStatus(t, pid, "VmRSS")
		if rss > limit {
			return
		}
		if rss > last+(1<<20) {
			last, since = rss, time.Now()
		} else if time.Since(since) > time.Second {
			return
		}
		time.Sleep(50 * time.Millisecond) // sampling the process's RSS
	}
}

// settles waits for the RSS to drop under limit and says how long it took.
func settles(t *testing.T, pid int, limit int64, within time.Duration) (time.Duration, int64, bool) {
	start := time.Now()
	for {
		rss := procStatus(t, pid, "VmRSS")
		if rss < limit {
			return time.Since(start), rss, true
		}
		if time.Since(start) > within {
			return time.Since(start), rss, false
		}
		time.Sleep(100 * time.Millisecond) // sampling the process's RSS
	}
}

func mb(n int64) string { return fmt.Sprintf("%.0f MB", float64(n)/(1<<20)) }

// dialFrom connects to addr from a loopback address of the test's choice,
// so the clients are many (the per-client caps are not the only bound).
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return d.Dial("tcp", addr)
}

// tcpMsg frames a DNS message for TCP.
func tcpMsg(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
}

// Stalled AXFR readers: 300 connections that ask for the zone (50,000
// names) and never read, again after each of 5 reloads, all held open.
func TestMemoryStalledTransfers(t *testing.T) {
	bin := wormsinkBinary(t)
	dir := t.TempDir()
	sigPath := filepath.Join(dir, "sigs.yaml")
	writeSigs := func(serial, shift int) {
		var b strings.Builder
		fmt.Fprintf(&b, "serial: %d\nsignatures:\n  - id: load\n    family: Load\n    domains:\n", serial)
		for i := range 50_000 {
			fmt.Fprintf(&b, "      - n%06d.load-%d.worm.example\n", i, (i+shift)%7)
		}
		if err := os.WriteFile(sigPath+".tmp", []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Rename(sigPath+".tmp", sigPath)
	}
	writeSigs(2026120300, 0)
	rpzAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ws := startServe(t, bin, "--dns-listen", "", "--tftp-listen", "", "--signatures", sigPath, "--sinkhole-ip", "192.0.2.66",
		"--rpz-listen", rpzAddr, "--rpz-allow", "127.0.0.0/8")
	pid := ws.cmd.Process.Pid
	base := procStatus(t, pid, "VmRSS")
	watch := watchRSS(t, pid)
	axfr := new(dns.Msg)
	axfr.SetAxfr("rpz.wormsink.")
	req := tcpMsg(t, axfr)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	maxFDs := 0
	for round := range 6 {
		if round > 0 {
			serial := 2026120300 + round
			writeSigs(serial, round)
			ws.cmd.Process.Signal(syscall.SIGHUP)
			waitFor(t, "the new serial", 60*time.Second, func() bool { return ws.metric(t, "wormsink_rpz_serial") == float64(serial) })
		}
		for i := range 300 {
			// 30 client addresses, 10 connections each.
			c, err := dialFrom(fmt.Sprintf("127.0.%d.%d", 10+round, 1+i%30), rpzAddr)
			if err != nil {
				continue // refused: the primary may cap connections
			}
			c.(*net.TCPConn).SetReadBuffer(4096) // a reader that never reads holds little in its own kernel buffer
			c.Write(req)
			conns = append(conns, c)
		}
		holdUntilSteady(t, pid, loadPeakLimit)
		maxFDs = max(maxFDs, openFDs(pid))
	}
	peak := watch.max()
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	took, rss, ok := settles(t, pid, loadSettleLimit, loadSettleTime)
	t.Logf("stalled AXFR readers: RSS %s before, peak %s, %d fds at most; %s %v after the load ended",
		mb(base), mb(peak), maxFDs, mb(rss), took.Round(100*time.Millisecond))
	if peak > loadPeakLimit {
		t.Errorf("peak RSS %s under stalled transfers, want under %s", mb(peak), mb(loadPeakLimit))
	}
	if !ok {
		t.Errorf("RSS still %s %v after the load ended, want under %s", mb(rss), loadSettleTime, mb(loadSettleLimit))
	}
	// The primary still serves a reader that reads.
	tr := new(dns.Transfer)
	ch, err := tr.In(axfr.Copy(), rpzAddr)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for env := range ch {
		if env.Error != nil {
			t.Fatalf("AXFR after the load: %v", env.Error)
		}
		n += len(env.RR)
	}
	if n < 50_000 {
		t.Fatalf("AXFR after the load: %d records", n)
	}
}

// A silent upstream (it takes TCP connections and queries and never
// answers) and 512 TCP clients pipelining 16 queries of 60 KB each that
// never read their answers.
func TestMemorySilentUpstream(t *testing.T) {
	bin := wormsinkBinary(t)
	upAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ln, err := net.Listen("tcp", upAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", upAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var upMu sync.Mutex
	var upConns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			upMu.Lock()
			upConns = append(upConns, c)
			upMu.Unlock()
			go func() {
				buf := make([]byte, 64<<10)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	defer func() {
		upMu.Lock()
		for _, c := range upConns {
			c.Close()
		}
		upMu.Unlock()
	}()
	ws := startServe(t, bin, "--tftp-listen", "", "--upstream", upAddr, "--sinkhole-ip", "192.0.2.66", "--allow", "127.0.0.0/8")
	pid := ws.cmd.Process.Pid
	base := procStatus(t, pid, "VmRSS")
	watch := watchRSS(t, pid)
	dnsAddr := fmt.Sprintf("127.0.0.1:%d", ws.dns)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 512 {
		// 64 client addresses, 8 connections each.
		c, err := dialFrom(fmt.Sprintf("127.0.20.%d", 1+i%64), dnsAddr)
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetReadBuffer(4096)
		conns = append(conns, c)
		var batch bytes.Buffer
		for j := range 16 {
			m := new(dns.Msg)
			m.SetQuestion(fmt.Sprintf("q%d-%d.big.example.", i, j), dns.TypeTXT)
			m.SetEdns0(65000, false)
			// Padding (RFC 7830) makes a 60 KB query; the answers asked for
			// are as large as the client accepts.
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_PADDING{Padding: make([]byte, 60<<10)})
			batch.Write(tcpMsg(t, m))
		}
		go c.Write(batch.Bytes()) // a client whose answers are never read may block here
	}
	holdUntilSteady(t, pid, loadPeakLimit)
	peak := watch.max()
	fds := openFDs(pid)
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	took, rss, ok := settles(t, pid, loadSettleLimit, loadSettleTime)
	t.Logf("silent upstream, 512 clients x 16 queries of 60 KB: RSS %s before, peak %s, %d fds; %s %v after the load ended",
		mb(base), mb(peak), fds, mb(rss), took.Round(100*time.Millisecond))
	if peak > loadPeakLimit {
		t.Errorf("peak RSS %s, want under %s", mb(peak), mb(loadPeakLimit))
	}
	if !ok {
		t.Errorf("RSS still %s %v after the load ended, want under %s", mb(rss), loadSettleTime, mb(loadSettleLimit))
	}
	// Still serving: a listed name is answered.
	if st, _ := ws.dig(t, "127.0.0.1", "windowsupdate.com", "A"); st != "NXDOMAIN" {
		t.Fatalf("after the load: %s", st)
	}
}
