package tapin

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dnstap "github.com/dnstap/golang-dnstap"
	framestream "github.com/farsightsec/golang-framestream"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"wormsink/evidence"
	"wormsink/internal/testutil"
	"wormsink/signatures"
)

const testSigs = `serial: 42
signatures:
  - id: conficker
    family: Conficker
    domains:
      - listed.example
      - "*.wild.example"
      - {name: weak.example, evidence: weak}
`

type store struct{ set *signatures.Set }

func (s store) Current() *signatures.Set { return s.set }

func testSet(t testing.TB) *signatures.Set {
	set, err := signatures.Parse("test", []byte(testSigs))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// tapFrame builds one serialized dnstap message as a resolver would.
func tapFrame(t testing.TB, typ dnstap.Message_Type, identity, qname string, qtype uint16, client string, port uint32, proto_ dnstap.SocketProtocol) []byte {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(qname), qtype)
	wire, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	ip := net.ParseIP(client)
	fam := dnstap.SocketFamily_INET
	if ip.To4() == nil {
		fam = dnstap.SocketFamily_INET6
	} else {
		ip = ip.To4()
	}
	sec := uint64(1764590400)
	nsec := uint32(123000000)
	msg := &dnstap.Message{Type: &typ, SocketFamily: &fam, SocketProtocol: &proto_, QueryAddress: ip, QueryPort: &port,
		QueryTimeSec: &sec, QueryTimeNsec: &nsec}
	if typ == dnstap.Message_CLIENT_QUERY {
		msg.QueryMessage = wire
	} else {
		msg.ResponseMessage = wire
	}
	dt := &dnstap.Dnstap{Type: dnstap.Dnstap_MESSAGE.Enum(), Message: msg}
	if identity != "" {
		dt.Identity = []byte(identity)
	}
	b, err := proto.Marshal(dt)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type fixture struct {
	srv  *Server
	path string
	out  *testutil.SyncBuffer
	ev   *evidence.Writer
}

// lines are the evidence lines of kind written so far.
func (f *fixture) lines(kind string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(f.out.String()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["event"] == kind {
			out = append(out, m)
		}
	}
	return out
}

func start(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{path: filepath.Join(t.TempDir(), "tap.sock"), out: &testutil.SyncBuffer{}}
	f.ev = evidence.NewWriter(f.out, evidence.Config{Sensor: "t", Window: time.Millisecond})
	var err error
	f.srv, err = Listen("unix:"+f.path, store{testSet(t)}, f.ev, f.ev.Service())
	if err != nil {
		t.Fatal(err)
	}
	// The frames are dated 2025-12-01 12:00; the server's clock is a
	// second later, so their times are believed.
	f.srv.now = func() time.Time { return time.Unix(1764590401, 0) }
	t.Cleanup(func() { f.ev.Close() }) // after Serve has returned: cleanups run last first
	testutil.Serve(t, f.srv, ErrServerClosed)
	return f
}

func (f *fixture) dial(t *testing.T) (*framestream.Writer, net.Conn) {
	t.Helper()
	c, err := net.Dial("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := framestream.NewWriter(c, &framestream.WriterOptions{ContentTypes: [][]byte{ContentType}, Bidirectional: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return w, c
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, what, cond)
}

func TestListedLookupsBecomeEvidence(t *testing.T) {
	f := start(t)
	w, _ := f.dial(t)
	frames := [][]byte{
		tapFrame(t, dnstap.Message_CLIENT_QUERY, "unbound-1", "LISTED.example", dns.TypeA, "192.0.2.10", 40001, dnstap.SocketProtocol_UDP),
		tapFrame(t, dnstap.Message_CLIENT_QUERY, "unbound-1", "unlisted.example", dns.TypeA, "192.0.2.11", 40002, dnstap.SocketProtocol_UDP),
		tapFrame(t, dnstap.Message_CLIENT_QUERY, "unbound-1", "a.b.wild.example", dns.TypeAAAA, "2001:db8::12", 40003, dnstap.SocketProtocol_TCP),
		tapFrame(t, dnstap.Message_CLIENT_QUERY, "unbound-1", "weak.example", dns.TypeTXT, "192.0.2.13", 40004, dnstap.SocketProtocol_UDP),
		// The response to the first query: the same lookup, not counted again.
		tapFrame(t, dnstap.Message_CLIENT_RESPONSE, "unbound-1", "listed.example", dns.TypeA, "192.0.2.10", 40001, dnstap.SocketProtocol_UDP),
		tapFrame(t, dnstap.Message_RESOLVER_QUERY, "unbound-1", "listed.example", dns.TypeA, "198.51.100.1", 53, dnstap.SocketProtocol_UDP),
	}
	for _, fr := range frames {
		if _, err := w.WriteFrame(fr); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil { // STOP, and waits for FINISH
		t.Fatal(err)
	}
	waitFor(t, "3 lookups", func() bool { return f.srv.Stats().Lookups == 3 })
	f.ev.Flush()
	got := f.lines("dns_lookup")
	if len(got) != 3 {
		t.Fatalf("%d dns_lookup lines: %v", len(got), got)
	}
	want := []map[string]any{
		{"host": "192.0.2.10", "port": 40001.0, "qname": "listed.example", "qtype": "A", "transport": "udp", "resolver": "unbound-1", "evidence": "strong", "signature": "conficker", "time": "2025-12-01T12:00:00.123Z"},
		{"host": "2001:db8::12", "port": 40003.0, "qname": "a.b.wild.example", "qtype": "AAAA", "transport": "tcp", "rule": "*.wild.example", "proof": "tcp"},
		{"host": "192.0.2.13", "qname": "weak.example", "qtype": "TXT", "evidence": "weak", "proof": "datagram"},
	}
	for i, w := range want {
		for k, v := range w {
			if got[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v", i, k, got[i][k], v)
			}
		}
	}
	st := f.srv.Stats()
	if st.Frames != 6 || st.Skipped != 2 || st.Errors != 0 || st.Connections != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestResponsesCountedWhenNoQueries: a resolver that logs only client
// responses (BIND "client response") still leaves evidence.
func TestResponsesCountedWhenNoQueries(t *testing.T) {
	f := start(t)
	w, _ := f.dial(t)
	w.WriteFrame(tapFrame(t, dnstap.Message_CLIENT_RESPONSE, "", "listed.example", dns.TypeA, "192.0.2.10", 40001, dnstap.SocketProtocol_UDP))
	w.Close()
	waitFor(t, "lookup", func() bool { return f.srv.Stats().Lookups == 1 })
	f.ev.Flush()
	if got := f.lines("dns_lookup"); len(got) != 1 || !strings.HasPrefix(got[0]["resolver"].(string), "unix:") {
		t.Fatalf("%v", got)
	}
}

// TestAbruptDisconnectLosesNothing: a resolver killed mid-stream (no STOP)
// has every frame it wrote recorded; its reconnection starts afresh, and
// several resolvers stream at once.
func TestAbruptDisconnectLosesNothing(t *testing.T) {
	f := start(t)
	const n = 5000
	var wg sync.WaitGroup
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, c := f.dial(t)
			for i := range n {
				w.WriteFrame(tapFrame(t, dnstap.Message_CLIENT_QUERY, "r"+string(rune('0'+r)), "listed.example", dns.TypeA, "192.0.2.1", uint32(1000+i), dnstap.SocketProtocol_UDP))
			}
			w.Flush()
			c.Close() // no STOP: the resolver was killed
		}()
	}
	wg.Wait()
	waitFor(t, "all lookups", func() bool { return f.srv.Stats().Lookups == 3*n })
	w, _ := f.dial(t)
	w.WriteFrame(tapFrame(t, dnstap.Message_CLIENT_QUERY, "r0", "listed.example", dns.TypeA, "192.0.2.1", 9, dnstap.SocketProtocol_UDP))
	w.Close()
	waitFor(t, "lookup after reconnect", func() bool { return f.srv.Stats().Lookups == 3*n+1 })
	f.ev.Flush()
	var sum float64
	for _, l := range f.lines("dns_lookup") {
		sum += l["count"].(float64)
	}
	if sum != 3*n+1 {
		t.Fatalf("evidence counts sum to %v, want %d", sum, 3*n+1)
	}
	if st := f.srv.Stats(); st.Errors != 0 || st.Connections != 4 {
		t.Fatalf("stats %+v", st)
	}
}

// TestMalformedFrameClosesOnlyItsStream: a frame that is not dnstap ends
// that stream with a counted, logged error; another stream goes on.
func TestMalformedFrameClosesOnlyItsStream(t *testing.T) {
	f := start(t)
	good, _ := f.dial(t)
	bad, _ := f.dial(t)
	bad.WriteFrame([]byte{0xff, 0xff, 0xff})
	bad.Flush()
	waitFor(t, "error count", func() bool { return f.srv.Stats().Errors == 1 })
	good.WriteFrame(tapFrame(t, dnstap.Message_CLIENT_QUERY, "", "listed.example", dns.TypeA, "192.0.2.1", 1, dnstap.SocketProtocol_UDP))
	if err := good.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "lookup", func() bool { return f.srv.Stats().Lookups == 1 })
	f.ev.Flush()
	if got := f.lines("dnstap_error"); len(got) != 1 {
		t.Fatalf("dnstap_error lines: %v", got)
	}
	// A handshake with another content type is refused and counted too.
	c, _ := net.Dial("unix", f.path)
	_, err := framestream.NewWriter(c, &framestream.WriterOptions{ContentTypes: [][]byte{[]byte("protobuf:other")}, Bidirectional: true, Timeout: 5 * time.Second})
	if err == nil {
		t.Fatal("handshake with another content type accepted")
	}
	waitFor(t, "second error", func() bool { return f.srv.Stats().Errors == 2 })
}

func TestListenSpec(t *testing.T) {
	for _, bad := range []string{"", "udp:1.2.3.4:5", "unix:", "/tmp/x.sock"} {
		if _, err := Listen(bad, nil, nil, zerolog.Nop()); err == nil {
			t.Errorf("Listen(%q) accepted", bad)
		}
	}
	// A stale socket file from a previous run is replaced.
	p := filepath.Join(t.TempDir(), "s")
	l, _ := net.Listen("unix", p)
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	s, err := Listen("unix:"+p, nil, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s.ln.Close()
	os.Remove(p)
}
