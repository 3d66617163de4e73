package rpz

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"wormsink/internal/testutil"
	"wormsink/signatures"
)

const testSecret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtMzItYnl0ZXMhIQ==" // 32 bytes

func sigYAML(serial int, names ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "serial: %d\nsignatures:\n  - id: s\n    family: S\n    domains:\n", serial)
	for _, n := range names {
		if act, ok := strings.CutPrefix(n, "nx:"); ok {
			fmt.Fprintf(&b, "      - {name: %q, action: nxdomain}\n", act)
			continue
		}
		fmt.Fprintf(&b, "      - %q\n", n)
	}
	return b.String()
}

type fixture struct {
	path  string
	store *signatures.Store
	srv   *Server
	addr  string
}

func (f *fixture) write(t *testing.T, yaml string) {
	t.Helper()
	tmp := f.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Reload(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "zone serial", func() bool { return f.srv.Serial() == signatures.RPZSerial(f.store.Current()) })
}

func start(t *testing.T, cfg Config, yaml string) *fixture {
	t.Helper()
	f := &fixture{path: filepath.Join(t.TempDir(), "sigs.yaml")}
	if err := os.WriteFile(f.path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.store, err = signatures.Open(f.path); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Allow == nil {
		cfg.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	cfg.Sinkhole = []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")}
	if f.srv, err = New(cfg, f.store, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	f.addr = f.srv.Addr().String()
	testutil.Serve(t, f.srv, ErrServerClosed)
	return f
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, what, cond)
}

// xfr runs a transfer and returns the records as text, plus the error.
func xfr(t *testing.T, addr string, m *dns.Msg, key *Key, srcIP string) ([]string, error) {
	t.Helper()
	tr := &dns.Transfer{}
	if key != nil {
		tr.TsigProvider = provider{key: *key}
		m.SetTsig(key.Name, key.Algorithm, 300, time.Now().Unix())
	}
	ch, err := tr.In(m, addr)
	if err != nil {
		return nil, err
	}
	var out []string
	for env := range ch {
		if env.Error != nil {
			return out, env.Error
		}
		for _, rr := range env.RR {
			out = append(out, rr.String())
		}
	}
	return out, nil
}

func axfrMsg(zone string) *dns.Msg {
	m := new(dns.Msg)
	m.SetAxfr(zone)
	return m
}

func ixfrMsg(zone string, serial uint32) *dns.Msg {
	m := new(dns.Msg)
	m.SetIxfr(zone, serial, ".", ".")
	return m
}

func TestAXFRContentMatchesExport(t *testing.T) {
	f := start(t, Config{}, sigYAML(2026120101, "a.example", "*.w.example", "nx:n.example"))
	got, err := xfr(t, f.addr, axfrMsg("rpz.wormsink."), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	// The same records the file export writes, under the zone name.
	var sb strings.Builder
	if err := signatures.Export(&sb, f.store.Current(), "rpz", f.srv.cfg.Sinkhole); err != nil {
		t.Fatal(err)
	}
	zp := dns.NewZoneParser(strings.NewReader(sb.String()), "rpz.wormsink.", "export")
	var want []string
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		want = append(want, rr.String())
	}
	if zp.Err() != nil {
		t.Fatal(zp.Err())
	}
	if len(got) < 2 || got[0] != got[len(got)-1] || !strings.Contains(got[0], "2026120101") {
		t.Fatalf("AXFR does not start and end with the SOA of serial 2026120101: %q", got)
	}
	got = got[:len(got)-1]
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Fatalf("AXFR\n%s\nexport\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The count follows the last write, which the client may see first.
	waitFor(t, "axfr full count", func() bool { return f.srv.Stats().Count("axfr", "full") == 1 })
}

func TestIXFRJournal(t *testing.T) {
	f := start(t, Config{Journal: 2}, sigYAML(10, "a.example", "b.example"))
	f.write(t, sigYAML(11, "a.example", "c.example"))
	f.write(t, sigYAML(12, "a.example", "c.example", "nx:d.example"))

	got, err := xfr(t, f.addr, ixfrMsg("rpz.wormsink.", 10), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(got, "\n")
	// SOA 12, SOA 10, -b, SOA 11, +c, SOA 11, SOA 12, +d, SOA 12.
	var serials []string
	for _, l := range got {
		if strings.Contains(l, "\tSOA\t") {
			serials = append(serials, strings.Fields(l)[6])
		}
	}
	if !slices.Equal(serials, []string{"12", "10", "11", "11", "12", "12"}) ||
		!strings.Contains(text, "b.example.rpz.wormsink.") || !strings.Contains(text, "c.example.rpz.wormsink.") ||
		!strings.Contains(text, "d.example.rpz.wormsink.\t60\tIN\tCNAME\t.") || strings.Contains(text, "\ta.example") {
		t.Fatalf("IXFR from 10:\n%s", text)
	}
	// Up to date: the SOA alone.
	if got, err := xfr(t, f.addr, ixfrMsg("rpz.wormsink.", 12), nil, ""); err != nil || len(got) != 1 {
		t.Fatalf("IXFR from the current serial: %q %v", got, err)
	}
	// Unknown serial: the whole zone in AXFR form (RFC 1995).
	f.write(t, sigYAML(13, "a.example"))
	got, err = xfr(t, f.addr, ixfrMsg("rpz.wormsink.", 10), nil, "") // 10→11 fell out of a 2-serial journal
	if err != nil || len(got) < 3 || !strings.Contains(got[0], " 13 ") || !strings.Contains(got[1], "\tNS\t") {
		t.Fatalf("IXFR from a serial past the journal: %q %v", got, err)
	}
	waitFor(t, "ixfr counters", func() bool {
		st := f.srv.Stats()
		return st.Count("ixfr", "incremental") == 1 && st.Count("ixfr", "current") == 1 && st.Count("ixfr", "full") == 1
	})
}

func TestTSIGAndACL(t *testing.T) {
	key, err := ParseKey("xfr-key:hmac-sha256:" + testSecret)
	if err != nil {
		t.Fatal(err)
	}
	f := start(t, Config{Key: &key, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}, sigYAML(5, "a.example"))

	if got, err := xfr(t, f.addr, axfrMsg("rpz.wormsink."), &key, ""); err != nil || len(got) != 5 {
		t.Fatalf("signed AXFR: %q %v", got, err)
	}
	// Unsigned: NOTAUTH.
	if got, err := xfr(t, f.addr, axfrMsg("rpz.wormsink."), nil, ""); err == nil || len(got) > 0 {
		t.Fatalf("unsigned AXFR got %q", got)
	}
	// The right name with another secret: NOTAUTH.
	wrong, _ := ParseKey("xfr-key:hmac-sha256:" + "d3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmc=")
	if got, err := xfr(t, f.addr, axfrMsg("rpz.wormsink."), &wrong, ""); err == nil || len(got) > 0 {
		t.Fatalf("AXFR with a wrong secret got %q", got)
	}
	// The right secret with a weaker algorithm: NOTAUTH.
	c := new(dns.Client)
	c.TsigSecret = map[string]string{"xfr-key.": testSecret}
	m := new(dns.Msg)
	m.SetQuestion("rpz.wormsink.", dns.TypeSOA)
	m.SetTsig("xfr-key.", dns.HmacSHA1, 300, time.Now().Unix())
	if r, _, err := c.Exchange(m, f.addr); err == nil && r.Rcode != dns.RcodeNotAuth {
		t.Fatalf("hmac-sha1 SOA query answered %s", dns.RcodeToString[r.Rcode])
	}
	// From outside --rpz-allow (127.0.0.2 is loopback, but not allowed).
	d := &dns.Client{Dialer: nil, Net: "udp"}
	d.Dialer = dialerFrom("127.0.0.2")
	m = new(dns.Msg)
	m.SetQuestion("rpz.wormsink.", dns.TypeSOA)
	r, _, err := d.Exchange(m, f.addr)
	if err != nil || r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
		t.Fatalf("query from outside --rpz-allow: %v %v", r, err)
	}
	waitFor(t, "counters", func() bool {
		st := f.srv.Stats()
		return st.Count("axfr", "full") == 1 && st.Count("axfr", "notauth") == 2 && st.Count("soa", "notauth") == 1 && st.Count("soa", "refused") == 1
	})
}

func TestParseKey(t *testing.T) {
	for _, bad := range []string{"", "k:hmac-sha256", "k:hmac-md5:" + testSecret, "k:hmac-sha1:" + testSecret,
		"k:hmac-sha224:" + testSecret, "k:hmac-sha256:not base64!", "k:hmac-sha256:c2hvcnQ=", "bad..name:hmac-sha256:" + testSecret} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
	k, err := ParseKey("Xfr-Key:HMAC-SHA512:" + testSecret)
	if err != nil || k.Name != "xfr-key." || k.Algorithm != "hmac-sha512." || len(k.Secret) < 16 {
		t.Fatalf("%+v %v", k, err)
	}
}

func TestNotifyRetriesUntilAcknowledged(t *testing.T) {
	// A secondary that ignores the first two NOTIFYs and answers the third.
	got := make(chan uint32, 10)
	var n atomic.Int32
	sec := &dns.Server{Addr: "127.0.0.1:0", Net: "udp", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if r.Opcode != dns.OpcodeNotify || n.Add(1) < 3 {
			return
		}
		got <- r.Answer[0].(*dns.SOA).Serial
		m := new(dns.Msg)
		m.SetReply(r)
		w.WriteMsg(m)
	})}
	ready := make(chan struct{})
	sec.NotifyStartedFunc = func() { close(ready) }
	go sec.ListenAndServe()
	<-ready
	defer sec.Shutdown()
	f := start(t, Config{Notify: []string{sec.PacketConn.LocalAddr().String()}, NotifyTimeout: 50 * time.Millisecond}, sigYAML(7, "a.example"))
	if s := <-got; s != 7 {
		t.Fatalf("notify for serial %d", s)
	}
	waitFor(t, "acknowledged count", func() bool { return f.srv.Stats().NotifyAcked == 1 })
	if st := f.srv.Stats(); st.NotifySent != 3 {
		t.Fatalf("sent %d NOTIFYs, want 3", st.NotifySent)
	}
	f.write(t, sigYAML(8, "b.example"))
	if s := <-got; s != 8 {
		t.Fatalf("notify after reload for serial %d", s)
	}
}

func dialerFrom(ip string) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(ip)}}
}
