package desk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"wormsink/internal/testutil"
	"wormsink/quarantine"
	"wormsink/store"
	"wormsink/store/storetest"
)

// testDesk is a desk on a loopback port with an admin, an analyst and a
// token of each role.
type testDesk struct {
	url    string
	st     *Store
	eng    *quarantine.Engine
	tokens map[string]string // role → token
}

const testPassword = "correct horse battery"

func startDesk(t testing.TB, db *store.DB, mod func(*Config)) *testDesk {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := quarantine.New(ctx, quarantine.Config{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: st, Quarantine: eng, Addr: "127.0.0.1:0"}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	d := &testDesk{url: srv.URL(), st: st, eng: eng, tokens: map[string]string{}}
	for _, u := range []struct{ name, role string }{{"alice", RoleAdmin}, {"bob", RoleAnalyst}} {
		if err := st.AddUser(ctx, u.name, u.role, testPassword); err != nil {
			t.Fatal(err)
		}
	}
	for _, role := range []string{RoleSensor, RoleAnalyst, RoleAdmin} {
		tok, err := st.AddToken(ctx, "tok-"+role, role)
		if err != nil {
			t.Fatal(err)
		}
		d.tokens[role] = tok
	}
	return d
}

func (d *testDesk) api(t testing.TB, method, path, role string, body []byte, hdr ...string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, d.url+path, bytes.NewReader(body))
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+d.tokens[role])
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestAPI(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		d := startDesk(t, db, nil)
		t0 := time.Now().Add(-time.Hour).UTC()
		var body bytes.Buffer
		body.Write(evLine(t0, "192.0.2.7", "blaster", "strong", "tcp", "s1", ""))
		body.WriteByte('\n')
		body.WriteString(`{"event":"start","level":"info"}` + "\n")
		body.Write(evLine(t0, "192.0.2.8", "sasser", "strong", "datagram", "s1", "cust-1"))
		body.WriteByte('\n')
		hdr := []string{HeaderLog, "log-1", HeaderOffset, "1000"}
		code, b := d.api(t, "POST", "/api/v1/evidence", RoleSensor, body.Bytes(), hdr...)
		if code != 200 || !strings.Contains(string(b), `"stored": 2`) {
			t.Fatalf("ingest: %d %s", code, b)
		}
		code, b = d.api(t, "POST", "/api/v1/evidence", RoleSensor, body.Bytes(), hdr...)
		if code != 200 || !strings.Contains(string(b), `"duplicate": 2`) {
			t.Fatalf("ingest again: %d %s", code, b)
		}
		// A sensor token may ship but not read cases; an analyst may not ship.
		if code, _ := d.api(t, "GET", "/api/v1/cases", RoleSensor, nil); code != 403 {
			t.Errorf("sensor token reads cases: %d", code)
		}
		if code, _ := d.api(t, "POST", "/api/v1/evidence", RoleAnalyst, body.Bytes()); code != 403 {
			t.Errorf("analyst token ships: %d", code)
		}
		code, b = d.api(t, "GET", "/api/v1/cases?proof=tcp", RoleAnalyst, nil)
		var list struct{ Cases []Case }
		if code != 200 || json.Unmarshal(b, &list) != nil || len(list.Cases) != 1 || list.Cases[0].Subject != "address:192.0.2.7" {
			t.Fatalf("cases: %d %s", code, b)
		}
		id := list.Cases[0].ID
		code, b = d.api(t, "POST", fmt.Sprintf("/api/v1/cases/%d/quarantine", id), RoleAnalyst, []byte(`{"note":"api"}`))
		if code != 200 || !strings.Contains(string(b), `"to": "quarantined"`) {
			t.Fatalf("quarantine: %d %s", code, b)
		}
		code, b = d.api(t, "POST", fmt.Sprintf("/api/v1/cases/%d/close", id), RoleAnalyst, nil)
		if code != 409 {
			t.Fatalf("close of a quarantined case: %d %s", code, b)
		}
		code, b = d.api(t, "GET", "/api/v1/cases/"+Ticket(id), RoleAnalyst, nil)
		var det CaseDetail
		if code != 200 || json.Unmarshal(b, &det) != nil || det.State != StateQuarantined || det.Ticket != Ticket(id) || len(det.Evidence) != 1 || len(det.Audit) != 2 || det.Audit[1].Actor != "tok-analyst" {
			t.Fatalf("case: %d %s", code, b)
		}
		code, b = d.api(t, "GET", "/api/v1/stats", RoleAnalyst, nil)
		if code != 200 || !strings.Contains(string(b), `"lines": 2`) {
			t.Fatalf("stats: %d %s", code, b)
		}
		if code, _ := d.api(t, "GET", "/api/v1/users", RoleAnalyst, nil); code != 403 {
			t.Errorf("analyst lists users: %d", code)
		}
		if code, _ := d.api(t, "POST", "/api/v1/users", RoleAnalyst, []byte(`{"name":"eve","role":"admin","password":"0123456789ab"}`)); code != 403 {
			t.Errorf("analyst adds a user: %d", code)
		}
		if code, b := d.api(t, "POST", "/api/v1/users", RoleAdmin, []byte(`{"name":"carol","role":"analyst","password":"0123456789ab"}`)); code != 201 {
			t.Errorf("admin adds a user: %d %s", code, b)
		}
		code, b = d.api(t, "GET", "/api/v1/users", RoleAdmin, nil)
		if code != 200 || !strings.Contains(string(b), `"carol"`) {
			t.Errorf("users: %d %s", code, b)
		}
	})
}

