package notice

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"wormsink/quarantine"
	"wormsink/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func start(t *testing.T) (*Server, *quarantine.Engine) {
	t.Helper()
	ctx := context.Background()
	db := storetest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "q.db"))
	p := quarantine.DefaultPolicy()
	p.SelfReleaseMax = 1
	p.Contact = "Call <b>0800</b> & ask"
	nt := p.Notice("")
	nt.Title = "Blaster found"
	nt.Cleanup = "Run the <script>removal</script> tool."
	p.Notices["blaster"] = nt
	eng, err := quarantine.New(ctx, quarantine.Config{DB: db, Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Listen: "127.0.0.1:0", ISP: "Example ISP", Log: zerolog.Nop()}, eng)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { s.Serve(sctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, eng
}

// client sends from a given loopback address.
func client(from string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (int, string, http.Header) {
	t.Helper()
	r, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b), r.Header
}

var tokenRE = regexp.MustCompile(`name="token" value="([^"]+)"`)

func TestNoticePageAndRelease(t *testing.T) {
	s, eng := start(t)
	ctx := context.Background()
	if _, err := eng.Add(ctx, quarantine.AddressSubject(netip.MustParseAddr("127.0.0.1")), nil, "Blaster", "test", ""); err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.Addr().String()
	me := client("127.0.0.1")
	code, body, h := get(t, me, base+"/any/path?q=1")
	if code != http.StatusNetworkAuthenticationRequired {
		t.Fatalf("status %d, want 511", code)
	}
	for _, want := range []string{"Blaster found", "Blaster", "Run the &lt;script&gt;removal&lt;/script&gt; tool.", "Call &lt;b&gt;0800&lt;/b&gt; &amp; ask", "Example ISP", "My computer is clean"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Error("unescaped text on the page")
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || h.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", h)
	}
	m := tokenRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no token in the form")
	}
	// The neighbour sees nothing of it, and cannot release it.
	other := client("127.0.0.2")
	if code, body, _ := get(t, other, base+"/"); code != 200 || !strings.Contains(body, "not restricted") {
		t.Fatalf("neighbour: %d %s", code, body)
	}
	post := func(c *http.Client, token string) (int, string) {
		r, err := c.PostForm(base+ReleasePath, url.Values{"token": {token}})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	if code, _ := post(other, m[1]); code == 200 {
		if _, ok := eng.Lookup(netip.MustParseAddr("127.0.0.1")); !ok {
			t.Fatal("the neighbour released the quarantined client with its token")
		}
	}
	// Without the token, or with a forged one: refused.
	if code, _ := post(me, ""); code != http.StatusForbidden {
		t.Fatalf("post without token: %d", code)
	}
	if code, _ := post(me, "AAAA"); code != http.StatusForbidden {
		t.Fatalf("post with a forged token: %d", code)
	}
	if _, ok := eng.Lookup(netip.MustParseAddr("127.0.0.1")); !ok {
		t.Fatal("released without a valid token")
	}
	code, body = post(me, m[1])
	if code != 200 || !strings.Contains(body, "open again") {
		t.Fatalf("release: %d %s", code, body)
	}
	if _, ok := eng.Lookup(netip.MustParseAddr("127.0.0.1")); ok {
		t.Fatal("not released")
	}
	// Quarantined again by the abuse team: max 1 is used up.
	eng.Add(ctx, quarantine.AddressSubject(netip.MustParseAddr("127.0.0.1")), nil, "Blaster", "test", "")
	_, body, _ = get(t, me, base+"/")
	if strings.Contains(body, "My computer is clean") || !strings.Contains(body, "used every release") {
		t.Fatal("the button is offered past the allowance")
	}
	if code, _ := post(me, s.token(netip.MustParseAddr("127.0.0.1"), nowish())); code != http.StatusForbidden {
		t.Fatalf("release past max: %d", code)
	}
	if _, ok := eng.Lookup(netip.MustParseAddr("127.0.0.1")); !ok {
		t.Fatal("released past max")
	}
}

func nowish() time.Time { return time.Now() }
