package sinkhole

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pintftp "github.com/pin/tftp/v3"
	"github.com/rs/zerolog"

	"wormsink/evidence"
	"wormsink/internal/evidencetest"
	"wormsink/internal/testutil"
	"wormsink/internal/tftp"
	"wormsink/signatures"
)

// fixedSet serves one signature set.
type fixedSet struct{ s *signatures.Set }

func (f fixedSet) Current() *signatures.Set { return f.s }

// waitFor polls cond until it holds or the deadline passes. The deadline
// is generous: it only matters when the test fails, and the CI machine is
// loaded (under -race with other packages, the flood's last replies once
// took more than 5 s to be read).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, what, cond)
}

// mustNew is New on a socket the test bound.
func mustNew(t testing.TB, cfg Config, sigs signatures.Source, rec evidence.Recorder) *Server {
	t.Helper()
	srv, err := New(cfg, sigs, rec, zerolog.New(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

type testServer struct {
	srv  *Server
	addr netip.AddrPort
	rec  *evidencetest.Recorder
	stop func() error
}

// startServer runs a Server on 127.0.0.1:0 until the test ends.
func startServer(t *testing.T, cfg Config, rec evidence.Recorder) *testServer {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: conn.LocalAddr().(*net.UDPAddr).AddrPort()}
	if rec == nil {
		ts.rec = &evidencetest.Recorder{}
		rec = ts.rec
	}
	if cfg.ExchangeWait == 0 {
		// Tests wait on the events they count, and a sighting is
		// recorded when its follow-up comes or this wait ends: keep it short.
		cfg.ExchangeWait = 100 * time.Millisecond
	}
	cfg.Conn = conn
	srv, err := New(cfg, fixedSet{signatures.Default()}, rec, zerolog.New(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	ts.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ts.srv.Serve(ctx) }()
	var once sync.Once
	var serr error
	ts.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case serr = <-served:
			case <-time.After(10 * time.Second):
				serr = errors.New("Serve did not return within 10s of cancel")
			}
		})
		return serr
	}
	t.Cleanup(func() {
		if err := ts.stop(); !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ts
}

// client is a raw UDP socket that sends requests and reads replies.
type client struct {
	t    *testing.T
	conn *net.UDPConn
	srv  netip.AddrPort
	from netip.AddrPort // where the last reply came from
	// req is the last request sent. read answers each probe with it, to
	// the probe's port, as tftp-hpa does, unless mute is set: then read
	// returns the probe.
	req    []byte
	mute   bool
	probes int // probes answered
}

func newClient(t *testing.T, srv netip.AddrPort) *client {
	t.Helper()
	return newClientOn(t, srv, "127.0.0.1")
}

// newClientOn is a client on the loopback address ip.
func newClientOn(t *testing.T, srv netip.AddrPort, ip string) *client {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, srv: srv}
}

func (c *client) port() uint16 { return c.conn.LocalAddr().(*net.UDPAddr).AddrPort().Port() }

func (c *client) send(p []byte) {
	c.t.Helper()
	c.req = p
	if _, err := c.conn.WriteToUDPAddrPort(p, c.srv); err != nil {
		c.t.Fatal(err)
	}
}

// isProbe reports whether p is the server's probe: DATA block 0, empty.
func isProbe(p []byte) bool { return string(p) == "\x00\x03\x00\x00" }

// read returns the next reply, or nil when none comes within d. Probes
// are answered and skipped (unless the client is mute).
func (c *client) read(d time.Duration) []byte {
	c.t.Helper()
	buf := make([]byte, 65536)
	c.conn.SetReadDeadline(time.Now().Add(d))
	for {
		n, from, err := c.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || !isTimeout(err) {
				c.t.Fatal(err)
			}
			return nil
		}
		// Replies come from the server's address, from a fresh port of
		// its own (RFC 1350's transfer identifier) or, when those are all
		// in use, from the listening port.
		if from.Addr() != c.srv.Addr() {
			c.t.Fatalf("reply from %v, want %v", from, c.srv.Addr())
		}
		c.from = from
		if !isProbe(buf[:n]) || c.mute {
			return buf[:n]
		}
		c.probes++
		if _, err := c.conn.WriteToUDPAddrPort(c.req, from); err != nil {
			c.t.Fatal(err)
		}
	}
}

