package tapin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	dnstap "github.com/dnstap/golang-dnstap"
	framestream "github.com/farsightsec/golang-framestream"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"wormsink/evidence"
	"wormsink/internal/testutil"
)

// startTCP serves cfg (Listen defaulting to tcp:127.0.0.1:0) into a fresh
// evidence writer.
func startTCP(t *testing.T, cfg Config) *fixture {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "tcp:127.0.0.1:0"
	}
	f := &fixture{out: &testutil.SyncBuffer{}}
	f.ev = evidence.NewWriter(f.out, evidence.Config{Sensor: "t", Window: time.Millisecond})
	var err error
	f.srv, err = New(cfg, store{testSet(t)}, f.ev, f.ev.Service())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v, want ErrServerClosed", err)
		}
		f.ev.Close()
	})
	return f
}

// dialFrom connects to the server from a chosen loopback address and does
// the handshake; err is the handshake's.
func dialFrom(t *testing.T, f *fixture, from string) (*framestream.Writer, net.Conn, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", f.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	w, err := framestream.NewWriter(c, &framestream.WriterOptions{ContentTypes: [][]byte{ContentType}, Bidirectional: true, Timeout: 5 * time.Second})
	return w, c, err
}

// TestTCPAllowList: on tcp: only --dnstap-allow networks may stream; a
// connection from elsewhere is closed before the handshake and counted.
// The default is loopback only.
func TestTCPAllowList(t *testing.T) {
	f := startTCP(t, Config{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	if _, _, err := dialFrom(t, f, "127.0.0.3"); err == nil {
		t.Fatal("a stream from outside the allowed networks was accepted")
	}
	waitFor(t, "the refusal counted", func() bool { return f.srv.Stats().Refused == 1 })
	w, _, err := dialFrom(t, f, "127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	w.WriteFrame(tapFrame(t, dnstap.Message_CLIENT_QUERY, "r", "listed.example", dns.TypeA, "192.0.2.1", 1, dnstap.SocketProtocol_TCP))
	w.Close()
	waitFor(t, "the allowed stream's lookup", func() bool { return f.srv.Stats().Lookups == 1 })
	if st := f.srv.Stats(); st.Refused != 1 || st.Connections != 1 {
		t.Errorf("stats %+v", st)
	}
	for a, want := range map[string]bool{"127.0.0.1": true, "127.9.8.7": true, "::1": true, "::ffff:127.0.0.1": true, "192.0.2.1": false, "10.0.0.1": false, "2001:db8::1": false} {
		if got := allowed(DefaultAllow(), netip.MustParseAddr(a)); got != want {
			t.Errorf("default allow %s: %v, want %v", a, got, want)
		}
	}
}

// TestConnectionCapAndIdle: past MaxConns a connection is closed at once
// and counted; a stream that sends nothing for IdleTimeout is closed, so
// idle connections cannot pile up.
func TestConnectionCapAndIdle(t *testing.T) {
	f := startTCP(t, Config{MaxConns: 2, IdleTimeout: 300 * time.Millisecond})
	var conns []net.Conn
	for range 2 {
		_, c, err := dialFrom(t, f, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	if _, _, err := dialFrom(t, f, "127.0.0.1"); err == nil {
		t.Fatal("a third stream was accepted past MaxConns 2")
	}
	waitFor(t, "the busy refusal counted", func() bool { return f.srv.Stats().Busy == 1 })
	// The two idle streams are closed by the server.
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 64)); err == nil {
			t.Fatal("an idle stream stayed open")
		}
	}
	waitFor(t, "the idle streams closed", func() bool { st := f.srv.Stats(); return st.Active == 0 && st.Idle == 2 })
	// Room again.
	w, _, err := dialFrom(t, f, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
}

// tapFrameAt is tapFrame with a chosen query time and raw client address.
func tapFrameAt(t *testing.T, identity, qname string, client []byte, sec uint64, p dnstap.SocketProtocol) []byte {
	typ := dnstap.Message_CLIENT_QUERY
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(qname), dns.TypeA)
	wire, err := m.Pack()
	if err != nil {
		// A name miekg/dns will not pack (a 0xFF byte is fine; this is for
		// names it refuses): build it by hand.
		t.Fatal(err)
	}
	port := uint32(5353)
	fam := dnstap.SocketFamily_INET
	msg := &dnstap.Message{Type: &typ, SocketFamily: &fam, SocketProtocol: &p, QueryAddress: client, QueryPort: &port, QueryMessage: wire}
	if sec != 0 {
		msg.QueryTimeSec = &sec
	}
	dt := &dnstap.Dnstap{Type: dnstap.Dnstap_MESSAGE.Enum(), Message: msg, Identity: []byte(identity)}
	b, err := proto.Marshal(dt)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHostileFrames: a frame's time outside ±5 minutes of now is replaced
// by the time it was received (and counted); qname and resolver are
// escaped and cut like every attacker-chosen string; the unspecified,
// broadcast and multicast addresses are never a host.
func TestHostileFrames(t *testing.T) {
	f := startTCP(t, Config{})
	now := time.Now()
	w, _, err := dialFrom(t, f, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ip := func(s string) []byte { return netip.MustParseAddr(s).AsSlice() }
	for i, sec := range []uint64{uint64(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()), uint64(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC).Unix()), 1 << 63, 9223372036854775807 / 1000} {
		w.WriteFrame(tapFrameAt(t, "r", "listed.example", []byte{192, 0, 2, byte(10 + i)}, sec, dnstap.SocketProtocol_UDP))
	}
	// In time: kept as sent.
	good := uint64(now.Add(-time.Minute).Unix())
	w.WriteFrame(tapFrameAt(t, "r", "listed.example", ip("192.0.2.20"), good, dnstap.SocketProtocol_UDP))
	// A byte that is not UTF-8 in the name, and a 100 kB identity.
	w.WriteFrame(tapFrameAt(t, strings.Repeat("\xff<id>", 20000), "x\xff.wild.example", ip("192.0.2.21"), good, dnstap.SocketProtocol_UDP))
	for _, a := range []string{"0.0.0.0", "255.255.255.255", "224.0.0.1", "::", "ff02::1"} {
		w.WriteFrame(tapFrameAt(t, "r", "listed.example", ip(a), good, dnstap.SocketProtocol_UDP))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the frames", func() bool { return f.srv.Stats().Frames == 11 })
	f.ev.Flush()
	hosts := map[string]map[string]any{}
	for _, l := range f.lines("dns_lookup") {
		hosts[l["host"].(string)] = l
	}
	for i := 0; i < 4; i++ {
		l := hosts[fmt.Sprintf("192.0.2.%d", 10+i)]
		if l == nil {
			t.Fatalf("frame %d: no line in %v", i, hosts)
		}
		at, err := time.Parse(evidence.TimeFormat, l["time"].(string))
		if err != nil || at.Before(now.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
			t.Errorf("frame %d: time %v, want the receive time (about %v)", i, l["time"], now)
		}
	}
	if l := hosts["192.0.2.20"]; l == nil || l["time"] != time.Unix(int64(good), 0).UTC().Format(evidence.TimeFormat) {
		t.Errorf("in-time frame: %v", l)
	}
	if st := f.srv.Stats(); st.BadTime != 4 {
		t.Errorf("BadTime %d, want 4", st.BadTime)
	}
	l := hosts["192.0.2.21"]
	if l == nil {
		t.Fatalf("no line for the hostile strings: %v", hosts)
	}
	if q := l["qname"].(string); q != `x\xff.wild.example` {
		t.Errorf("qname %q", q)
	}
	r := l["resolver"].(string)
	if len(r) > evidence.MaxStringLen || !utf8.ValidString(r) || !strings.HasPrefix(r, `\xff<id>`) || l["resolver_len"] != float64(5*20000) {
		t.Errorf("resolver %d bytes %q, resolver_len %v", len(r), r, l["resolver_len"])
	}
	for h := range hosts {
		if a := netip.MustParseAddr(h); !evidence.IsHost(a) {
			t.Errorf("non-host %s recorded", h)
		}
	}
	if len(hosts) != 6 {
		t.Errorf("hosts %v", hosts)
	}
}

// TestUnixSocketInUse: a second server given the path of a live socket
// refuses it and leaves the first one serving; a stale socket file is
// replaced.
func TestUnixSocketInUse(t *testing.T) {
	f := start(t)
	if _, err := Listen("unix:"+f.path, store{testSet(t)}, f.ev, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a second listener on a live socket: %v", err)
	}
	w, _ := f.dial(t) // the first one still serves
	w.WriteFrame(tapFrame(t, dnstap.Message_CLIENT_QUERY, "", "listed.example", dns.TypeA, "192.0.2.1", 1, dnstap.SocketProtocol_UDP))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "lookup", func() bool { return f.srv.Stats().Lookups == 1 })
	// A regular file at the path is not a socket: refused, not removed.
	p := filepath.Join(t.TempDir(), "file")
	os.WriteFile(p, []byte("x"), 0o600)
	if _, err := Listen("unix:"+p, nil, nil, zerolog.Nop()); err == nil {
		t.Error("a regular file was replaced")
	}
}

// FuzzHandleFrame: whatever a stream sends, the lines it makes are JSON,
// name a host that can be one, carry a time within MaxClockSkew of now and
// no attacker-chosen string longer than evidence.MaxStringLen.
func FuzzHandleFrame(f *testing.F) {
	f.Add(tapFrame(f, dnstap.Message_CLIENT_QUERY, "unbound-1", "listed.example", dns.TypeA, "192.0.2.10", 40001, dnstap.SocketProtocol_TCP))
	f.Add(tapFrame(f, dnstap.Message_CLIENT_RESPONSE, strings.Repeat("\xff", 300), "x.wild.example", dns.TypeAAAA, "::", 1, dnstap.SocketProtocol(7)))
	f.Add(tapFrame(f, dnstap.Message_CLIENT_QUERY, "r", "a\xff.wild.example", dns.TypeA, "224.0.0.1", 1, dnstap.SocketProtocol_UDP))
	set := testSet(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		fx := &fixture{out: &testutil.SyncBuffer{}}
		w := evidence.NewWriter(fx.out, evidence.Config{})
		s := &Server{src: store{set}, rec: w, log: zerolog.Nop(), now: time.Now}
		in := &ingest{s: s, resolver: "tcp:127.0.0.1:1"}
		start := time.Now()
		in.handle(b)
		w.Close()
		for _, l := range fx.lines("dns_lookup") {
			a, err := netip.ParseAddr(l["host"].(string))
			if err != nil || !evidence.IsHost(a) {
				t.Fatalf("host %v", l["host"])
			}
			at, err := time.Parse(evidence.TimeFormat, l["time"].(string))
			if err != nil || at.Before(start.Add(-MaxClockSkew-time.Second)) || at.After(time.Now().Add(MaxClockSkew+time.Second)) {
				t.Fatalf("time %v", l["time"])
			}
			for _, k := range []string{"qname", "resolver"} {
				if v, _ := l[k].(string); len(v) > evidence.MaxStringLen || !utf8.ValidString(v) {
					t.Fatalf("%s %q", k, v)
				}
			}
		}
	})
}

// TestOneStreamCannotFloodTheLog: one allowed stream sends 100,000 frames,
// each a different client claiming TCP, each a different name. The default
// line budget holds: a resolver's reported proof buys no line past it, and
// the counts add up.
func TestOneStreamCannotFloodTheLog(t *testing.T) {
	out := &testutil.SyncBuffer{}
	ev := evidence.NewWriter(out, evidence.Config{LineRate: evidence.DefaultLineRate, LineBurst: evidence.DefaultLineBurst})
	srv, err := New(Config{Listen: "tcp:127.0.0.1:0"}, store{testSet(t)}, ev, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	f := &fixture{srv: srv, out: out, ev: ev}
	w, _, err := dialFrom(t, f, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	const n = 100_000
	start := time.Now()
	for i := range n {
		client := fmt.Sprintf("10.%d.%d.%d", i>>16, byte(i>>8), byte(i))
		w.WriteFrame(tapFrameAt(t, "r", fmt.Sprintf("n%d.wild.example", i), netip.MustParseAddr(client).AsSlice(), 0, dnstap.SocketProtocol_TCP))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every lookup", func() bool { return srv.Stats().Lookups == n })
	took := time.Since(start)
	cancel()
	<-done
	ev.Close()
	var hostLines int
	var sum float64
	for _, l := range f.lines("dns_lookup") {
		sum += l["count"].(float64)
		if l["host"] != nil {
			hostLines++
		}
	}
	t.Logf("%d frames in %v: %d host lines, %d bytes", n, took, hostLines, len(out.String()))
	if sum != n {
		t.Errorf("counts add up to %v, want %d", sum, n)
	}
	if max := evidence.DefaultLineBurst + int(evidence.DefaultLineRate*took.Seconds()) + 1; hostLines > max {
		t.Errorf("%d host lines in %v, budget %d", hostLines, took, max)
	}
}
