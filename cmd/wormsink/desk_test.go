package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"wormsink/internal/testutil"
)

// TestDeskCommands: accounts from the command line, the desk and a
// shipper as the commands run them, and the refusals of plain HTTP off
// loopback.
func TestDeskCommands(t *testing.T) {
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "desk.db")
	runIn := func(stdin string, args ...string) (int, string, string) {
		var out, errb strings.Builder
		code := run(context.Background(), env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb}, args)
		return code, out.String(), errb.String()
	}
	if code, _, stderr := runIn("short\n", "desk", "user", "add", "alice", "--role", "admin", "--db", db); code != exitFailure || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("short password: %d %q", code, stderr)
	}
	if code, _, stderr := runIn("a long passphrase\n", "desk", "user", "add", "alice", "--role", "root", "--db", db); code != exitFailure || !strings.Contains(stderr, "want analyst or admin") {
		t.Fatalf("bad role: %d %q", code, stderr)
	}
	if code, out, stderr := runIn("a long passphrase\n", "desk", "user", "add", "alice", "--role", "admin", "--db", db); code != 0 {
		t.Fatalf("user add: %d %s %s", code, out, stderr)
	}
	code, tok, stderr := runIn("", "desk", "token", "add", "pop1", "--role", "sensor", "--db", db)
	if code != 0 || !regexp.MustCompile(`^wsd_[A-Za-z0-9_-]{43}\n$`).MatchString(tok) {
		t.Fatalf("token add: %d %q %s", code, tok, stderr)
	}
	_, analyst, _ := runIn("", "desk", "token", "add", "ticket-system", "--role", "analyst", "--db", db)
	for _, args := range [][]string{
		{"desk", "--listen", "0.0.0.0:0", "--db", db},
		{"ship", "--to", "http://192.0.2.1:8080", "--token-file", "x", "log"},
		{"desk", "--contacts", "c", "--db", db},
		{"desk", "--subscribers", "s", "--db", db},
	} {
		if code, _, stderr := runIn("", args...); code != exitUsage || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: %d %q", args, code, stderr)
		}
	}

	// A broken notice template stops the desk at start, naming its file and line.
	tmpl := filepath.Join(dir, "templates")
	os.Mkdir(tmpl, 0o755)
	os.WriteFile(filepath.Join(tmpl, "blaster.en.tmpl"), []byte("Subject: {{.Ticket}}\n\nDear {{.Customer}}\n"), 0o644)
	if code, _, stderr := runIn("", "desk", "--listen", "127.0.0.1:0", "--db", db, "--smtp", "smtp://127.0.0.1:25", "--templates", tmpl); code != exitFailure ||
		strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, filepath.Join(tmpl, "blaster.en.tmpl")+":3: ") {
		t.Errorf("broken template: %d %q", code, stderr)
	}

	// A bad line in the subscribers file stops the desk at start with FILE:LINE.
	subsFile := filepath.Join(dir, "subscribers")
	os.WriteFile(subsFile, []byte("192.0.2.0/24 cust-1 cust1@example.net\n198.51.100.0/24 cust-2 not-an-address\n"), 0o644)
	if code, _, stderr := runIn("", "desk", "--listen", "127.0.0.1:0", "--db", db, "--smtp", "smtp://127.0.0.1:25", "--subscribers", subsFile); code != exitFailure ||
		strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, subsFile+":2: ") {
		t.Errorf("bad subscribers file: %d %q", code, stderr)
	}

	// The desk and a shipper, as the commands start them.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	deskOut := &testutil.SyncBuffer{}
	deskDone := make(chan int)
	go func() {
		deskDone <- run(ctx, env{stdin: strings.NewReader(""), stdout: deskOut, stderr: &testutil.SyncBuffer{}}, []string{"desk", "--listen", "127.0.0.1:0", "--db", db})
	}()
	var url string
	testutil.WaitFor(t, 20*time.Second, "the desk's banner", func() bool {
		m := regexp.MustCompile(`(http://127\.0\.0\.1:\d+)/`).FindStringSubmatch(deskOut.String())
		if m != nil {
			url = m[1]
		}
		return m != nil
	})
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte(tok), 0o600)
	logFile := filepath.Join(dir, "evidence.jsonl")
	os.WriteFile(logFile, []byte(`{"time":"2026-12-01T10:00:00.000Z","event":"tftp_request","host":"192.0.2.44","port":4444,"signature":"blaster-tftp","family":"blaster","evidence":"strong","proof":"exchange","count":1,"sensor":"pop1"}`+"\n"), 0o644)
	shipDone := make(chan int)
	go func() {
		shipDone <- run(ctx, env{stdin: strings.NewReader(""), stdout: &testutil.SyncBuffer{}, stderr: &testutil.SyncBuffer{}},
			[]string{"ship", "--to", url, "--token-file", tokenFile, logFile})
	}()
	var got struct {
		Cases []struct{ Subject, State, Ticket string }
	}
	testutil.WaitFor(t, 20*time.Second, "the shipped line's case", func() bool {
		req, _ := http.NewRequest("GET", url+"/api/v1/cases", nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(analyst))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&got) == nil && len(got.Cases) == 1
	})
	if c := got.Cases[0]; c.Subject != "address:192.0.2.44" || c.State != "new" || c.Ticket != "WS-000001" {
		t.Fatalf("case %+v", c)
	}
	// serve --ship-to ships its own log with the same code.
	p := startServe(t, wormsinkBinary(t), "--ship-to", url, "--ship-token-file", tokenFile, "--upstream", "127.0.0.1:9")
	if status, _ := p.dig(t, "127.0.0.3", "windowsupdate.com", "A"); status != "NXDOMAIN" {
		t.Fatalf("dig: %s", status)
	}
	testutil.WaitFor(t, 30*time.Second, "serve's sighting as a case at the desk", func() bool {
		req, _ := http.NewRequest("GET", url+"/api/v1/cases?q=127.0.0.3", nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(analyst))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&got) == nil && len(got.Cases) == 1
	})
	cancel()
	if code := <-shipDone; code != 0 {
		t.Errorf("ship exited %d", code)
	}
	if code := <-deskDone; code != 0 {
		t.Errorf("desk exited %d", code)
	}
	if _, err := os.Stat(filepath.Join(dir, ".evidence.jsonl.ship")); err != nil {
		t.Errorf("no ship state beside the log: %v", err)
	}
}
