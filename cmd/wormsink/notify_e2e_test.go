package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Unbound and BIND configured with nothing but the primary's address take
// a NOTIFY from wormsink and pick up a new serial at once. The primary
// listens on 127.0.0.2 while the secondaries are at 127.0.0.1, so a NOTIFY
// from the address the kernel picks (127.0.0.1) would be refused ("refused
// notify from non-primary") and they would wait for the SOA refresh, an
// hour. The key comes from --rpz-tsig-file, and is not on the command line.
func TestNotifyAcceptedBySecondaries(t *testing.T) {
	bin := wormsinkBinary(t)
	dir := t.TempDir()
	auth := startAuth(t)
	sigPath := filepath.Join(dir, "sigs.yaml")
	os.WriteFile(sigPath, []byte(feedSigs(2026120201, "first.worm.example")), 0o644)
	keyFile := filepath.Join(dir, "xfr.key")
	os.WriteFile(keyFile, []byte("key \"xfr-key\" {\n\talgorithm hmac-sha256;\n\tsecret \""+feedSecret+"\";\n};\n"), 0o600)
	tap := filepath.Join(dir, "tap.sock")
	primary := fmt.Sprintf("127.0.0.2:%d", freePort(t))
	ubPort, bindPort := freePort(t), freePort(t)
	// Unbound transfers from 127.0.0.1 (the kernel's pick towards
	// 127.0.0.2), BIND from its transfer-source 127.0.0.3.
	ws := startServe(t, bin, "--dns-listen", "", "--tftp-listen", "", "--signatures", sigPath, "--sinkhole-ip", "192.0.2.66",
		"--rpz-listen", primary, "--rpz-allow", "127.0.0.1/32,127.0.0.3/32",
		"--rpz-tsig-file", keyFile, "--rpz-allow-unsigned", "127.0.0.1/32",
		"--rpz-notify", fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d", ubPort, bindPort),
		"--dnstap-listen", "unix:"+tap)
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", ws.cmd.Process.Pid))
	if err != nil || strings.Contains(string(cmdline), feedSecret) {
		t.Fatalf("the secret is on the command line (%v)", err)
	}
	for _, d := range []string{"unbound", "bind"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	ub := startUnboundSecondary(t, filepath.Join(dir, "unbound"), ubPort, auth, primary, tap)
	bind := startBINDSecondary(t, filepath.Join(dir, "bind"), bindPort, auth, primary, tap, feedSecret)
	rs := []*resolverProc{ub, bind}
	for _, r := range rs {
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s log:\n%s", r.Name, r.Log())
			}
		})
		waitFor(t, r.Name+" transferring the zone", 30*time.Second, func() bool { return r.answers(t, "first.worm.example", "192.0.2.66") })
	}
	acked := ws.metric(t, "wormsink_rpz_notify_acknowledged_total")

	// A new serial reaches both by NOTIFY; then again after Unbound was
	// restarted from its zone file (it must not stay on the old serial).
	names := []string{"first.worm.example"}
	for round, name := range []string{"second.worm.example", "third.worm.example"} {
		names = append(names, name)
		if round == 1 {
			ub.restart(t)
			waitFor(t, "unbound back", 30*time.Second, func() bool { return ub.answers(t, "second.worm.example", "192.0.2.66") })
		}
		os.WriteFile(sigPath, []byte(feedSigs(2026120202+round, names...)), 0o644)
		hup := time.Now()
		ws.cmd.Process.Signal(syscall.SIGHUP)
		var wg sync.WaitGroup
		for _, r := range rs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				deadline := time.Now().Add(20 * time.Second)
				for !r.answers(t, name, "192.0.2.66") {
					if time.Now().After(deadline) {
						t.Errorf("%s did not take serial %d within 20 s of the NOTIFY", r.Name, 2026120202+round)
						return
					}
				}
				t.Logf("%s: serial %d answered %v after SIGHUP", r.Name, 2026120202+round, time.Since(hup).Round(time.Millisecond))
			}()
		}
		wg.Wait()
	}
	if n := ws.metric(t, "wormsink_rpz_notify_acknowledged_total") - acked; n < 4 {
		t.Errorf("%v NOTIFYs acknowledged after the reloads, want one per secondary and reload", n)
	}
	for _, r := range rs {
		if l := strings.ToLower(r.Log()); strings.Contains(l, "refused notify") {
			t.Errorf("%s refused a NOTIFY", r.Name)
		}
	}
}
