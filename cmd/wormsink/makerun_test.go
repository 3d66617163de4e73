package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// `make run` as a new user meets it: scripts/run.sh on its default ports
// while something holds the mDNS port (avahi does on most desktops). It
// must start, its banner's example commands must work and write nothing
// into the current directory, and the README must name its ports and log.
func TestMakeRun(t *testing.T) {
	bin := wormsinkBinary(t)
	script, err := filepath.Abs("../../scripts/run.sh")
	if err != nil {
		t.Fatal(err)
	}
	// Hold UDP 5353 on every address as avahi does. When it is already
	// held (avahi runs here), the condition holds anyway.
	if c, err := listenUDP("0.0.0.0:5353"); err == nil {
		defer c.Close()
	}
	// The default ports, from the script; the README must name them.
	src, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	env := slicesDelete(os.Environ(), "DNS_PORT=", "TFTP_PORT=", "METRICS_PORT=")
	for _, v := range []string{"DNS_PORT", "TFTP_PORT", "METRICS_PORT"} {
		m := regexp.MustCompile(`\$\{` + v + `:-(\d+)\}`).FindSubmatch(src)
		if m == nil {
			t.Fatalf("run.sh has no default for %s", v)
		}
		port := string(m[1])
		if port == "5353" {
			t.Errorf("run.sh's %s is 5353, the mDNS port", v)
		}
		if !regexp.MustCompile(`\b` + port + `\b`).Match(readme) {
			t.Errorf("README does not name port %s (%s) of make run", port, v)
		}
		// Someone else may hold a default port on a shared machine (the
		// test is not about that): then use a free one.
		if !portFree(port) {
			free := fmt.Sprint(freePort(t))
			t.Logf("default %s %s is in use here; using %s", v, port, free)
			env = append(env, v+"="+free)
		}
	}
	if !strings.Contains(string(readme), "wormsink-evidence.jsonl") {
		t.Error("README does not name the log of `make run`")
	}
	cwd := t.TempDir() // where the banner's commands run: must stay empty
	logPath := filepath.Join(t.TempDir(), "evidence.jsonl")
	cmd := exec.Command(script, bin)
	cmd.Dir = cwd
	cmd.Env = append(env, "LOG="+logPath)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	// The banner, up to its last line.
	var banner []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		banner = append(banner, sc.Text())
		if strings.HasPrefix(sc.Text(), "Stop with") {
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	waitFor(t, "the start line in the log", 20*time.Second, func() bool {
		select {
		case <-done:
			t.Fatalf("make run exited: %v\n%s", waitErr, stderr.String())
		default:
		}
		data, _ := os.ReadFile(logPath)
		return strings.Contains(string(data), `"event":"start"`)
	})

	first := strings.Join(banner, "\n")
	m := regexp.MustCompile(`DNS on (127\.0\.0\.\d+:\d+), TFTP on (127\.0\.0\.\d+:\d+), metrics on (http://127\.0\.0\.1:\d+/metrics)`).FindStringSubmatch(first)
	if m == nil || strings.Contains(first, ":5353") || !strings.Contains(first, logPath) {
		t.Fatalf("banner lacks the addresses or the log, or uses the mDNS port:\n%s", first)
	}

	// Every example client in the banner, as typed, from cwd.
	tftpRuns := 0
	exits := regexp.MustCompile(`exits (\d+)`)
	for _, line := range banner {
		line, comment, _ := strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "dig", "curl", "tftp", "busybox":
		default:
			continue
		}
		needTool(t, f[0])
		c := exec.Command(f[0], f[1:]...)
		c.Dir = cwd
		got, _ := c.CombinedOutput() // refusals exit non-zero on purpose
		t.Logf("%s\n%s", line, got)
		// The banner says the status a refused client exits with, so
		// that a non-zero status does not read as a broken sinkhole.
		if m := exits.FindStringSubmatch(comment); m != nil && strconv.Itoa(c.ProcessState.ExitCode()) != m[1] {
			t.Errorf("%s: exit status %d, the banner says %s", line, c.ProcessState.ExitCode(), m[1])
		}
		if f[0] != "dig" {
			tftpRuns++
		} else if !strings.Contains(string(got), "NXDOMAIN") {
			t.Errorf("%s: no NXDOMAIN:\n%s", line, got)
		}
	}
	if tftpRuns == 0 {
		t.Fatalf("banner shows no TFTP example:\n%s", first)
	}
	waitFor(t, "a tftp_refused line per TFTP example", 20*time.Second, func() bool {
		data, _ := os.ReadFile(logPath)
		return strings.Count(string(data), `"event":"tftp_refused"`) >= tftpRuns
	})
	if left, _ := os.ReadDir(cwd); len(left) != 0 {
		t.Errorf("the banner's examples left files in the current directory: %v", left)
	}
}

// slicesDelete drops the environment entries with these prefixes.
func slicesDelete(env []string, prefixes ...string) []string {
	out := env[:0:0]
next:
	for _, e := range env {
		for _, p := range prefixes {
			if strings.HasPrefix(e, p) {
				continue next
			}
		}
		out = append(out, e)
	}
	return out
}

func listenUDP(addr string) (*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, err
	}
	return net.ListenUDP("udp4", ua)
}

// portFree reports whether port is free for UDP and TCP on the loopback
// addresses make run uses.
func portFree(port string) bool {
	for _, host := range []string{"127.0.0.1", "127.0.0.2"} {
		u, err := net.ListenPacket("udp", host+":"+port)
		if err != nil {
			return false
		}
		u.Close()
		l, err := net.Listen("tcp", host+":"+port)
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}
