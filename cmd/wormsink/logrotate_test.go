package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rrq is a TFTP read request for file.
func rrq(file string) []byte {
	return append(append([]byte{0, 1}, file...), append([]byte{0}, "octet\x00"...)...)
}

// sendRRQs sends n read requests for msblast.exe to the sinkhole and waits
// until serve has counted want sightings in all.
func sendRRQs(t *testing.T, p *serveProc, c net.Conn, n int, want float64) {
	t.Helper()
	for range n {
		if _, err := c.Write(rrq("msblast.exe")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, fmt.Sprintf("%v sightings counted", want), 30*time.Second, func() bool {
		return p.metric(t, "wormsink_evidence_sightings_total") >= want
	})
}

// logrotate moves the log and sends SIGUSR1 (postrotate): every sighting
// is in the moved file or in the new one, none lost, and the new file is
// the one written after the signal.
func TestLogReopenOnSIGUSR1(t *testing.T) {
	bin := wormsinkBinary(t)
	p := startServe(t, bin, "--dns-listen", "")
	// From another loopback address: the one serve listens on is its own
	// and never recorded as a host.
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 9)}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p.tftp})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sendRRQs(t, p, c, 300, 300)
	rotated := p.log + ".1"
	if err := os.Rename(p.log, rotated); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the log reopened under its name", 30*time.Second, func() bool {
		data, _ := os.ReadFile(p.log)
		return strings.Contains(string(data), `"event":"reopen"`)
	})
	sendRRQs(t, p, c, 200, 500)
	p.stop(t)
	before, after := logLines(t, rotated), logLines(t, p.log)
	b, a := sightings(before, "tftp_refused"), sightings(after, "tftp_refused")
	if b+a != 500 || a == 0 {
		t.Fatalf("sightings: %v in the rotated file + %v in the new one, want 500 with some in the new one", b, a)
	}
}

// The logrotate snippet in deploy/ is valid for logrotate itself and
// signals serve with SIGUSR1 after rotating.
func TestLogrotateSnippet(t *testing.T) {
	lr := needTool(t, "logrotate")
	data, err := os.ReadFile("../../deploy/wormsink.logrotate")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "postrotate") || !strings.Contains(string(data), "USR1") {
		t.Fatalf("the snippet does not signal SIGUSR1 in postrotate:\n%s", data)
	}
	// Point it at a log of our own and run logrotate for real (-f), with
	// a state file of our own; postrotate's kill hits no process here.
	dir := t.TempDir()
	logPath := filepath.Join(dir, "evidence.jsonl")
	os.WriteFile(logPath, []byte("{}\n"), 0o640)
	conf := strings.Replace(string(data), "/var/log/wormsink/evidence.jsonl", logPath, 1)
	if conf == string(data) {
		t.Fatal("the snippet does not name /var/log/wormsink/evidence.jsonl")
	}
	confPath := filepath.Join(dir, "wormsink.logrotate")
	os.WriteFile(confPath, []byte(conf), 0o644)
	out, err := exec.Command(lr, "-f", "-s", filepath.Join(dir, "state"), confPath).CombinedOutput()
	if err != nil {
		t.Fatalf("logrotate: %v\n%s", err, out)
	}
	if _, err := os.Stat(logPath + ".1"); err != nil {
		t.Fatalf("logrotate did not rotate: %v\n%s", err, out)
	}
}
