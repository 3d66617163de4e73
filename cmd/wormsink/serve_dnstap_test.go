package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	framestream "github.com/farsightsec/golang-framestream"

	"wormsink/tapin"
)

// dnstapHandshake connects to addr on network from a local address and
// does the Frame Streams handshake.
func dnstapHandshake(t *testing.T, network, addr string, local net.Addr) error {
	t.Helper()
	d := net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}
	c, err := d.Dial(network, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	w, err := framestream.NewWriter(c, &framestream.WriterOptions{ContentTypes: [][]byte{tapin.ContentType}, Bidirectional: true, Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	return w.Close()
}

// TestServeDNSTapAllow: with --dnstap-listen tcp:, a connection from
// outside --dnstap-allow is closed unread and counted; one from inside
// streams.
func TestServeDNSTapAllow(t *testing.T) {
	bin := wormsinkBinary(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := startServe(t, bin, "--dnstap-listen", "tcp:"+addr, "--dnstap-allow", "127.0.0.2/32", "--upstream", "127.0.0.1:9")
	if err := dnstapHandshake(t, "tcp", addr, &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}); err == nil {
		t.Fatal("a stream from outside --dnstap-allow was accepted")
	}
	waitFor(t, "the refusal counted", 10*time.Second, func() bool {
		return p.metric(t, `wormsink_dnstap_closed_total{reason="refused"}`) == 1
	})
	if err := dnstapHandshake(t, "tcp", addr, &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}); err != nil {
		t.Fatalf("a stream from inside --dnstap-allow: %v", err)
	}
	if n := p.metric(t, "wormsink_dnstap_connections_total"); n != 1 {
		t.Errorf("%v streams accepted, want 1", n)
	}
}

// TestServeDNSTapSocketInUse: a second serve given the first one's live
// dnstap socket refuses to start, as for a bound port, and the first one
// keeps its socket.
func TestServeDNSTapSocketInUse(t *testing.T) {
	bin := wormsinkBinary(t)
	sock := filepath.Join(t.TempDir(), "dnstap.sock")
	startServe(t, bin, "--dnstap-listen", "unix:"+sock, "--upstream", "127.0.0.1:9")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "serve", "--dns-listen", "", "--tftp-listen", "", "--dnstap-listen", "unix:"+sock,
		"--log", filepath.Join(t.TempDir(), "b.jsonl"), "--user", "", "--watch-interval", "0").CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "in use") {
		t.Fatalf("second serve on a live socket: %v\n%s", err, out)
	}
	if err := dnstapHandshake(t, "unix", sock, nil); err != nil {
		t.Fatalf("the first serve's socket after the second one failed: %v", err)
	}
}

// TestServeDNSTapLimits: past --dnstap-max-connections a connection is
// closed and counted, and a stream idle for --dnstap-idle-timeout is
// closed, which makes room again.
func TestServeDNSTapLimits(t *testing.T) {
	bin := wormsinkBinary(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := startServe(t, bin, "--dnstap-listen", "tcp:"+addr, "--dnstap-max-connections", "1", "--dnstap-idle-timeout", "2s", "--upstream", "127.0.0.1:9")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := framestream.NewWriter(c, &framestream.WriterOptions{ContentTypes: [][]byte{tapin.ContentType}, Bidirectional: true, Timeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := dnstapHandshake(t, "tcp", addr, nil); err == nil {
		t.Fatal("a second stream was accepted past --dnstap-max-connections 1")
	}
	waitFor(t, "the busy refusal", 10*time.Second, func() bool {
		return p.metric(t, `wormsink_dnstap_closed_total{reason="busy"}`) == 1
	})
	// The idle stream is closed by the server...
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Read(make([]byte, 16)); err == nil {
		t.Fatal("the idle stream got data instead of being closed")
	}
	waitFor(t, "the idle close counted", 10*time.Second, func() bool {
		return p.metric(t, `wormsink_dnstap_closed_total{reason="idle"}`) == 1
	})
	// ...which makes room (once its goroutine has let go of it).
	waitFor(t, "room for a new stream", 10*time.Second, func() bool { return dnstapHandshake(t, "tcp", addr, nil) == nil })
}
