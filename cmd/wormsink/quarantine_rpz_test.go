package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wormsink/internal/testutil"
)

// gardenPolicy quarantines by hand only in these tests; windowsupdate.com
// stays reachable.
const gardenPolicy = `allow:
  - windowsupdate.com
self_release:
  max: 1
  grace: 1m
`

// The walled garden in the ISP's own resolvers: BIND and Unbound follow
// the three policy zones (allow, signatures, garden) as secondaries. The
// abuse team quarantines 127.0.0.21 from the command line: through NOTIFY
// and IXFR both resolvers answer its ordinary names with the notice
// address, still resolve its allowlisted name, still sinkhole the worm's
// name, and leave its neighbour 127.0.0.22 alone; released, it resolves
// normally again.
func TestQuarantineRPZWithBINDAndUnbound(t *testing.T) {
	bin := wormsinkBinary(t)
	needTool(t, "dig")
	dir := t.TempDir()
	auth := startAuth(t) // every A is 198.51.100.1
	sigs := filepath.Join(dir, "sigs.yaml")
	os.WriteFile(sigs, []byte(feedSigs(2026120101, "worm.example", "bad.windowsupdate.com")), 0o644)
	policy := filepath.Join(dir, "policy.yaml")
	os.WriteFile(policy, []byte(gardenPolicy), 0o644)
	db := "sqlite:" + filepath.Join(dir, "wormsink.db")
	primary := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ubPort, bindPort := freePort(t), freePort(t)
	startServe(t, bin, "--dns-listen", "", "--tftp-listen", "", "--signatures", sigs, "--sinkhole-ip", "192.0.2.66",
		"--db", db, "--quarantine-policy", policy, "--notice-ip", "192.0.2.80",
		"--rpz-listen", primary, "--rpz-allow", "127.0.0.1/32,127.0.0.3/32",
		"--rpz-notify", fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d", ubPort, bindPort))
	for _, d := range []string{"unbound", "bind"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	ub := startUnboundGarden(t, filepath.Join(dir, "unbound"), ubPort, auth, primary)
	bind := startBINDGarden(t, filepath.Join(dir, "bind"), bindPort, auth, primary)
	resolvers := []*resolverProc{ub, bind}
	for _, r := range resolvers {
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s log:\n%s", r.Name, r.Log())
			}
		})
	}
	a := func(r *resolverProc, from, name string) string {
		_, ans := r.ask(t, from, name)
		return strings.Join(ans, ",")
	}
	for _, r := range resolvers {
		waitFor(t, r.Name+" sinkholing worm.example", 30*time.Second, func() bool { return a(r, "127.0.0.21", "worm.example") == "192.0.2.66" })
		if got := a(r, "127.0.0.21", "www.example.net"); got != "198.51.100.1" {
			t.Fatalf("%s before the quarantine: %q", r.Name, got)
		}
	}

	if out, err := exec.Command(bin, "quarantine", "add", "127.0.0.21", "--family", "Conficker", "--db", db, "--note", "rpz test").CombinedOutput(); err != nil {
		t.Fatalf("quarantine add: %v\n%s", err, out)
	}
	added := time.Now()
	for _, r := range resolvers {
		waitFor(t, r.Name+" walled garden for 127.0.0.21", 30*time.Second, func() bool { return a(r, "127.0.0.21", "www.example.net") == "192.0.2.80" })
		t.Logf("%s: quarantine add to walled garden %v", r.Name, time.Since(added).Round(time.Millisecond))
		for _, c := range []struct{ from, name, want, what string }{
			{"127.0.0.21", "other.example.org", "192.0.2.80", "an ordinary name"},
			{"127.0.0.21", "download.windowsupdate.com", "198.51.100.1", "an allowlisted name"},
			{"127.0.0.21", "windowsupdate.com", "198.51.100.1", "the allowlisted name itself"},
			{"127.0.0.21", "worm.example", "192.0.2.66", "the worm's name"},
			{"127.0.0.21", "bad.windowsupdate.com", "192.0.2.66", "a worm's name below an allowlisted one"},
			{"127.0.0.22", "www.example.net", "198.51.100.1", "the neighbour's lookup"},
			{"127.0.0.22", "worm.example", "192.0.2.66", "the neighbour's worm lookup"},
		} {
			if got := a(r, c.from, c.name); got != c.want {
				t.Errorf("%s, %s from %s (%s): %q, want %q", r.Name, c.name, c.from, c.what, got, c.want)
			}
		}
	}

	if out, err := exec.Command(bin, "quarantine", "release", "127.0.0.21", "--db", db, "--note", "clean").CombinedOutput(); err != nil {
		t.Fatalf("quarantine release: %v\n%s", err, out)
	}
	released := time.Now()
	for _, r := range resolvers {
		waitFor(t, r.Name+" releasing 127.0.0.21", 30*time.Second, func() bool { return a(r, "127.0.0.21", "www.example.net") == "198.51.100.1" })
		t.Logf("%s: release to normal answers %v", r.Name, time.Since(released).Round(time.Millisecond))
		if got := a(r, "127.0.0.21", "worm.example"); got != "192.0.2.66" {
			t.Errorf("%s after the release, the worm's name: %q", r.Name, got)
		}
	}
}

