package rpz

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"wormsink/signatures"
)

// NOTIFY leaves from the address the primary listens on, not the one the
// kernel would pick for the secondary's address (127.0.0.1 towards
// 127.0.0.1): secondaries accept it only from their primary. With
// NotifySource set, from that address.
func TestNotifyLeavesFromPrimaryAddress(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		wantIP string
	}{
		{"listen address", Config{Listen: "127.0.0.2:0"}, "127.0.0.2"},
		{"notify source", Config{Listen: "127.0.0.1:0", NotifySource: netip.MustParseAddr("127.0.0.4")}, "127.0.0.4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var from []string
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			sec := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
				mu.Lock()
				from = append(from, w.RemoteAddr().(*net.UDPAddr).IP.String())
				mu.Unlock()
				m := new(dns.Msg)
				m.SetReply(r)
				w.WriteMsg(m)
			})}
			ready := make(chan struct{})
			sec.NotifyStartedFunc = func() { close(ready) }
			go sec.ActivateAndServe()
			<-ready
			defer sec.Shutdown()
			cfg := tc.cfg
			cfg.Notify = []string{pc.LocalAddr().String()}
			cfg.NotifyTimeout = 100 * time.Millisecond
			f := start(t, cfg, sigYAML(7, "a.example"))
			waitFor(t, "acknowledged NOTIFY", func() bool { return f.srv.Stats().NotifyAcked == 1 })
			mu.Lock()
			defer mu.Unlock()
			if len(from) == 0 || from[0] != tc.wantIP {
				t.Fatalf("NOTIFY came from %v, want %s", from, tc.wantIP)
			}
		})
	}
}

// A NotifySource that is not an address of this machine fails the start.
func TestNotifySourceNotLocal(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sigs.yaml")
	os.WriteFile(path, []byte(sigYAML(1, "a.example")), 0o644)
	store, err := signatures.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Listen: "127.0.0.1:0", Notify: []string{"127.0.0.1:9"}, NotifySource: netip.MustParseAddr("192.0.2.99"),
		Sinkhole: []netip.Addr{netip.MustParseAddr("192.0.2.7")}}, store, zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), "notify source 192.0.2.99") {
		t.Fatalf("New: %v; want a notify source error", err)
	}
}