// TestNothingAnswersWithoutLogin: every page and API call but /healthz
// wants a session or a token.
func TestNothingAnswersWithoutLogin(t *testing.T) {
	d := startDesk(t, storetest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "d.db")), nil)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, c := range []struct{ method, path string }{
		{"GET", "/"}, {"GET", "/cases/1"}, {"GET", "/stats"}, {"GET", "/users"}, {"GET", "/nope"},
		{"POST", "/cases/1/act"}, {"POST", "/cases/bulk"}, {"POST", "/users"}, {"POST", "/logout"},
		{"GET", "/api/v1/cases"}, {"GET", "/api/v1/cases/1"}, {"POST", "/api/v1/cases/1/close"},
		{"POST", "/api/v1/evidence"}, {"GET", "/api/v1/stats"}, {"GET", "/api/v1/users"}, {"POST", "/api/v1/users"}, {"GET", "/api/v1/nope"},
	} {
		for _, auth := range []string{"", "Bearer wsd_forged", "Basic YWxpY2U6eA=="} {
			req, _ := http.NewRequest(c.method, d.url+c.path, strings.NewReader("x=1"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			req.AddCookie(&http.Cookie{Name: sessionCookie, Value: "forged"})
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusSeeOther && strings.HasPrefix(resp.Header.Get("Location"), "/login"):
			case resp.StatusCode == 401 || resp.StatusCode == 429:
			default:
				t.Errorf("%s %s (%q): %d without a login", c.method, c.path, auth, resp.StatusCode)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
				t.Errorf("%s %s: CSP %q", c.method, c.path, csp)
			}
		}
	}
	resp, err := http.Get(d.url + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", err, resp)
	}
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// browser is an HTTP client with a cookie jar that logs in through the
// form.
func login(t *testing.T, d *testDesk, name, pw string) (*http.Client, int) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Get(d.url + "/login")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfRe.FindSubmatch(b)
	if m == nil {
		t.Fatalf("login page without a CSRF token: %s", b)
	}
	resp, err = c.PostForm(d.url+"/login", url.Values{"csrf": {string(m[1])}, "name": {name}, "password": {pw}, "next": {"/"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return c, resp.StatusCode
}

func TestFormsNeedTheirCSRFToken(t *testing.T) {
	d := startDesk(t, storetest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "d.db")), nil)
	d.st.Ingest(context.Background(), []Line{{"s", "l", 0, evLine(time.Now(), "192.0.2.1", "blaster", "strong", "tcp", "s", "")}})
	c, code := login(t, d, "bob", testPassword)
	if code != 200 {
		t.Fatalf("login: %d", code)
	}
	resp, _ := c.Get(d.url + "/cases/1")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfRe.FindSubmatch(b)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("case page: %d", resp.StatusCode)
	}
	for _, form := range []url.Values{
		{"action": {"close"}},
		{"action": {"close"}, "csrf": {"wrong" + string(m[1])}},
	} {
		resp, err := c.PostForm(d.url+"/cases/1/act", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Fatalf("form without its token: %d", resp.StatusCode)
		}
	}
	if cs, _ := d.st.Get(context.Background(), 1); cs.State != StateNew {
		t.Fatalf("a forged form closed the case: %s", cs.State)
	}
	resp, err := c.PostForm(d.url+"/cases/1/act", url.Values{"action": {"close"}, "csrf": {string(m[1])}, "note": {"<script>x</script>"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "&lt;script&gt;x&lt;/script&gt;") || strings.Contains(string(b), "<script>x") {
		t.Fatalf("close with the token: %d (note escaped?)", resp.StatusCode)
	}
	// An analyst cannot open user management.
	resp, _ = c.Get(d.url + "/users")
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("analyst on /users: %d", resp.StatusCode)
	}
	// The login form itself wants its token.
	resp, err = http.PostForm(d.url+"/login", url.Values{"name": {"bob"}, "password": {testPassword}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("login without the form's token: %d", resp.StatusCode)
	}
}

func TestLoginRateLimit(t *testing.T) {
	d := startDesk(t, storetest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "d.db")), nil)
	for i := 0; i < DefaultLoginTries; i++ {
		if _, code := login(t, d, "alice", "wrong password"); code != 401 {
			t.Fatalf("wrong password %d: %d", i, code)
		}
	}
	if _, code := login(t, d, "alice", testPassword); code != 429 {
		t.Fatalf("right password after %d failures: %d, want 429", DefaultLoginTries, code)
	}
}

