package desk

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"wormsink/store/storetest"
)

// TestWebhookGetsEachTransition: a consumer on a loopback socket gets
// every transition in order, the first after it failed once.
func TestWebhookGetsEachTransition(t *testing.T) {
	got := make(chan Transition, 10)
	failed := false
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !failed {
			failed = true
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		var tr Transition
		if err := json.NewDecoder(r.Body).Decode(&tr); err != nil || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad", 400)
			return
		}
		got <- tr
	})}
	go srv.Serve(ln)
	defer srv.Close()
	d := startDesk(t, storetest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "d.db")), func(c *Config) {
		c.Webhook = "http://" + ln.Addr().String() + "/hook"
	})
	d.st.Ingest(context.Background(), []Line{{"s", "l", 0, evLine(time.Now(), "192.0.2.9", "blaster", "strong", "tcp", "s", "")}})
	for _, a := range []string{"quarantine", "release", "close"} {
		if code, b := d.api(t, "POST", fmt.Sprintf("/api/v1/cases/1/%s", a), RoleAnalyst, []byte(`{"note":"n-`+a+`"}`)); code != 200 {
			t.Fatalf("%s: %d %s", a, code, b)
		}
	}
	for _, want := range []struct{ action, from, to string }{{"quarantine", "new", "quarantined"}, {"release", "quarantined", "released"}, {"close", "released", "closed"}} {
		select {
		case tr := <-got:
			if tr.Action != want.action || tr.From != want.from || tr.To != want.to || tr.Actor != "tok-analyst" || tr.Note != "n-"+want.action || tr.Case.Ticket != "WS-000001" {
				t.Fatalf("transition %+v, want %+v", tr, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no %s transition at the webhook", want.action)
		}
	}
}
