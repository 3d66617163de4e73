package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The deploy files as `make install` stages them (DESTDIR) start a service
// on a fresh machine: every file the unit names is installed, and its
// command line, with that configuration, starts serving (the built-in
// signature set, the resolvers of /etc/resolv.conf). Only the ports are
// moved to loopback ones of the test's own (flags on the command line
// win over the configuration).
func TestDeployInstall(t *testing.T) {
	needTool(t, "make")
	root := t.TempDir()
	bin := filepath.Join(t.TempDir(), "wormsink")
	out, err := exec.Command("make", "-s", "-C", "../..", "install", "DESTDIR="+root, "BIN="+bin).CombinedOutput()
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	unit, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/wormsink.service"))
	if err != nil {
		t.Fatal(err)
	}
	var exec0 string
	for _, line := range strings.Split(string(unit), "\n") {
		if docs, ok := strings.CutPrefix(line, "Documentation="); ok {
			for _, d := range strings.Fields(docs) {
				path, ok := strings.CutPrefix(d, "file://")
				if !ok {
					t.Errorf("Documentation=%s is not a file installed here", d)
					continue
				}
				if _, err := os.Stat(filepath.Join(root, path)); err != nil {
					t.Errorf("Documentation=%s: not installed: %v", d, err)
				}
			}
		}
		if cmd, ok := strings.CutPrefix(line, "ExecStart="); ok {
			exec0 = cmd
		}
	}
	// Every absolute path on the command line is installed, except the
	// log, which systemd's LogsDirectory= makes.
	args := regexp.MustCompile(`"[^"]*"|\S+`).FindAllString(exec0, -1)
	for i, a := range args {
		a = strings.Trim(a, `"`)
		args[i] = a
		if strings.HasPrefix(a, "/") && !strings.HasPrefix(a, "/var/log/wormsink/") {
			if _, err := os.Stat(filepath.Join(root, a)); err != nil {
				t.Errorf("ExecStart names %s, which make install does not install", a)
			}
			args[i] = filepath.Join(root, a)
		}
		if strings.HasPrefix(a, "/var/log/wormsink/") {
			args[i] = filepath.Join(t.TempDir(), filepath.Base(a))
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	p := &serveProc{dns: freePort(t), tftp: freePort(t), metrics: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	args = append(args, "--dns-listen", fmt.Sprintf("127.0.0.1:%d", p.dns), "--tftp-listen", fmt.Sprintf("127.0.0.1:%d", p.tftp),
		"--metrics-listen", p.metrics, "--sinkhole-ip", "127.0.0.1")
	cmd := exec.Command(args[0], args[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() { cmd.Process.Kill(); <-done }()
	waitFor(t, "the installed service to serve", 30*1e9, func() bool {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("the installed service did not start: %v\n%s", err, stderr.String())
		default:
		}
		if st, _ := p.digQuiet("windowsupdate.com"); st == "NXDOMAIN" {
			return true
		}
		return false
	})
}

// digQuiet asks the shim once and returns the status, or "" when it does
// not answer (yet).
func (p *serveProc) digQuiet(name string) (string, error) {
	out, err := exec.Command("dig", "-p", fmt.Sprint(p.dns), "@127.0.0.1", "+time=1", "+tries=1", name, "A").CombinedOutput()
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`status: (\w+)`).FindSubmatch(out)
	if m == nil {
		return "", nil
	}
	return string(m[1]), nil
}