// readProbe reads the next reply of a mute client, which must be a probe,
// and returns the port it came from.
func (c *client) readProbe() netip.AddrPort {
	c.t.Helper()
	if p := c.read(5 * time.Second); !isProbe(p) {
		c.t.Fatalf("reply %q, want a probe", p)
	}
	return c.from
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// quiet is how long a test listens to conclude that no (further) reply
// comes: replies take microseconds, so this is generous.
const quiet = 150 * time.Millisecond

func checkError(t *testing.T, reply []byte, reqLen int) {
	t.Helper()
	if reply == nil {
		t.Fatal("no reply")
	}
	if len(reply) < 5 || reply[0] != 0 || reply[1] != tftp.OpError || reply[len(reply)-1] != 0 {
		t.Fatalf("reply %q is not an ERROR", reply)
	}
	if len(reply) > reqLen {
		t.Fatalf("reply of %d bytes to a request of %d", len(reply), reqLen)
	}
	if msg := string(reply[4 : len(reply)-1]); !strings.HasPrefix(RefusalText, msg) {
		t.Fatalf("reply text %q, want (a prefix of) %q", msg, RefusalText)
	}
}

func TestRefusesEveryRequest(t *testing.T) {
	ts := startServer(t, Config{SourceRate: -1, TotalRate: -1}, nil)
	tests := []struct {
		name   string
		req    []byte
		kind   evidence.Kind
		sig    string
		family string
		op     string
	}{
		{"blaster", rrq(1, "msblast.exe", "octet"), evidence.TFTPRefused, "blaster", "Blaster", "read"},
		{"windows path", rrq(1, `C:\WINDOWS\system32\msblast.exe`, "octet"), evidence.TFTPRefused, "blaster", "Blaster", "read"},
		{"unix path", rrq(1, "/msblast.exe", "octet"), evidence.TFTPRefused, "blaster", "Blaster", "read"},
		{"dotdot", rrq(1, `..\..\MSBLAST.EXE`, "octet"), evidence.TFTPRefused, "blaster", "Blaster", "read"},
		{"upper case", rrq(1, "MSBLAST.EXE", "OCTET"), evidence.TFTPRefused, "blaster", "Blaster", "read"},
		{"netascii", rrq(1, "penis32.exe", "NetAscii"), evidence.TFTPRefused, "blaster.b", "Blaster", "read"},
		{"options", rrq(1, "teekids.exe", "octet", "blksize", "1432", "tsize", "0", "timeout", "3"), evidence.TFTPRefused, "blaster.c", "Blaster", "read"},
		{"welchia", rrq(1, "dllhost.exe", "octet"), evidence.TFTPRefused, "welchia", "Welchia", "read"},
		{"unknown", rrq(1, "pxelinux.0", "octet"), evidence.TFTPRequest, "", "", "read"},
		{"unknown options", rrq(1, "boot/grub.cfg", "octet", "tsize", "0"), evidence.TFTPRequest, "", "", "read"},
		{"write worm", rrq(2, "msblast.exe", "octet"), evidence.TFTPRefused, "blaster", "Blaster", "write"},
		{"write other", rrq(2, "router.cfg", "netascii", "tsize", "812"), evidence.TFTPRequest, "", "", "write"},
		{"mail", rrq(1, "x", "mail"), evidence.TFTPRequest, "", "", "read"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, ts.addr)
			c.send(tc.req)
			checkError(t, c.read(5*time.Second), len(tc.req))
			if extra := c.read(quiet); extra != nil {
				t.Fatalf("second reply %q to one request", extra)
			}
			req, _ := tftp.ParseRequest(tc.req)
			var ev *evidence.Event
			waitFor(t, "the evidence", func() bool {
				for _, e := range ts.rec.Events() {
					if e.Port == c.port() {
						e.Time = time.Time{}
						ev = &e
					}
				}
				return ev != nil
			})
			strength := signatures.Weak
			if tc.kind == evidence.TFTPRefused {
				strength = signatures.Strong
			}
			want := evidence.Event{
				Kind: tc.kind, Host: netip.MustParseAddr("127.0.0.1"), Port: c.port(), Sig: tc.sig, Family: tc.family,
				Evidence: strength, Serial: signatures.Default().Serial(),
				File: string(req.File), Mode: string(req.Mode), Op: tc.op, Srv: ts.addr, Proof: evidence.ProofDatagram,
			}
			// A read request without options goes through the rounds (the
			// client answers each probe, as tftp-hpa does); any other is
			// refused at once.
			wantProbes := 0
			if req.Op == tftp.OpRRQ && !req.HasOptions() {
				wantProbes, want.Proof = DefaultExchangeRounds, evidence.ProofExchange
			}
			if c.probes != wantProbes {
				t.Errorf("%d probes before the refusal, want %d", c.probes, wantProbes)
			}
			if *ev != want {
				t.Fatalf("evidence\n got %+v\nwant %+v", *ev, want)
			}
		})
	}
	st := ts.srv.Stats()
	if st.Refused != 8 || st.Unknown != 3 || st.Writes != 2 || st.Replies != 13 || st.Malformed != 0 || st.Panics != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Bad datagrams and stray packets get no reply, and no evidence.
