//go:build linux

package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"wormsink/internal/testutil"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"
)

// lab is three network namespaces made by the test: a customer, a router
// that steers the customer's UDP/69 to `wormsink serve --tftp-intercept`
// with exactly the nftables and policy-routing rules docs/interception.md shows,
// and a server running in.tftpd (tftpd-hpa).
type lab struct {
	t          *testing.T
	c, r, s    string // namespace names
	cIf, rcIf  string // customer veth and the router's end of it
	dir        string // the server's files
	srv4, srv6 string
	cli4, cli6 string
}

// The router rules of docs/interception.md, word for word.
var interceptRules = [][]string{
	{"nft", "add", "table", "inet", "wormsink"},
	{"nft", "add", "chain", "inet", "wormsink", "prerouting", "{ type filter hook prerouting priority mangle; policy accept; }"},
	{"nft", "add", "rule", "inet", "wormsink", "prerouting", "udp", "dport", "69", "tproxy", "ip", "to", ":6969", "meta", "mark", "set", "0x1", "accept"},
	{"nft", "add", "rule", "inet", "wormsink", "prerouting", "udp", "dport", "69", "tproxy", "ip6", "to", ":6969", "meta", "mark", "set", "0x1", "accept"},
	{"ip", "rule", "add", "fwmark", "0x1", "lookup", "100"},
	{"ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100"},
	{"ip", "-6", "rule", "add", "fwmark", "0x1", "lookup", "100"},
	{"ip", "-6", "route", "add", "local", "::/0", "dev", "lo", "table", "100"},
}

