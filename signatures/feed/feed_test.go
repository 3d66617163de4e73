package feed

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"wormsink/signatures"
)

// origin is a feed server on a loopback socket whose answer the test sets.
type origin struct {
	mu       sync.Mutex
	data     []byte
	sig      []byte
	mod      time.Time
	status   int
	header   http.Header
	requests atomic.Int64
	srv      *httptest.Server
}

func newOrigin(t *testing.T) *origin {
	o := &origin{}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.requests.Add(1)
		o.mu.Lock()
		defer o.mu.Unlock()
		for k, v := range o.header {
			w.Header()[k] = v
		}
		if o.status != 0 {
			w.WriteHeader(o.status)
			return
		}
		body := o.data
		if strings.HasSuffix(r.URL.Path, ".minisig") {
			body = o.sig
		}
		http.ServeContent(w, r, "", o.mod, bytes.NewReader(body))
	}))
	t.Cleanup(o.srv.Close)
	return o
}

func (o *origin) set(data, sig []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.data, o.sig, o.mod = data, sig, o.mod.Add(time.Second)
	if o.mod.Before(time.Unix(1e9, 0)) {
		o.mod = time.Now().Add(-time.Hour).Truncate(time.Second)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestFeedAppliesAndSkipsUnchanged(t *testing.T) {
	pk, sk, _, _ := mustKey(t)
	o := newOrigin(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "sigs.yaml")
	exp := time.Now().Add(2 * time.Hour).Truncate(time.Second) // within a day: warned about
	os.WriteFile(path, sigFile(1, exp, "a.example"), 0o644)
	store, err := signatures.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	data := sigFile(2, exp, "b.example")
	sig, _ := Sign(sk, data, Comment{Serial: 2, Expires: exp, File: "sigs.yaml"}.String())
	o.set(data, sig)
	var logs syncBuf
	f, err := New(Config{URLs: []string{o.srv.URL + "/feed/sigs.yaml"}, Keys: []PublicKey{pk}, Path: path,
		Interval: time.Second, Store: store, Log: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.Check(context.Background())
	if err != nil || !res.Applied || store.Current().Serial() != 2 {
		t.Fatalf("%+v %v serial %d", res, err, store.Current().Serial())
	}
	if _, ok := store.Current().MatchName("b.example"); !ok {
		t.Fatal("new name not in service")
	}
	onDisk, _ := os.ReadFile(path)
	sigOnDisk, _ := os.ReadFile(path + ".minisig")
	if !bytes.Equal(onDisk, data) || !bytes.Equal(sigOnDisk, sig) {
		t.Fatal("last-good copy or its signature not written")
	}
	before := o.requests.Load()
	res, err = f.Check(context.Background())
	if err != nil || !res.Unchanged || o.requests.Load()-before != 1 || f.Stats().NotModified != 1 {
		t.Fatalf("unchanged feed: %+v %v, %d requests, %+v", res, err, o.requests.Load()-before, f.Stats())
	}
	if n := strings.Count(logs.String(), `"sigs_expiring"`); n != 1 {
		t.Fatalf("%d expiry warnings, want 1:\n%s", n, logs.String())
	}
	if strings.Count(logs.String(), `"sigs_update"`) != 1 {
		t.Fatalf("no update line:\n%s", logs.String())
	}
}

func TestFeedBacksOff(t *testing.T) {
	pk, _, _, _ := mustKey(t)
	o := newOrigin(t)
	o.status = http.StatusServiceUnavailable
	path := filepath.Join(t.TempDir(), "sigs.yaml")
	f, err := New(Config{URLs: []string{o.srv.URL + "/sigs.yaml"}, Keys: []PublicKey{pk}, Path: path, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f.Check(ctx) // one failure: the next check tries again
	f.Check(ctx) // two: the mirror is left alone for a while
	if _, err := f.Check(ctx); err == nil || o.requests.Load() != 2 {
		t.Fatalf("asked %d times, want 2 (backing off): %v", o.requests.Load(), err)
	}
	if w := f.nextWait(time.Now()); w < 50*time.Minute {
		t.Fatalf("next wait %v while the only mirror backs off for an interval or more", w)
	}
	if f.Stats().Failures[Network] != 2 {
		t.Fatalf("%+v", f.Stats())
	}

	// Retry-After as an HTTP date.
	o2 := newOrigin(t)
	o2.status = http.StatusTooManyRequests
	o2.header = http.Header{"Retry-After": {time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)}}
	f2, _ := New(Config{URLs: []string{o2.srv.URL + "/sigs.yaml"}, Keys: []PublicKey{pk}, Path: path, Interval: time.Second})
	f2.Check(ctx)
	f2.Check(ctx)
	if o2.requests.Load() != 1 {
		t.Fatalf("asked %d times within Retry-After", o2.requests.Load())
	}
	if w := f2.nextWait(time.Now()); w < 80*time.Second || w > 91*time.Second {
		t.Fatalf("next wait %v, want the Retry-After of 90s", w)
	}
}

func TestFeedRefusesOversize(t *testing.T) {
	pk, sk, _, _ := mustKey(t)
	o := newOrigin(t)
	exp := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	data := sigFile(2, exp, "a.example", "b.example", "c.example")
	sig, _ := Sign(sk, data, Comment{Serial: 2, Expires: exp, File: "sigs.yaml"}.String())
	o.set(data, sig)
	path := filepath.Join(t.TempDir(), "sigs.yaml")
	f, _ := New(Config{URLs: []string{o.srv.URL + "/sigs.yaml"}, Keys: []PublicKey{pk}, Path: path, MaxSize: 64})
	_, err := f.Check(context.Background())
	if r, _ := ReasonOf(err); r != Oversize {
		t.Fatalf("reason %v: %v", r, err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("oversize file written")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"": 0, "3": 3 * time.Second, "0": 0, "-1": 0, "x": 0,
		"Tue, 01 Dec 2026 00:01:00 GMT": time.Minute, "Mon, 30 Nov 2026 00:00:00 GMT": 0,
	} {
		if got := retryAfter(in, now); got != want {
			t.Errorf("%q: %v, want %v", in, got, want)
		}
	}
}

func TestNewChecksConfig(t *testing.T) {
	pk, _, _, _ := mustKey(t)
	for _, c := range []Config{
		{URLs: []string{"ftp://x/s.yaml"}, Keys: []PublicKey{pk}, Path: "p"},
		{URLs: []string{"http://u:p@x/s.yaml"}, Keys: []PublicKey{pk}, Path: "p"},
		{URLs: []string{"http://x/a.yaml", "http://y/b.yaml"}, Keys: []PublicKey{pk}, Path: "p"},
		{URLs: []string{"http://x/s.yaml"}, Path: "p"},
		{URLs: []string{"http://x/s.yaml"}, Keys: []PublicKey{pk}, Path: "p", Interval: time.Millisecond},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("%+v taken", c)
		}
	}
}

func TestFeedWriteFailure(t *testing.T) {
	pk, sk, _, _ := mustKey(t)
	o := newOrigin(t)
	exp := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	data := sigFile(2, exp, "a.example")
	sig, _ := Sign(sk, data, Comment{Serial: 2, Expires: exp, File: "sigs.yaml"}.String())
	o.set(data, sig)
	path := filepath.Join(t.TempDir(), "gone", "sigs.yaml") // its directory does not exist
	f, _ := New(Config{URLs: []string{o.srv.URL + "/sigs.yaml"}, Keys: []PublicKey{pk}, Path: path})
	_, err := f.Check(context.Background())
	if r, _ := ReasonOf(err); r != Write || f.Stats().Failures[Write] != 1 {
		t.Fatalf("reason %v: %v", r, err)
	}
	if err := f.Serve(context.Background()); err == nil || !strings.Contains(err.Error(), "cannot be written") {
		t.Fatalf("Serve with an unwritable path: %v", err)
	}
}

// BenchmarkOpen is the work of a check that downloaded a new file: the
// signature over 100,000 names, then the parse.
func BenchmarkOpen(b *testing.B) {
	_, sk, pub, _ := mustKeyB(b)
	pk, _ := ParsePublicKey(pub)
	exp := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	names := make([]string, 100000)
	for i := range names {
		names[i] = fmt.Sprintf("n%d.feed.example", i)
	}
	data := sigFile(2, exp, names...)
	sig, _ := Sign(sk, data, Comment{Serial: 2, Expires: exp, File: "sigs.yaml"}.String())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Open([]PublicKey{pk}, "sigs.yaml", data, sig, time.Now(), 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	_, sk, pub, _ := mustKeyB(b)
	pk, _ := ParsePublicKey(pub)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	sig, _ := Sign(sk, data, "serial:1 expires:2027-01-01T00:00:00Z file:sigs.yaml")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify([]PublicKey{pk}, data, sig); err != nil {
			b.Fatal(err)
		}
	}
}

func mustKeyB(b *testing.B) (PublicKey, PrivateKey, []byte, []byte) {
	pub, sec, err := GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	pk, _ := ParsePublicKey(pub)
	sk, err := ParsePrivateKey(sec, nil)
	if err != nil {
		b.Fatal(err)
	}
	return pk, sk, pub, sec
}

// A file may leave its expiry to its signature: the feed takes the signed
// one, and knows it again after a restart from the .minisig beside the copy.
func TestFeedExpiryFromSignature(t *testing.T) {
	pk, sk, _, _ := mustKey(t)
	o := newOrigin(t)
	exp := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	data := sigFile(2, time.Time{}, "a.example")
	sig, _ := Sign(sk, data, Comment{Serial: 2, Expires: exp, File: "sigs.yaml"}.String())
	o.set(data, sig)
	path := filepath.Join(t.TempDir(), "sigs.yaml")
	cfg := Config{URLs: []string{o.srv.URL + "/sigs.yaml"}, Keys: []PublicKey{pk}, Path: path}
	f, _ := New(cfg)
	if res, err := f.Check(context.Background()); err != nil || !res.Applied {
		t.Fatalf("%+v %v", res, err)
	}
	if !f.Expiry().Equal(exp) {
		t.Fatalf("expiry %v, want the signed %v", f.Expiry(), exp)
	}
	restarted, _ := New(cfg)
	if !restarted.Expiry().Equal(exp) {
		t.Fatalf("after a restart: expiry %v, want %v", restarted.Expiry(), exp)
	}
	// An expired signature is still refused.
	past := time.Now().Add(-time.Minute).Truncate(time.Second)
	data3 := sigFile(3, time.Time{}, "a.example")
	sig3, _ := Sign(sk, data3, Comment{Serial: 3, Expires: past, File: "sigs.yaml"}.String())
	o.set(data3, sig3)
	if _, err := f.Check(context.Background()); func() Reason { r, _ := ReasonOf(err); return r }() != Freeze {
		t.Fatalf("expired signature: %v", err)
	}
}