// TestTwoDesksOnOnePostgreSQL: an action taken in one desk is seen in the
// other, and both ingest into the same cases.
func TestTwoDesksOnOnePostgreSQL(t *testing.T) {
	url, err := storetest.Cluster(t).NewDatabase()
	if err != nil {
		t.Fatal(err)
	}
	d1 := startDesk(t, storetest.Open(t, url), nil)
	d2 := startDesk(t, storetest.Open(t, url), nil)
	d1.tokens = d2.tokens // the second desk's tokens replaced the first's in the shared database
	t0 := time.Now().Add(-time.Minute).UTC()
	for i, d := range []*testDesk{d1, d2} {
		line := evLine(t0.Add(time.Duration(i)*time.Second), "192.0.2.77", "blaster", "strong", "tcp", "s", "cust-77")
		if code, b := d.api(t, "POST", "/api/v1/evidence", RoleSensor, line, HeaderLog, "l", HeaderOffset, fmt.Sprint(i*1000)); code != 200 {
			t.Fatalf("ingest at desk %d: %d %s", i+1, code, b)
		}
	}
	code, b := d2.api(t, "GET", "/api/v1/cases?q=cust-77", RoleAnalyst, nil)
	var list struct{ Cases []Case }
	if code != 200 || json.Unmarshal(b, &list) != nil || len(list.Cases) != 1 || list.Cases[0].Lines != 2 {
		t.Fatalf("one case from both desks: %d %s", code, b)
	}
	id := list.Cases[0].ID
	if code, b := d1.api(t, "POST", fmt.Sprintf("/api/v1/cases/%d/quarantine", id), RoleAnalyst, []byte(`{"note":"from desk 1"}`)); code != 200 {
		t.Fatalf("quarantine at desk 1: %d %s", code, b)
	}
	code, b = d2.api(t, "GET", fmt.Sprintf("/api/v1/cases/%d", id), RoleAnalyst, nil)
	var det CaseDetail
	if code != 200 || json.Unmarshal(b, &det) != nil || det.State != StateQuarantined || det.Audit[len(det.Audit)-1].Note != "from desk 1" {
		t.Fatalf("desk 2 after desk 1 quarantined: %d %s", code, b)
	}
	// The quarantine desk 1 made is in the store desk 2's engine reads.
	testutil.WaitFor(t, 10*time.Second, "desk 2's quarantine engine to see the quarantine", func() bool {
		_, err := d2.eng.Get(context.Background(), quarantine.Subject{Kind: quarantine.Subscriber, ID: "cust-77"})
		return err == nil
	})
	if code, b := d2.api(t, "POST", fmt.Sprintf("/api/v1/cases/%d/release", id), RoleAnalyst, nil); code != 200 {
		t.Fatalf("release at desk 2: %d %s", code, b)
	}
	if c, err := d1.st.Get(context.Background(), id); err != nil || c.State != StateReleased {
		t.Fatalf("desk 1 after desk 2 released: %v %+v", err, c)
	}
}

// TestBulkAction: one form acts on every selected case; a case the action
// does not fit is named, the others are done.
func TestBulkAction(t *testing.T) {
	d := startDesk(t, storetest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "d.db")), nil)
	ctx := context.Background()
	for i, h := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		d.st.Ingest(ctx, []Line{{"s", "l", int64(i), evLine(time.Now(), h, "blaster", "strong", "tcp", "s", "")}})
	}
	if _, err := d.st.Act(ctx, d.eng, 3, ActQuarantine, "alice", ""); err != nil {
		t.Fatal(err)
	}
	c, _ := login(t, d, "bob", testPassword)
	resp, _ := c.Get(d.url + "/")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tok := csrfRe.FindSubmatch(b)[1]
	resp, err := c.PostForm(d.url+"/cases/bulk", url.Values{"csrf": {string(tok)}, "action": {"close"}, "note": {"bulk"}, "id": {"1", "2", "3"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 409 || !strings.Contains(string(b), "WS-000003") {
		t.Fatalf("bulk close with a quarantined case: %d", resp.StatusCode)
	}
	for id, want := range map[int64]string{1: StateClosed, 2: StateClosed, 3: StateQuarantined} {
		if cs, _ := d.st.Get(ctx, id); cs.State != want {
			t.Errorf("case %d: %s, want %s", id, cs.State, want)
		}
	}
}