// startUnboundGarden runs Unbound following the three zones, in order.
func startUnboundGarden(t *testing.T, dir string, port int, auth, primary string) *resolverProc {
	t.Helper()
	host, aport, _ := net.SplitHostPort(auth)
	phost, pport, _ := net.SplitHostPort(primary)
	var zones strings.Builder
	for _, z := range []string{"allow.rpz.wormsink.", "rpz.wormsink.", "garden.rpz.wormsink."} {
		fmt.Fprintf(&zones, "rpz:\n  name: %s\n  primary: %s@%s\n  allow-notify: 127.0.0.1\n  zonefile: %q\n", z, phost, pport, filepath.Join(dir, z+"zone"))
	}
	conf := testutil.UnboundConf(port, dir, `  verbosity: 1
  module-config: "respip iterator"
  do-not-query-localhost: no
  qname-minimisation: no
`, fmt.Sprintf("forward-zone:\n  name: \".\"\n  forward-addr: %s@%s\n%s", host, aport, zones.String()))
	path := filepath.Join(dir, "unbound.conf")
	os.WriteFile(path, []byte(conf), 0o644)
	if out, err := exec.Command(needTool(t, "unbound-checkconf"), path).CombinedOutput(); err != nil {
		t.Fatalf("unbound-checkconf: %v\n%s", err, out)
	}
	return startResolver(t, "unbound", port, needTool(t, "unbound"), testutil.UnboundArgs(path)...)
}

// startBINDGarden runs BIND following the three zones, in order.
func startBINDGarden(t *testing.T, dir string, port int, auth, primary string) *resolverProc {
	t.Helper()
	host, aport, _ := net.SplitHostPort(auth)
	phost, pport, _ := net.SplitHostPort(primary)
	var zones strings.Builder
	for _, z := range []string{"allow.rpz.wormsink", "rpz.wormsink", "garden.rpz.wormsink"} {
		fmt.Fprintf(&zones, "zone %q {\n\ttype secondary;\n\tprimaries { %s port %s; };\n\tfile %q;\n\tallow-notify { 127.0.0.1; };\n};\n", z, phost, pport, z+".db")
	}
	conf := testutil.NamedConf(port, dir, fmt.Sprintf(`	recursion yes;
	allow-query { 127.0.0.0/8; };
	forwarders { %s port %s; };
	forward only;
	transfer-source 127.0.0.3;
	notify no;
	response-policy {
		zone "allow.rpz.wormsink" min-update-interval 0;
		zone "rpz.wormsink" min-update-interval 0;
		zone "garden.rpz.wormsink" min-update-interval 0;
	} qname-wait-recurse no;
`, host, aport), zones.String())
	path := filepath.Join(dir, "named.conf")
	os.WriteFile(path, []byte(conf), 0o644)
	if out, err := exec.Command(needTool(t, "named-checkconf"), path).CombinedOutput(); err != nil {
		t.Fatalf("named-checkconf: %v\n%s", err, out)
	}
	return startResolver(t, "bind", port, needTool(t, "named"), append([]string{"-d", "3"}, testutil.NamedArgs(path)...)...)
}

// The garden zone needs somewhere to send quarantined clients: without
// --notice-ip serve refuses to start, in one line.
func TestQuarantineRPZNeedsNoticeIP(t *testing.T) {
	bin := wormsinkBinary(t)
	dir := t.TempDir()
	sigs := filepath.Join(dir, "sigs.yaml")
	os.WriteFile(sigs, []byte(feedSigs(2026120101, "worm.example")), 0o644)
	policy := filepath.Join(dir, "policy.yaml")
	os.WriteFile(policy, []byte(gardenPolicy), 0o644)
	out, err := exec.Command(bin, "serve", "--dns-listen", "", "--tftp-listen", "", "--signatures", sigs, "--sinkhole-ip", "192.0.2.66",
		"--db", "sqlite:"+filepath.Join(dir, "wormsink.db"), "--quarantine-policy", policy, "--rpz-listen", "127.0.0.1:0",
		"--log", filepath.Join(dir, "log"), "--user", "").CombinedOutput()
	if err == nil || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 || !strings.Contains(string(out), "--rpz-listen needs --notice-ip") {
		t.Fatalf("serve without --notice-ip: %v\n%s", err, out)
	}
}
