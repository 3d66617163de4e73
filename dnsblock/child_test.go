package dnsblock

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"wormsink/signatures"
)

// The load tests measure the shim's own file descriptors and memory, so
// the shim runs in a child process (this test binary, re-executed) and
// the clients stay in the parent.

const childEnv = "DNSBLOCK_TEST_CHILD"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(childEnv); cfg != "" {
		os.Exit(runChild(cfg))
	}
	os.Exit(m.Run())
}

// childConfig is the part of Config a child shim takes from the parent.
type childConfig struct {
	Upstream        string
	Allow           []string
	UpstreamTCPIdle time.Duration
}

// runChild serves a shim with the default configuration otherwise, prints
// its address and serves until its stdin closes.
func runChild(js string) int {
	var cc childConfig
	if err := json.Unmarshal([]byte(js), &cc); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	allow, err := ParseAllow(cc.Allow)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	src := &source{}
	set, err := signatures.Parse("test.yaml", []byte(testSigs))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	src.p.Store(set)
	s, err := New(Config{Listen: "127.0.0.1:0", Upstreams: []string{cc.Upstream}, Allow: allow, CacheSize: -1,
		UpstreamTCPIdle: cc.UpstreamTCPIdle,
		SinkholeIPs:     []netip.Addr{netip.MustParseAddr("192.0.2.66")}}, src, nil, zerolog.Nop())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := s.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Printf("ADDR %s\n", s.UDPAddr())
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// child is a shim running in its own process.
type child struct {
	cmd  *exec.Cmd
	addr netip.AddrPort
}

func startChild(t *testing.T, cc childConfig) *child {
	t.Helper()
	js, _ := json.Marshal(cc)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(js))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child shim: %v", err)
	}
	addr, err := netip.ParseAddrPort(strings.TrimSpace(strings.TrimPrefix(line, "ADDR ")))
	if err != nil {
		t.Fatalf("child shim said %q", line)
	}
	return &child{cmd: cmd, addr: addr}
}

// fds counts the child's open file descriptors.
func (c *child) fds(t *testing.T) int {
	ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(c.cmd.Process.Pid), "fd"))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// rss returns the child's resident and peak resident memory in bytes.
func (c *child) rss(t *testing.T) (now, peak int64) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.cmd.Process.Pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			now = v << 10
		case "VmHWM:":
			peak = v << 10
		}
	}
	return now, peak
}
