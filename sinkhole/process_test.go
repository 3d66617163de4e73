package sinkhole

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"wormsink/internal/evidencetest"
	"wormsink/internal/testutil"
)

// The process tests run the server as a process of its own,
// testdata/tftp/sinkserver, built without the race detector, so that its
// file descriptors, memory and CPU are its own and realistic.

var sinkserver = testutil.Binary{Pkg: "wormsink/testdata/tftp/sinkserver"}

// TestMain removes the binary the process tests built.
func TestMain(m *testing.M) { testutil.Main(m, &sinkserver) }

type serverProc struct {
	cmd    *exec.Cmd
	addr   netip.AddrPort
	log    string
	stderr *bytes.Buffer
	mu     *sync.Mutex
	exited chan error
}

// startProc starts sinkserver on 127.0.0.1:0 and waits for it to say it
// serves.
func startProc(t *testing.T, args ...string) *serverProc {
	t.Helper()
	p := &serverProc{log: filepath.Join(t.TempDir(), "evidence.log"), stderr: &bytes.Buffer{}, mu: &sync.Mutex{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(sinkserver.Path(t), append([]string{"-listen", "127.0.0.1:0", "-log", p.log}, args...)...)
	pr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			if a, ok := strings.CutPrefix(line, "listening "); ok {
				ready <- a
			}
			p.mu.Lock()
			p.stderr.WriteString(line + "\n")
			p.mu.Unlock()
		}
		p.exited <- p.cmd.Wait()
	}()
	t.Cleanup(func() { p.cmd.Process.Kill() })
	select {
	case a := <-ready:
		p.addr = netip.MustParseAddrPort(a)
	case err := <-p.exited:
		t.Fatalf("sinkserver exited: %v\n%s", err, p.output())
	case <-time.After(10 * time.Second):
		t.Fatal("sinkserver did not start")
	}
	return p
}

func (p *serverProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// stop sends SIGTERM and returns the server's final counters.
func (p *serverProc) stop(t *testing.T) Stats {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("sinkserver: %v\n%s", err, p.output())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("sinkserver did not stop within 10s of SIGTERM\n%s", p.output())
	}
	var st Stats
	for _, line := range strings.Split(p.output(), "\n") {
		if j, ok := strings.CutPrefix(line, "stats "); ok {
			if err := json.Unmarshal([]byte(j), &st); err != nil {
				t.Fatal(err)
			}
			return st
		}
	}
	t.Fatalf("no stats line from sinkserver:\n%s", p.output())
	return st
}

// logLine is the part of an evidence line the tests check.
type logLine struct {
	Event     string `json:"event"`
	Host      string `json:"host"`
	Port      uint16 `json:"port"`
	Signature string `json:"signature"`
	Family    string `json:"family"`
	Evidence  string `json:"evidence"`
	Count     uint64 `json:"count"`
	File      string `json:"file"`
	Mode      string `json:"mode"`
	Op        string `json:"op"`
	Server    string `json:"server"`
	Serial    uint64 `json:"serial"`
	Proof     string `json:"proof"`
}

func readLog(t *testing.T, path string) []logLine {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	all, err := evidencetest.Decode[logLine](data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []logLine
	for _, e := range all {
		if e.Host != "" {
			out = append(out, e)
		}
	}
	return out
}

// procSample is what /proc says about a process.
type procSample struct {
	fds int
	rss int64 // bytes
	cpu time.Duration
}

func sampleProc(pid int) (procSample, error) {
	var s procSample
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.fds = len(ents)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			s.rss = kb << 10
		}
	}
	s.cpu, err = procCPU(pid)
	return s, err
}

// procCPU is the user and system time of a process and its reaped children.
func procCPU(pid int) (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	var ticks int64
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		v, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * (time.Second / 100), nil // USER_HZ is 100 on Linux
}

// udpQueue reads the receive queue and drop count of the UDP socket bound
// to port from /proc/net/udp.
func udpQueue(port uint16) (rxQueue, drops int64, ok bool) {
	socks, _ := testutil.UDPSockets()
	for _, s := range socks {
		if s.Local.Port() == port && s.Remote.Port() == 0 { // the listening socket, not a connected one
			return s.RxQueue, s.Drops, true
		}
	}
	return 0, 0, false
}