func TestIgnoresMalformed(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	bad := [][]byte{
		{},
		{0},
		{0, 1},
		{0, 1, 'a', 0},
		rrq(1, "msblast.exe", "binary"),
		rrq(3, "data"),
		{0, 5, 0, 1, 'x', 0},
		append(rrq(1, "msblast.exe", "octet"), "blksize"...),
		bytes.Repeat([]byte{0, 1}, 1000),
		[]byte("GET /msblast.exe HTTP/1.0\r\n\r\n"),
	}
	c := newClient(t, ts.addr)
	for _, p := range bad {
		c.send(p)
	}
	c.send([]byte{0, tftp.OpAck, 0, 1}) // tftp-hpa's ACK after an ERROR
	// Then a good request: its answer is the first and only reply.
	good := rrq(1, "msblast.exe", "octet")
	c.send(good)
	checkError(t, c.read(5*time.Second), len(good))
	if r := c.read(quiet); r != nil {
		t.Fatalf("reply %q to a bad datagram", r)
	}
	st := ts.srv.Stats()
	if st.Malformed+st.Stray != uint64(len(bad)+1) || st.Stray < 2 || st.Replies != 1 {
		t.Fatalf("stats %+v", st)
	}
	if n := len(ts.rec.Events()); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

// The smallest request gets a reply no larger than itself.
func TestReplyNeverLarger(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	for _, req := range [][]byte{rrq(1, "a", "mail"), rrq(1, "ab", "octet"), rrq(2, "x", "mail")} {
		c := newClient(t, ts.addr)
		c.send(req)
		checkError(t, c.read(5*time.Second), len(req))
	}
	// The server counts a reply after sending it: wait for the count.
	waitFor(t, "3 replies counted", func() bool { return ts.srv.Stats().Replies == 3 })
	if st := ts.srv.Stats(); st.Truncated != 2 || st.Replies != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// pin/tftp's own client, reading and writing, sees a refusal: no data, no
// option acknowledgement.
func TestPinClient(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	cl, err := pintftp.NewClient(ts.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	cl.SetTimeout(2 * time.Second)
	cl.SetRetries(1)
	for _, name := range []string{"msblast.exe", `C:\WINDOWS\system32\MSBLAST.EXE`} {
		wt, err := cl.Receive(name, "octet")
		if err == nil {
			var buf bytes.Buffer
			n, err2 := wt.WriteTo(&buf)
			t.Fatalf("Receive %s: got a transfer (%d bytes, %v)", name, n, err2)
		}
		if !strings.Contains(err.Error(), RefusalText) {
			t.Fatalf("Receive %s: %v, want the refusal", name, err)
		}
	}
	// With options, pin/tftp's client expects an OACK; it gets the ERROR.
	cl.RequestTSize(true)
	cl.SetBlockSize(1432)
	if _, err := cl.Receive("penis32.exe", "netascii"); err == nil || !strings.Contains(err.Error(), RefusalText) {
		t.Fatalf("Receive with options: %v, want the refusal", err)
	}
	rf, err := cl.Send("msblast.exe", "octet")
	if err == nil {
		n, err2 := rf.ReadFrom(strings.NewReader("MZ worm body"))
		if err2 == nil {
			t.Fatalf("Send: the server accepted %d bytes", n)
		}
		err = err2
	}
	if !strings.Contains(err.Error(), RefusalText) {
		t.Fatalf("Send: %v, want the refusal", err)
	}
	waitFor(t, "4 events", func() bool { return len(ts.rec.Events()) == 4 })
	evs := ts.rec.Events()
	ops := map[string]int{}
	for _, e := range evs {
		if e.Kind != evidence.TFTPRefused || e.Port == 0 || e.Host != netip.MustParseAddr("127.0.0.1") {
			t.Fatalf("event %+v", e)
		}
		ops[e.Op]++
	}
	if ops["read"] != 3 || ops["write"] != 1 {
		t.Fatalf("ops %v", ops)
	}
}

// Over the per-source limit, requests are recorded but not answered.
func TestSourceLimit(t *testing.T) {
	ts := startServer(t, Config{SourceRate: 0.001, SourceBurst: 3}, nil)
	const n = 20
	var clients []*client
	for i := 0; i < n; i++ {
		c := newClient(t, ts.addr)
		c.send(rrq(1, "msblast.exe", "octet"))
		clients = append(clients, c)
	}
	waitFor(t, "all requests read", func() bool { return ts.srv.Stats().Received == n })
	var replies atomic.Int64
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 600)
			c.conn.SetReadDeadline(time.Now().Add(quiet))
			if _, _, err := c.conn.ReadFromUDPAddrPort(buf); err == nil {
				replies.Add(1)
			}
		}()
	}
	wg.Wait()
	st := ts.srv.Stats()
	if replies.Load() != 3 || st.Replies != 3 || st.SourceLimited != n-3 {
		t.Fatalf("%d replies, stats %+v", replies.Load(), st)
	}
	waitFor(t, "every request recorded", func() bool { return len(ts.rec.Events()) == n })
}