func newLab(t *testing.T) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root: network namespaces, nftables tproxy and IP_TRANSPARENT (make test runs as root)")
	}
	for _, tool := range []string{"ip", "nft", "in.tftpd", "tftp", "curl", "atftp", "busybox", "tcpdump", "ss"} {
		needTool(t, tool)
	}
	id := fmt.Sprintf("%04d", os.Getpid()%10000)
	l := &lab{t: t, c: "ws13-" + id + "-c", r: "ws13-" + id + "-r", s: "ws13-" + id + "-s",
		cIf: "ws13c" + id, rcIf: "ws13rc" + id, dir: t.TempDir(),
		srv4: "10.13.2.2", srv6: "fd13:2::2", cli4: "10.13.1.2", cli6: "fd13:1::2"}
	rsIf, sIf := "ws13rs"+id, "ws13s"+id
	for _, ns := range []string{l.c, l.r, l.s} {
		exec.Command("ip", "netns", "del", ns).Run() // a leftover of a killed run
		l.host("ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		l.must(ns, "ip", "link", "set", "lo", "up")
	}
	l.host("ip", "link", "add", l.cIf, "netns", l.c, "type", "veth", "peer", "name", l.rcIf, "netns", l.r)
	l.host("ip", "link", "add", rsIf, "netns", l.r, "type", "veth", "peer", "name", sIf, "netns", l.s)
	for _, a := range []struct{ ns, dev, v4, v6 string }{
		{l.c, l.cIf, "10.13.1.2/24", "fd13:1::2/64"},
		{l.r, l.rcIf, "10.13.1.1/24", "fd13:1::1/64"},
		{l.r, rsIf, "10.13.2.1/24", "fd13:2::1/64"},
		{l.s, sIf, "10.13.2.2/24", "fd13:2::2/64"},
	} {
		l.must(a.ns, "ip", "addr", "add", a.v4, "dev", a.dev)
		l.must(a.ns, "ip", "-6", "addr", "add", a.v6, "dev", a.dev, "nodad")
		l.must(a.ns, "ip", "link", "set", a.dev, "up")
	}
	l.must(l.c, "ip", "route", "add", "default", "via", "10.13.1.1")
	l.must(l.c, "ip", "-6", "route", "add", "default", "via", "fd13:1::1")
	// A second address of the server, which the perf comparison exempts
	// from interception: the direct path, measured at the same time.
	l.must(l.s, "ip", "addr", "add", "10.13.2.3/24", "dev", sIf)
	l.must(l.s, "ip", "route", "add", "default", "via", "10.13.2.1")
	l.must(l.s, "ip", "-6", "route", "add", "default", "via", "fd13:2::1")
	l.must(l.r, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	for _, r := range interceptRules {
		l.must(l.r, r...)
	}
	return l
}

func (l *lab) host(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (l *lab) cmd(ns string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
}

func (l *lab) must(ns string, args ...string) string {
	l.t.Helper()
	out, err := l.cmd(ns, args...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("[%s] %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// bg starts a long-running command in ns, stopped at the end of the test.
// done is closed when it has exited.
func (l *lab) bg(ns string, stderr *bytes.Buffer, args ...string) (c *exec.Cmd, done <-chan struct{}) {
	l.t.Helper()
	c = l.cmd(ns, args...)
	c.Stdout, c.Stderr = stderr, stderr
	if err := c.Start(); err != nil {
		l.t.Fatal(err)
	}
	ch := make(chan struct{})
	go func() { c.Wait(); close(ch) }()
	l.t.Cleanup(func() {
		c.Process.Kill()
		<-ch
	})
	return c, ch
}

func exited(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// startTFTPD runs in.tftpd for IPv4 and IPv6 in the server namespace,
// allowing uploads, and waits until both sockets are bound.
func (l *lab) startTFTPD() {
	var out4, out6 bytes.Buffer // one each: a bytes.Buffer is not safe for two writers
	l.bg(l.s, &out4, "in.tftpd", "-L", "-c", "-u", "root", "-s", l.dir, "-a", "0.0.0.0:69")
	l.bg(l.s, &out6, "in.tftpd", "-L", "-6", "-c", "-u", "root", "-s", l.dir, "-a", "[::]:69")
	waitFor(l.t, "in.tftpd on UDP 69", 10*time.Second, func() bool {
		return strings.Count(l.must(l.s, "ss", "-Hunl", "sport = :69"), "\n") >= 2
	})
}

// capture runs tcpdump in ns on dev; stop ends it and returns the packets.
func (l *lab) capture(ns, dev string) (stop func() []gopacket.Packet) {
	l.t.Helper()
	c := testutil.Tcpdump{Netns: ns, Iface: dev, Filter: []string{"udp"}}.Start(l.t)
	return func() []gopacket.Packet {
		c.Stop(l.t)
		f, err := os.Open(c.File)
		if err != nil {
			l.t.Fatal(err)
		}
		defer f.Close()
		r, err := pcapgo.NewReader(f)
		if err != nil {
			l.t.Fatal(err)
		}
		var pkts []gopacket.Packet
		src := gopacket.NewPacketSource(r, r.LinkType())
		for p := range src.Packets() {
			pkts = append(pkts, p)
		}
		return pkts
	}
}

// udpOf returns a packet's addresses and UDP payload.
func udpOf(p gopacket.Packet) (src, dst netip.AddrPort, payload []byte, ok bool) {
	u, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if u == nil || p.NetworkLayer() == nil {
		return
	}
	fl := p.NetworkLayer().NetworkFlow()
	sa, _ := netip.AddrFromSlice(fl.Src().Raw())
	da, _ := netip.AddrFromSlice(fl.Dst().Raw())
	return netip.AddrPortFrom(sa.Unmap(), uint16(u.SrcPort)), netip.AddrPortFrom(da.Unmap(), uint16(u.DstPort)), u.Payload, true
}

// wormContent marks the stand-ins for worm files: no byte of it may reach
// the customer.
const wormContent = "WS13-WORM-STAND-IN "

// TestInterceptNamespaces is the whole story with real clients: worm
// fetches are refused from the server's own address and nothing of the
// files reaches the customer; legitimate reads and writes pass
// byte-identical; IPv4 and IPv6; the evidence names requester and server;
// a flood is cut by the per-source limit; and the closing-note figures
// (pass-through vs direct transfer time, refusal latency) are measured.
func TestInterceptNamespaces(t *testing.T) {
	bin := wormsinkBinary(t)
	l := newLab(t)
	for _, f := range []string{"msblast.exe", "mirai.arm7"} {
		if err := os.WriteFile(filepath.Join(l.dir, f), []byte(strings.Repeat(wormContent+f+"\n", 200)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pxe := make([]byte, 1<<20)
	rand.Read(pxe)
	if err := os.WriteFile(filepath.Join(l.dir, "pxelinux.0"), pxe, 0o644); err != nil {
		t.Fatal(err)
	}
	l.startTFTPD()

	logFile := filepath.Join(t.TempDir(), "evidence.jsonl")
	var serveOut bytes.Buffer
	// Started as root and dropped to nobody: the reply sockets still need
	// IP_TRANSPARENT after the drop. The per-source rate is raised
	// because this one customer makes every request of the test; the
	// flood below checks the limit with its own figures.
	serve, serveDone := l.bg(l.r, &serveOut, bin, "serve", "--dns-listen", "", "--tftp-listen", "", "--tftp-intercept", ":6969",
		"--tftp-source-rate", "20", "--log", logFile, "--sensor", "ws13", "--user", "nobody", "--watch-interval", "0",
		// Every address of the lab is trusted: the requester's proof must
		// still never pass to the server it named.
		"--trusted-sources", "10.13.0.0/16,fd13::/16")
	waitFor(t, "the interceptor to serve", 10*time.Second, func() bool {
		data, _ := os.ReadFile(logFile)
		if exited(serveDone) {
			t.Fatalf("serve exited: %s", serveOut.String())
		}
		return bytes.Contains(data, []byte(`"tftp_intercept_start"`))
	})
	if uid := procUID(t, serve); uid == 0 {
		t.Fatal("serve still runs as root")
	}
	checkThreadCaps(t, serve.Process.Pid)

	stopCustomer := l.capture(l.c, l.cIf)
	stopRouter := l.capture(l.r, l.rcIf)
	work := t.TempDir()
	clientFile := func(name string) string { return filepath.Join(work, name) }
	run := func(args ...string) (string, int) {
		c := l.cmd(l.c, args...)
		c.Dir = work
		out, err := c.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("%s: %v", strings.Join(args, " "), err)
		}
		return string(out), 0
	}
	type fetch struct {
		client string
		args   func(srv, file, out string) []string
		// refused tells a refusal from the client's exit and output.
		refused func(out string, code int) bool
	}
	clients := []fetch{
		{"tftp-hpa", func(srv, file, out string) []string {
			return []string{"tftp", "-m", "binary", srv, "-c", "get", file, out}
		}, func(out string, code int) bool { return strings.Contains(out, "Error code 1: denied") }},
		{"curl", func(srv, file, out string) []string {
			if strings.Contains(srv, ":") {
				srv = "[" + srv + "]"
			}
			return []string{"curl", "-sS", "--max-time", "20", "-o", out, "tftp://" + srv + "/" + file}
		}, func(out string, code int) bool { return code == 68 }},
		{"atftp", func(srv, file, out string) []string {
			return []string{"atftp", "-g", "-r", file, "-l", out, srv}
		}, func(out string, code int) bool { return code != 0 && strings.Contains(out, "denied") }},
		{"busybox", func(srv, file, out string) []string {
			return []string{"busybox", "tftp", "-g", "-r", file, "-l", out, srv}
		}, func(out string, code int) bool { return code != 0 && strings.Contains(out, "denied") }},
	}
	for _, srv := range []string{l.srv4, l.srv6} {
		for _, c := range clients {
			for _, worm := range []string{"msblast.exe", "mirai.arm7"} {
				out := clientFile(c.client + "-" + srv + "-" + worm)
				text, code := run(c.args(srv, worm, out)...)
				if !c.refused(text, code) {
					t.Errorf("%s %s from %s: not refused (exit %d): %s", c.client, worm, srv, code, text)
				}
				if data, _ := os.ReadFile(out); len(data) > 0 {
					t.Errorf("%s %s from %s: got %d bytes", c.client, worm, srv, len(data))
				}
			}
			out := clientFile(c.client + "-" + srv + "-pxelinux.0")
			if text, code := run(c.args(srv, "pxelinux.0", out)...); code != 0 {
				t.Errorf("%s pxelinux.0 from %s: exit %d: %s", c.client, srv, code, text)
			} else if data, _ := os.ReadFile(out); !bytes.Equal(data, pxe) {
				t.Errorf("%s pxelinux.0 from %s: %d bytes, not the server's file", c.client, srv, len(data))
			}
		}
		// A legitimate upload reaches the server.
		up := make([]byte, 300_000)
		rand.Read(up)
		name := "upload-" + strings.ReplaceAll(srv, ":", "_") + ".bin"
		if err := os.WriteFile(clientFile(name), up, 0o644); err != nil {
			t.Fatal(err)
		}
		if text, code := run("tftp", "-m", "binary", srv, "-c", "put", name); code != 0 {
			t.Errorf("upload to %s: exit %d: %s", srv, code, text)
		}
		if got, _ := os.ReadFile(filepath.Join(l.dir, name)); !bytes.Equal(got, up) {
			t.Errorf("upload to %s: server has %d bytes, want the %d sent", srv, len(got), len(up))
		}
	}

	// A worm fetch from a server address nobody holds: refused all the
	// same, and the address it named is no more than a weak datagram.
	if text, code := run("tftp", "-m", "binary", ghostServer, "-c", "get", "msblast.exe", clientFile("ghost")); !strings.Contains(text, "Error code 1: denied") {
		t.Errorf("worm fetch from the ghost server: exit %d: %s", code, text)
	}

	// Pass-through against direct: the same 1 MB read with and without
	// the tproxy rule, alternating, in this run.
	ratio, median, direct, passed, pairs := l.compareTransfers(run, clientFile("perf.bin"))
	t.Logf("1 MB tftp-hpa read, direct and through the interceptor at the same time, %d rounds: best times direct %v, through the interceptor %v: ratio %.3f (median of the per-round ratios %.3f)", pairs, direct, passed, ratio, median)
	// The goal (1.1x, best times) is checked by make perf-intercept
	// (WORMSINK_PERF=1, no race detector, nothing else running). Inside
	// make test other packages' tests share the two cores, so only a
	// pass-through that costs far more than the direct path fails here,
	// judged by the median of the rounds: one lucky direct round (the
	// other tests paused) makes the best times' ratio meaningless there.
	if limit := perfLimit(1.1, 2); perfLimit(ratio, median) > limit {
		t.Errorf("pass-through takes %.2fx the direct transfer (best times; median of the rounds %.2fx; want <= %.1f)", ratio, median, limit)
	}

	routerPkts := stopRouter()
	customerPkts := stopCustomer()
	checkCustomerCapture(t, l, customerPkts)
	lat := refusalLatencies(routerPkts)
	if len(lat) == 0 {
		t.Fatal("no refusal seen in the router capture")
	}
	slices.Sort(lat)
	med := lat[len(lat)/2]
	t.Logf("refusal latency (RRQ in, ERROR out, tcpdump on the router's customer interface): n=%d min %v median %v max %v", len(lat), lat[0], med, lat[len(lat)-1])
	// The figure that counts is from a plain build; under the race
	// detector the Go side of the path runs several times slower.
	budget := time.Duration(perfLimit(float64(time.Millisecond), float64(20*time.Millisecond)))
	if med >= budget {
		t.Errorf("median refusal latency %v, want < %v", med, budget)
	}

	// A flood from one source is cut to the per-source limit: 200
	// requests for a legitimate file, at most the burst plus the rate
	// over the flood's duration are passed on.
	sent, took := floodFrom(t, l.c, netip.MustParseAddrPort(l.srv4+":69"), 200)

	// The shipped ruleset and script (deploy/): loaded over the lab's
	// rules, it intercepts the same way, and a server in its exclusion set
	// is reached directly, worm file or not.
	script, ruleset := filepath.Join("..", "..", "deploy", "wormsink-tftp-intercept.sh"), filepath.Join("..", "..", "deploy", "tftp-intercept.nft")
	l.must(l.r, "sh", script, "up", ruleset)
	if text, code := run("tftp", "-m", "binary", l.srv6, "-c", "get", "msblast.exe", clientFile("deploy-worm")); !strings.Contains(text, "Error code 1: denied") {
		t.Errorf("deploy ruleset: worm fetch not refused (exit %d): %s", code, text)
	}
	l.must(l.r, "nft", "add", "element", "inet", "wormsink", "isp_tftp4", "{ "+l.srv4+" }")
	if _, code := run("tftp", "-m", "binary", l.srv4, "-c", "get", "msblast.exe", clientFile("excluded-worm")); code != 0 {
		t.Errorf("excluded server: exit %d", code)
	} else if data, _ := os.ReadFile(clientFile("excluded-worm")); !bytes.HasPrefix(data, []byte(wormContent)) {
		t.Errorf("excluded server: the request did not reach it directly (%d bytes)", len(data))
	}

	// Fail safe. A wormsink that hangs keeps its socket, and the tproxy
	// rule steers customers' UDP/69 into a socket nobody reads: TFTP to
	// every server times out...
	serve.Process.Signal(syscall.SIGSTOP)
	if _, code := run("curl", "-sS", "--max-time", "3", "-o", clientFile("hung.bin"), "tftp://["+l.srv6+"]/pxelinux.0"); code == 0 {
		t.Error("with wormsink hung, TFTP through the tproxy rule still worked")
	}
	// ...until the script's down (what a health check runs) removes the rule.
	l.must(l.r, "sh", script, "down")
	if text, code := run("curl", "-sS", "--max-time", "20", "-o", clientFile("after-down.bin"), "tftp://["+l.srv6+"]/pxelinux.0"); code != 0 {
		t.Errorf("after down: exit %d: %s", code, text)
	} else if data, _ := os.ReadFile(clientFile("after-down.bin")); !bytes.Equal(data, pxe) {
		t.Errorf("after down: %d bytes, not the server's file", len(data))
	}
	serve.Process.Signal(syscall.SIGCONT)
	l.must(l.r, "sh", script, "up", ruleset)

	serve.Process.Signal(syscall.SIGTERM)
	waitFor(t, "serve to exit", 10*time.Second, func() bool { return exited(serveDone) })
	// A stopped wormsink closed its sockets: the nft tproxy statement
	// then finds no socket, does not match, and the packet is routed on
	// as if the rule were not there. TFTP fails open, uninspected (the
	// iptables TPROXY target would drop it instead).
	if text, code := run("curl", "-sS", "--max-time", "20", "-o", clientFile("stopped.bin"), "tftp://["+l.srv6+"]/pxelinux.0"); code != 0 {
		t.Errorf("wormsink stopped, rule in place: exit %d: %s", code, text)
	} else if data, _ := os.ReadFile(clientFile("stopped.bin")); !bytes.Equal(data, pxe) {
		t.Errorf("wormsink stopped, rule in place: %d bytes, not the server's file", len(data))
	}
	l.must(l.r, "sh", script, "down")

	lines := logLines(t, logFile)
	checkInterceptEvidence(t, l, lines)
	// The limit allows the burst plus the rate over the time wormsink
	// took to handle the flood, which the evidence lines span.
	var floodPassed, floodSeen float64
	var first, last time.Time
	for _, ln := range lines {
		if ln["event"] != "tftp_request" || ln["file"] != "flood.bin" {
			continue
		}
		floodSeen += ln["count"].(float64)
		if ln["passed"] == true {
			floodPassed += ln["count"].(float64)
		}
		for _, k := range []string{"time", "last"} {
			if v, ok := ln[k].(string); ok {
				at, err := time.Parse(time.RFC3339Nano, v)
				if err != nil {
					t.Fatalf("flood line %s %q: %v", k, v, err)
				}
				if first.IsZero() || at.Before(first) {
					first = at
				}
				if at.After(last) {
					last = at
				}
			}
		}
	}
	window := last.Sub(first) + time.Millisecond // log times have millisecond resolution
	limit := 10 + 20*window.Seconds() + 1
	t.Logf("flood: %d requests sent in %v, %v recorded over %v, %v passed on (limit %.1f)", sent, took, floodSeen, window, floodPassed, limit)
	if floodSeen != float64(sent) {
		t.Errorf("flood: %v of %d requests recorded", floodSeen, sent)
	}
	if floodPassed == 0 || floodPassed > limit {
		t.Errorf("flood: %v of %d requests passed on, want 1..%.0f", floodPassed, sent, limit)
	}
}

func procUID(t *testing.T, c *exec.Cmd) int {
	t.Helper()
	// c is `ip netns exec`, which execs wormsink in place: same pid.
	var uid int = -1
	waitFor(t, "the privilege drop", 10*time.Second, func() bool {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.Process.Pid))
		if err != nil {
			return false
		}
		for _, ln := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(ln, "Uid:"); ok {
				fmt.Sscan(rest, &uid)
			}
		}
		return uid != 0
	})
	return uid
}

// compareTransfers times the 1 MB read through the interceptor (to
// 10.13.2.2) and direct (to 10.13.2.3, the same server, which a rule
// before the tproxy rule exempts, as the shipped ruleset does for the
// ISP's own servers), both at the same time, so that whatever else loads
// the machine loads both alike, taking turns at starting first. Over 7
// rounds it returns the ratio of the best times (the runs least disturbed
// by everything else), the median of the per-round ratios (for the log:
// two lock-step transfers sharing two cores disturb each other), and the
// best time of each side.
func (l *lab) compareTransfers(run func(...string) (string, int), out string) (ratio, median float64, direct, passed time.Duration, rounds int) {
	l.t.Helper()
	l.must(l.r, "nft", "insert", "rule", "inet", "wormsink", "prerouting", "ip", "daddr", "10.13.2.3", "udp", "dport", "69", "accept")
	get := func(srv, file string, d *time.Duration, done chan<- error) {
		os.Remove(file)
		start := time.Now()
		text, code := run("tftp", "-m", "binary", srv, "-c", "get", "pxelinux.0", file)
		*d = time.Since(start)
		if fi, err := os.Stat(file); code != 0 || err != nil || fi.Size() != 1<<20 {
			done <- fmt.Errorf("perf read from %s: exit %d %s %v", srv, code, text, err)
			return
		}
		done <- nil
	}
	direct, passed = time.Hour, time.Hour
	var ratios []float64
	for rounds = 1; rounds <= 7; rounds++ {
		var dd, dp time.Duration
		done := make(chan error, 2)
		// The one started first gets ahead; take turns.
		if rounds%2 == 1 {
			go get("10.13.2.3", out+".direct", &dd, done)
			go get(l.srv4, out+".passed", &dp, done)
		} else {
			go get(l.srv4, out+".passed", &dp, done)
			go get("10.13.2.3", out+".direct", &dd, done)
		}
		for range 2 {
			if err := <-done; err != nil {
				l.t.Fatal(err)
			}
		}
		direct, passed = min(direct, dd), min(passed, dp)
		ratios = append(ratios, float64(dp)/float64(dd))
	}
	slices.Sort(ratios)
	return float64(passed) / float64(direct), ratios[len(ratios)/2], direct, passed, len(ratios)
}

// checkCustomerCapture: every refusal came from the address and port
// asked, and no DATA packet, no OACK and no byte of a worm file reached
// the customer. Packets are taken in capture order and each client port
// stands for the last request sent from it (ports are reused).
func checkCustomerCapture(t *testing.T, l *lab, pkts []gopacket.Packet) {
	t.Helper()
	current := map[netip.AddrPort]string{} // client address:port -> file of its last request
	worm := func(f string) bool { return f == "msblast.exe" || f == "mirai.arm7" }
	refusedFrom := map[netip.AddrPort]netip.AddrPort{} // worm request's client -> where its ERROR came from
	requests := 0
	for _, p := range pkts {
		src, dst, pl, ok := udpOf(p)
		if !ok || len(pl) < 4 {
			continue
		}
		if bytes.Contains(pl, []byte(wormContent)) {
			t.Errorf("worm file bytes reached the customer: %v -> %v", src, dst)
		}
		switch pl[1] {
		case 1, 2:
			if i := bytes.IndexByte(pl[2:], 0); i > 0 && dst.Port() == 69 {
				current[src] = string(pl[2 : 2+i])
				if worm(current[src]) {
					requests++
					delete(refusedFrom, src)
				}
			}
		case 3, 6:
			if f := current[dst]; worm(f) {
				t.Errorf("opcode %d for %s reached %v from %v", pl[1], f, dst, src)
			}
		case 5:
			if worm(current[dst]) {
				refusedFrom[dst] = src
			}
		}
	}
	if requests == 0 {
		t.Fatal("the customer capture holds no worm request")
	}
	for cl, f := range current {
		if !worm(f) {
			continue
		}
		from, ok := refusedFrom[cl]
		if !ok {
			t.Errorf("%s for %s: no ERROR in the capture", f, cl)
			continue
		}
		if s := from.Addr().String(); s != l.srv4 && s != l.srv6 && s != ghostServer || from.Port() != 69 {
			t.Errorf("%s for %s: ERROR from %v, want the server's address, port 69", f, cl, from)
		}
	}
}

// refusalLatencies pairs each worm request arriving at the router with
// the ERROR leaving for the same client, by capture timestamps.
func refusalLatencies(pkts []gopacket.Packet) []time.Duration {
	in := map[netip.AddrPort]time.Time{}
	var out []time.Duration
	for _, p := range pkts {
		src, dst, pl, ok := udpOf(p)
		if !ok || len(pl) < 4 {
			continue
		}
		at := p.Metadata().Timestamp
		switch {
		case pl[1] == 1 && dst.Port() == 69:
			if _, seen := in[src]; !seen {
				in[src] = at
			}
		case pl[1] == 5 && src.Port() == 69:
			if t0, ok := in[dst]; ok {
				out = append(out, at.Sub(t0))
				delete(in, dst)
			}
		}
	}
	return out
}

// ghostServer is an address in the lab's server network that nobody holds.
const ghostServer = "10.13.2.77"

func checkInterceptEvidence(t *testing.T, l *lab, lines []map[string]any) {
	t.Helper()
	has := func(want map[string]any) bool {
		for _, ln := range lines {
			match := true
			for k, v := range want {
				if ln[k] != v {
					match = false
					break
				}
			}
			if match {
				return true
			}
		}
		return false
	}
	for _, ln := range lines {
		if ln["role"] == "server" && (ln["evidence"] != "weak" || ln["proof"] != "datagram") {
			t.Errorf("server line with more than the request proves: %v", ln)
		}
	}
	if !has(map[string]any{"event": "tftp_refused", "host": ghostServer, "role": "server", "evidence": "weak", "proof": "datagram", "peer": l.cli4}) {
		t.Errorf("no weak datagram line for the server address nobody holds (%s)", ghostServer)
	}
	for _, srv := range []string{l.srv4, l.srv6} {
		cli := l.cli4
		if strings.Contains(srv, ":") {
			cli = l.cli6
		}
		server := net.JoinHostPort(srv, "69")
		for _, want := range []map[string]any{
			{"event": "tftp_refused", "host": cli, "file": "msblast.exe", "evidence": "strong", "server": server, "intercepted": true, "role": "requester", "signature": "blaster", "proof": "trusted-source"},
			// The request was the client's packet: it proves nothing
			// about the server, trusted network or not.
			{"event": "tftp_refused", "host": srv, "port": 69.0, "file": "msblast.exe", "evidence": "weak", "proof": "datagram", "intercepted": true, "role": "server", "peer": cli},
			{"event": "tftp_refused", "host": cli, "file": "mirai.arm7", "evidence": "strong", "server": server, "intercepted": true},
			{"event": "tftp_request", "host": cli, "file": "pxelinux.0", "evidence": "weak", "server": server, "intercepted": true, "passed": true, "op": "read"},
			{"event": "tftp_request", "host": cli, "op": "write", "evidence": "weak", "intercepted": true, "passed": true},
		} {
			if !has(want) {
				t.Errorf("no evidence line %v", want)
			}
		}
	}
}

// floodFrom sends n read requests for flood.bin from one socket in
// namespace ns to to, as fast as it can.
func floodFrom(t *testing.T, ns string, to netip.AddrPort, n int) (int, time.Duration) {
	t.Helper()
	var sent int
	var took time.Duration
	err := testutil.Do(ns, func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
		if err != nil {
			return err
		}
		defer c.Close()
		req := []byte("\x00\x01flood.bin\x00octet\x00")
		start := time.Now()
		for i := 0; i < n; i++ {
			if _, err := c.Write(req); err == nil {
				sent++
			}
		}
		took = time.Since(start)
		return nil
	})
	if err != nil {
		t.Fatalf("flood: %v", err)
	}
	return sent, took
}

// checkThreadCaps: after the drop, only the interceptor's two loop threads
// hold capabilities, and only CAP_NET_BIND_SERVICE, CAP_NET_ADMIN and
// CAP_NET_RAW; every other thread has none.
func checkThreadCaps(t *testing.T, pid int) {
	t.Helper()
	const kept = 1<<unix.CAP_NET_BIND_SERVICE | 1<<unix.CAP_NET_ADMIN | 1<<unix.CAP_NET_RAW
	var withCaps int
	waitFor(t, "the loop threads to shed root's capabilities", 10*time.Second, func() bool {
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
		if err != nil || len(tasks) == 0 {
			return false
		}
		withCaps = 0
		for _, f := range tasks {
			data, err := os.ReadFile(f)
			if err != nil {
				return false
			}
			for _, ln := range strings.Split(string(data), "\n") {
				for _, field := range []string{"CapEff:", "CapPrm:"} {
					if rest, ok := strings.CutPrefix(ln, field); ok {
						var v uint64
						fmt.Sscanf(strings.TrimSpace(rest), "%x", &v)
						if v&^kept != 0 {
							return false // root's full set: not shed yet
						}
						if field == "CapEff:" && v != 0 {
							withCaps++
						}
					}
				}
			}
		}
		return true
	})
	if withCaps != 2 {
		t.Errorf("%d threads hold capabilities after the drop, want the 2 interceptor loops", withCaps)
	}
}

// TestInterceptNeedsCapability: without CAP_NET_ADMIN or CAP_NET_RAW the
// start fails at once with one line saying so.
func TestInterceptNeedsCapability(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: it runs serve as nobody through setpriv")
	}
	bin := wormsinkBinary(t)
	setpriv := needTool(t, "setpriv")
	out, err := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
		bin, "serve", "--dns-listen", "", "--tftp-listen", "", "--tftp-intercept", "127.0.0.1:0", "--log", "/dev/null").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 ||
		!strings.Contains(string(out), "needs CAP_NET_ADMIN or CAP_NET_RAW") {
		t.Errorf("exit %v, output %q", err, out)
	}
}

// perfLimit is goal under make perf-intercept (WORMSINK_PERF=1, a plain
// build on a quiet machine), and loose otherwise: make test runs under the
// race detector beside other packages' tests, where timing only catches
// gross regressions.
func perfLimit(goal, loose float64) float64 {
	if os.Getenv("WORMSINK_PERF") == "1" && !raceEnabled {
		return goal
	}
	return loose
}
