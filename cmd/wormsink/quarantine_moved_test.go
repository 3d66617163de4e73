package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A quarantined subscriber's quarantine follows them: radclient sends the
// RADIUS Start of alice's new session on a new framed address, and by the
// time the Accounting-Response comes back the walled garden is on the new
// address and off the old one (now bob's).
func TestServeQuarantineFollowsRADIUSStart(t *testing.T) {
	bin := wormsinkBinary(t)
	needTool(t, "dig")
	needTool(t, "radclient")
	up := startUnbound(t, "www.example.net. 60 IN A 192.0.2.10")
	dir := t.TempDir()
	sigs := filepath.Join(dir, "sigs.yaml")
	os.WriteFile(sigs, []byte(fmt.Sprintf(storySigs, 1, "worm.example")), 0o644)
	policy := filepath.Join(dir, "policy.yaml")
	os.WriteFile(policy, []byte(quarantinePolicy), 0o644)
	const secret = "moved-secret-e2e"
	secrets := filepath.Join(dir, "secrets")
	if err := os.WriteFile(secrets, []byte("127.0.0.1/32 "+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := "sqlite:" + filepath.Join(dir, "wormsink.db")
	acct := freePort(t)
	p := startServe(t, bin, "--upstream", up, "--signatures", sigs, "--db", db, "--quarantine-policy", policy,
		"--notice-ip", "127.0.0.80", "--radius-acct-listen", fmt.Sprintf("127.0.0.1:%d", acct), "--radius-secrets", secrets)
	a := func(from string) string {
		t.Helper()
		_, ans := p.dig(t, from, "www.example.net", "A")
		return strings.Join(ans, ",")
	}
	const nas = "NAS-IP-Address = 192.0.2.1"
	start := func(user, session, framed string) {
		t.Helper()
		if !radclient(t, acct, secret, `User-Name = "`+user+`"`, "Acct-Status-Type = Start", `Acct-Session-Id = "`+session+`"`, nas, "Framed-IP-Address = "+framed) {
			t.Fatalf("no Accounting-Response to the Start of %s on %s", user, framed)
		}
	}
	start("alice", "s1", "127.0.0.21")

	// alice's worm asks over TCP: strong, proof tcp, attributed to alice.
	out, err := exec.Command("dig", "-b", "127.0.0.21", "-p", fmt.Sprint(p.dns), "@127.0.0.1", "+tcp", "+time=3", "worm.example", "A").CombinedOutput()
	if err != nil {
		t.Fatalf("dig +tcp: %v\n%s", err, out)
	}
	waitFor(t, "the walled garden on alice's first address", 10*time.Second, func() bool { return a("127.0.0.21") == "127.0.0.80" })
	if got := a("127.0.0.22"); got != "192.0.2.10" {
		t.Fatalf("127.0.0.22 before alice has it: %q", got)
	}

	// alice reconnects on 127.0.0.22; bob gets her old address.
	radclient(t, acct, secret, `User-Name = "alice"`, "Acct-Status-Type = Stop", `Acct-Session-Id = "s1"`, nas, "Framed-IP-Address = 127.0.0.21", "Acct-Session-Time = 60")
	start("alice", "s2", "127.0.0.22")
	start("bob", "s3", "127.0.0.21")
	// Moved runs before the answer: poll anyway, the checks are what count.
	waitFor(t, "the walled garden on alice's new address", 5*time.Second, func() bool { return a("127.0.0.22") == "127.0.0.80" })
	if got := a("127.0.0.21"); got != "192.0.2.10" {
		t.Errorf("alice's old address, now bob's, still in the walled garden: %q", got)
	}
	list, err := exec.Command(bin, "quarantine", "list", "--db", db).CombinedOutput()
	if err != nil || !strings.Contains(string(list), "subscriber:alice") || !strings.Contains(string(list), "127.0.0.22") || strings.Contains(string(list), "127.0.0.21") {
		t.Errorf("quarantine list: %v\n%s", err, list)
	}
	show, _ := exec.Command(bin, "quarantine", "show", "subscriber:alice", "--db", db).CombinedOutput()
	if !strings.Contains(string(show), "moved") || !strings.Contains(string(show), "127.0.0.22") {
		t.Errorf("audit trail lacks the move:\n%s", show)
	}
	// A Start of a subscriber nobody quarantined changes nothing.
	start("carol", "s4", "127.0.0.23")
	if got := a("127.0.0.23"); got != "192.0.2.10" {
		t.Errorf("carol: %q", got)
	}
}