// The overall limit holds across sources.
func TestTotalLimit(t *testing.T) {
	ts := startServer(t, Config{SourceRate: -1, TotalRate: 0.001, TotalBurst: 2}, nil)
	c := newClient(t, ts.addr)
	for i := 0; i < 5; i++ {
		c.send(rrq(1, "msblast.exe", "octet"))
		if i < 2 {
			checkError(t, c.read(5*time.Second), 20)
		}
	}
	waitFor(t, "all requests read", func() bool { return ts.srv.Stats().Received == 5 })
	if r := c.read(quiet); r != nil {
		t.Fatalf("reply over the limit: %q", r)
	}
	if st := ts.srv.Stats(); st.TotalLimited != 3 || st.Replies != 2 {
		t.Fatalf("stats %+v", st)
	}
}

type panicRecorder struct{}

func (panicRecorder) Record(evidence.Event) { panic("recorder broke") }

type panicSet struct{}

func (panicSet) Current() *signatures.Set { panic("set broke") }

// A dependency that panics costs its evidence, never the server.
func TestPanicsRecovered(t *testing.T) {
	ts := startServer(t, Config{}, panicRecorder{})
	c := newClient(t, ts.addr)
	for i := 0; i < 3; i++ {
		req := rrq(1, "msblast.exe", "octet")
		c.send(req)
		checkError(t, c.read(5*time.Second), len(req))
	}
	waitFor(t, "three recorder panics", func() bool { return ts.srv.Stats().Panics == 3 })
	if st := ts.srv.Stats(); st.Panics != 3 || st.Replies != 3 {
		t.Fatalf("stats %+v", st)
	}

	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	srv := mustNew(t, Config{Conn: conn}, panicSet{}, &evidencetest.Recorder{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	c2 := newClient(t, conn.LocalAddr().(*net.UDPAddr).AddrPort())
	req := rrq(1, "x.bin", "octet")
	c2.send(req)
	checkError(t, c2.read(5*time.Second), len(req))
	cancel()
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Fatal(err)
	}
	if st := srv.Stats(); st.Panics != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Shutdown and cancel stop the server promptly, also mid-flood, and a
// stray ACK after the ERROR changes nothing.
func TestShutdown(t *testing.T) {
	for _, how := range []string{"cancel", "shutdown", "before serve"} {
		t.Run(how, func(t *testing.T) {
			conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			addr := conn.LocalAddr().(*net.UDPAddr).AddrPort()
			started := make(chan struct{})
			srv := mustNew(t, Config{Conn: conn, SourceRate: -1, TotalRate: -1, NotifyStarted: func(net.Addr) { close(started) }},
				fixedSet{signatures.Default()}, &evidencetest.Recorder{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if how == "before serve" {
				if err := srv.Shutdown(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx) }()
			if how == "before serve" {
				if err := <-done; !errors.Is(err, ErrServerClosed) {
					t.Fatalf("Serve after Shutdown: %v", err)
				}
				return
			}
			<-started
			// Flood it from a few sockets while it stops.
			stopFlood := make(chan struct{})
			var wg sync.WaitGroup
			for i := 0; i < 4; i++ {
				c := newClient(t, addr)
				wg.Add(1)
				go func() {
					defer wg.Done()
					req := rrq(1, "msblast.exe", "octet")
					for {
						select {
						case <-stopFlood:
							return
						default:
						}
						c.conn.WriteToUDPAddrPort(req, addr)
						c.conn.WriteToUDPAddrPort([]byte{0, tftp.OpAck, 0, 1}, addr)
					}
				}()
			}
			waitFor(t, "replies", func() bool { return srv.Stats().Replies > 100 })
			t0 := time.Now()
			switch how {
			case "cancel":
				cancel()
			case "shutdown":
				sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer scancel()
				if err := srv.Shutdown(sctx); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
			}
			select {
			case err := <-done:
				if !errors.Is(err, ErrServerClosed) {
					t.Fatalf("Serve: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Serve did not return")
			}
			if d := time.Since(t0); d > 2*time.Second {
				t.Fatalf("stopping took %v", d)
			}
			close(stopFlood)
			wg.Wait()
			// The socket is closed: the port can be bound again.
			c2, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
			if err != nil {
				t.Fatalf("port still in use after Serve returned: %v", err)
			}
			c2.Close()
		})
	}
}

// On a wildcard socket the evidence names the address the request was
// sent to, and the reply leaves from it.
func TestWildcardListen(t *testing.T) {
	for _, tc := range []struct{ network, listen, dst string }{
		{"udp", ":0", "127.0.0.1"},         // dual-stack, IPv4 client
		{"udp", ":0", "::1"},               // dual-stack, IPv6 client
		{"udp4", "0.0.0.0:0", "127.0.0.2"}, // IPv4 only, another loopback address
	} {
		t.Run(tc.network+" "+tc.dst, func(t *testing.T) {
			la, err := net.ResolveUDPAddr(tc.network, tc.listen)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := net.ListenUDP(tc.network, la)
			if err != nil {
				t.Fatal(err)
			}
			rec := &evidencetest.Recorder{}
			srv := mustNew(t, Config{Conn: conn, ExchangeWait: 100 * time.Millisecond}, fixedSet{signatures.Default()}, rec)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx) }()
			defer func() {
				cancel()
				if err := <-done; !errors.Is(err, ErrServerClosed) {
					t.Error(err)
				}
			}()
			dst := netip.AddrPortFrom(netip.MustParseAddr(tc.dst), uint16(conn.LocalAddr().(*net.UDPAddr).Port))
			cc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(tc.dst)})
			if err != nil {
				t.Fatal(err)
			}
			c := &client{t: t, conn: cc, srv: dst}
			defer cc.Close()
			req := rrq(1, "msblast.exe", "octet")
			c.send(req)
			checkError(t, c.read(5*time.Second), len(req)) // read checks the reply came from dst's address
			waitFor(t, "the evidence", func() bool { return len(rec.Events()) == 1 })
			evs := rec.Events()
			if len(evs) != 1 || evs[0].Srv != dst || evs[0].Host != dst.Addr() {
				t.Fatalf("events %+v, want server %v", evs, dst)
			}
		})
	}
}

// A socket that fails under the server ends Serve with an error naming it,
// not ErrServerClosed, and Serve does not run twice.
func TestSocketFailure(t *testing.T) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := mustNew(t, Config{Conn: conn, NotifyStarted: func(net.Addr) { close(started) }}, fixedSet{signatures.Default()}, &evidencetest.Recorder{})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	<-started
	conn.Close()
	select {
	case err := <-done:
		if err == nil || errors.Is(err, ErrServerClosed) || !strings.Contains(err.Error(), "serve ") {
			t.Fatalf("Serve after the socket closed: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not notice its socket closed")
	}
	if err := srv.Serve(context.Background()); err == nil || errors.Is(err, ErrServerClosed) {
		t.Fatalf("second Serve: %v", err)
	}
}

// TestNewBindsListen: New binds Config.Listen, so a taken address fails
// there (before Serve, while privileges are held), and Shutdown before
// Serve gives the address back.
func TestNewBindsListen(t *testing.T) {
	srv := mustNew(t, Config{Listen: "127.0.0.1:0"}, fixedSet{signatures.Default()}, &evidencetest.Recorder{})
	addr := srv.Addr().String()
	if _, err := New(Config{Listen: addr}, fixedSet{signatures.Default()}, &evidencetest.Recorder{}, zerolog.New(io.Discard)); err == nil {
		t.Fatalf("a second New on %s bound it too", addr)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	again := mustNew(t, Config{Listen: addr}, fixedSet{signatures.Default()}, &evidencetest.Recorder{})
	again.Shutdown(context.Background())
	if err := again.Serve(context.Background()); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

func TestAnswerAddrs(t *testing.T) {
	for listen, want := range map[string]string{
		"192.0.2.69:69": "192.0.2.69", "[2001:db8::69]:69": "2001:db8::69", "[::ffff:192.0.2.1]:69": "192.0.2.1",
		":69": "", "0.0.0.0:69": "", "[::]:69": "", "tftp.example:69": "", "192.0.2.69": "", "": "", "[fe80::1%eth0]:69": "",
	} {
		got := AnswerAddrs(listen)
		if want == "" && len(got) != 0 || want != "" && (len(got) != 1 || got[0].String() != want) {
			t.Errorf("AnswerAddrs(%q) = %v, want %q", listen, got, want)
		}
	}
}

// FuzzAnswerAddrs: any --tftp-listen value gives at most one address, a
// specific one, without a panic.
func FuzzAnswerAddrs(f *testing.F) {
	for _, s := range []string{"192.0.2.69:69", "[2001:db8::1]:69", ":69", "[::]:69", "x:69", "[fe80::1%lo]:69", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, listen string) {
		got := AnswerAddrs(listen)
		if len(got) > 1 || len(got) == 1 && (!got[0].IsValid() || got[0].IsUnspecified() || got[0].Is4In6() || got[0].Zone() != "") {
			t.Fatalf("AnswerAddrs(%q) = %v", listen, got)
		}
	})
}
