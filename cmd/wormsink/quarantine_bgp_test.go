package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wormsink/internal/testutil"
	"wormsink/quarantine"
)

// Quarantined addresses reach BIRD 2 and FRR peers as /32 routes with the
// configured community within two seconds, and leave them on release.
func TestServeQuarantineBGP(t *testing.T) {
	bin := wormsinkBinary(t)
	bird := testutil.StartBIRD(t, "wsqbird", 65000)
	frr := testutil.StartFRR(t, "wsqfrr", 65000, "100.64.5.5/32")
	up := startUnbound(t, "www.example.net. 60 IN A 192.0.2.10")
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	os.WriteFile(policy, []byte(quarantinePolicy), 0o644)
	db := "sqlite:" + filepath.Join(dir, "wormsink.db")
	p := startServe(t, bin, "--upstream", up, "--db", db, "--quarantine-policy", policy, "--notice-ip", "127.0.0.80",
		"--bgp-asn", "65000", "--bgp-router-id", "10.201.0.1",
		"--bgp-neighbor", fmt.Sprintf("%s@%d", bird.Addr, bird.ASN), "--bgp-neighbor", fmt.Sprintf("%s@%d", frr.Addr, frr.ASN),
		"--bgp-community", "65535:666", "--bgp-community", "64512:7")
	waitFor(t, "both BGP sessions", 60*time.Second, func() bool { return p.metric(t, "wormsink_bgp_sessions_up") == 2 })

	start := time.Now()
	if out, err := exec.Command(bin, "quarantine", "add", "100.64.5.5", "--db", db, "--family", "Blaster", "--note", "test").CombinedOutput(); err != nil {
		t.Fatalf("quarantine add: %v\n%s", err, out)
	}
	bird.WaitRoutes(t, false, "100.64.5.5/32")
	frr.WaitRoutes(t, false, "100.64.5.5/32")
	d := time.Since(start)
	t.Logf("quarantine to route at both peers: %v", d)
	// A change made by another process (here the command line) reaches
	// serve at its next read of the store (quarantine.DefaultPoll); the
	// 2 s goal starts there.
	if d > 2*time.Second+quarantine.DefaultPoll {
		t.Errorf("the route took %v to reach the peers (goal 2 s after serve sees the change)", d)
	}
	if out := bird.Show(); !strings.Contains(out, "(65535,666)") || !strings.Contains(out, "(64512,7)") {
		t.Errorf("BIRD: communities missing:\n%s", out)
	}
	if out := frr.Show(); !strings.Contains(out, "blackhole") || !strings.Contains(out, "64512:7") {
		t.Errorf("FRR: communities missing:\n%s", out)
	}
	if n := p.metric(t, "wormsink_bgp_routes_announced"); n != 1 {
		t.Errorf("wormsink_bgp_routes_announced %v", n)
	}

	start = time.Now()
	if out, err := exec.Command(bin, "quarantine", "release", "100.64.5.5", "--db", db).CombinedOutput(); err != nil {
		t.Fatalf("quarantine release: %v\n%s", err, out)
	}
	bird.WaitRoutes(t, true, "100.64.5.5/32")
	frr.WaitRoutes(t, true, "100.64.5.5/32")
	d = time.Since(start)
	t.Logf("release to withdrawal at both peers: %v", d)
	if d > 2*time.Second+quarantine.DefaultPoll {
		t.Errorf("the withdrawal took %v (goal 2 s after serve sees the change)", d)
	}
}
