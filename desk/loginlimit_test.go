package desk

import (
	"testing"
	"time"

	"wormsink/internal/testutil"
	"wormsink/store/storetest"
)

// TestLoginRateLimitSharedByDesks: two desks on one PostgreSQL count
// failed logins (and unknown API tokens) together: failures spread across
// both reach the limit in both, and the limit lifts when its window ends.
func TestLoginRateLimitSharedByDesks(t *testing.T) {
	url, err := storetest.Cluster(t).NewDatabase()
	if err != nil {
		t.Fatal(err)
	}
	const window = 10 * time.Second // long enough for a loaded machine to try every login in it
	cfg := func(c *Config) { c.LoginWindow = window }
	d1 := startDesk(t, storetest.Open(t, url), cfg)
	d2 := startDesk(t, storetest.Open(t, url), cfg)
	d1.tokens = d2.tokens // the second desk's tokens replaced the first's

	start := time.Now()
	for i := range DefaultLoginTries {
		d := []*testDesk{d1, d2}[i%2]
		if _, code := login(t, d, "alice", "wrong password"); code != 401 {
			t.Fatalf("wrong password %d: %d", i, code)
		}
	}
	for i, d := range []*testDesk{d1, d2} {
		if _, code := login(t, d, "alice", testPassword); code != 429 {
			t.Fatalf("right password at desk %d after %d failures spread over two desks (in %s, the window is %s): %d, want 429",
				i+1, DefaultLoginTries, time.Since(start), window, code)
		}
	}
	// The window ends: the right password works again, at either desk.
	testutil.WaitFor(t, 30*time.Second, "the login limit to lift", func() bool {
		_, code := login(t, d2, "alice", testPassword)
		return code == 303 || code == 200
	})
	if time.Since(start) < window {
		t.Fatalf("the limit lifted after %s, before its %s window", time.Since(start), window)
	}

	// Unknown API tokens from one address count the same way.
	for i := range DefaultLoginTries {
		d := []*testDesk{d1, d2}[i%2]
		if code, _ := d.api(t, "GET", "/api/v1/stats", "", nil, "Authorization", "Bearer wsd_not-a-token"); code != 401 {
			t.Fatalf("unknown token %d: %d", i, code)
		}
	}
	for i, d := range []*testDesk{d1, d2} {
		if code, _ := d.api(t, "GET", "/api/v1/stats", RoleAnalyst, nil); code != 429 {
			t.Fatalf("a good token at desk %d after %d unknown ones spread over two desks: %d, want 429", i+1, DefaultLoginTries, code)
		}
	}
}
