package dnsblock

import (
	"bufio"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"wormsink/internal/testutil"
)

// The load tests measure the shim's own file descriptors and memory, so
// the shim runs as `wormsink serve` in a process of its own (built without
// the race detector, which would multiply its memory), with default flags
// but for the addresses, and the clients stay in the test.

var wormsink = testutil.Binary{Pkg: "wormsink/cmd/wormsink"}

func TestMain(m *testing.M) { testutil.Main(m, &wormsink) }

// child is a shim running in its own process.
type child struct {
	cmd  *exec.Cmd
	addr netip.AddrPort
}

// startChild runs `wormsink serve` forwarding to upstream, serving allow,
// with the test signatures, and waits for its dns_listen line.
func startChild(t *testing.T, upstream, allow string) *child {
	t.Helper()
	bin := wormsink.Path(t)
	sigs := filepath.Join(t.TempDir(), "sigs.yaml")
	if err := os.WriteFile(sigs, []byte(testSigs), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--dns-listen", "127.0.0.1:0", "--tftp-listen", "", "--upstream", upstream,
		"--allow", allow, "--sinkhole-ip", "192.0.2.66", "--signatures", sigs, "--log", "-", "--user", "")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	r := bufio.NewReader(out)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("wormsink serve ended before it listened: %v", err)
		}
		var ev struct{ Event, UDP string }
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Event == "dns_listen" {
			addr, err := netip.ParseAddrPort(ev.UDP)
			if err != nil {
				t.Fatalf("dns_listen line %q", line)
			}
			go io.Copy(io.Discard, r) // keep its log flowing
			return &child{cmd: cmd, addr: addr}
		}
	}
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
