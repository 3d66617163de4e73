package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"wormsink/internal/testutil"
)

// startFreeRADIUS runs a real FreeRADIUS on a loopback port with its own
// configuration in a temporary directory: it takes accounting from NASes
// (radclient) with nasSecret, writes a detail file and replicates every
// request to wormsink at replicateTo with replSecret, re-signed, as an
// ISP's RADIUS server copies accounting to a collector. It returns its
// port and the detail file.
func startFreeRADIUS(t *testing.T, replicateTo int, nasSecret, replSecret string) (port int, detail string) {
	t.Helper()
	bin := needTool(t, "freeradius")
	dir := t.TempDir()
	for _, d := range []string{"radacct", "run", "log"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	port = freePort(t)
	if err := os.WriteFile(filepath.Join(dir, "dictionary"), []byte("$INCLUDE /usr/share/freeradius/dictionary\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = ${exec_prefix}/sbin
logdir = %[1]s/log
raddbdir = %[1]s
radacctdir = %[1]s/radacct
name = freeradius
confdir = ${raddbdir}
modconfdir = ${confdir}/mods-config
run_dir = %[1]s/run
db_dir = ${raddbdir}
libdir = /usr/lib/freeradius
pidfile = ${run_dir}/${name}.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 16384
hostname_lookups = no
log {
	destination = stdout
	auth = no
}
security {
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 1
	status_server = no
}
proxy_requests = yes
proxy server {
	default_fallback = no
}
home_server wormsink {
	type = acct
	ipaddr = 127.0.0.1
	port = %[2]d
	secret = %[4]s
	response_window = 5
	status_check = none
}
home_server_pool wormsink_pool {
	type = fail-over
	home_server = wormsink
}
realm wormsink {
	acct_pool = wormsink_pool
	nostrip
}
client local {
	ipaddr = 127.0.0.1
	secret = %[5]s
}
thread pool {
	start_servers = 1
	max_servers = 4
	min_spare_servers = 1
	max_spare_servers = 2
	max_requests_per_server = 0
}
modules {
	replicate {
	}
	detail {
		filename = ${radacctdir}/detail
		permissions = 0600
		header = "%%t"
	}
	always ok {
		rcode = ok
	}
}
server default {
	listen {
		type = acct
		ipaddr = 127.0.0.1
		port = %[3]d
	}
	preacct {
		ok
	}
	accounting {
		update control {
			&Replicate-To-Realm := "wormsink"
		}
		replicate
		detail
		ok
	}
}
`, dir, replicateTo, port, replSecret, nasSecret)
	if err := os.WriteFile(filepath.Join(dir, "radiusd.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var out lockedBuffer
	cmd := exec.Command(bin, "-f", "-d", dir, "-l", "stdout")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	waitFor(t, "FreeRADIUS ready", 20*time.Second, func() bool {
		select {
		case <-done:
			t.Fatalf("freeradius exited:\n%s", out.String())
		default:
		}
		return strings.Contains(out.String(), "Ready to process requests")
	})
	return port, filepath.Join(dir, "radacct", "detail")
}

// radclient sends one accounting request (attributes one per line, as
// radclient reads them) to port with secret and reports whether it was
// answered.
func radclient(t *testing.T, port int, secret string, attrs ...string) bool {
	t.Helper()
	bin := needTool(t, "radclient")
	cmd := exec.Command(bin, "-r", "1", "-t", "3", fmt.Sprintf("127.0.0.1:%d", port), "acct", secret)
	cmd.Stdin = strings.NewReader(strings.Join(attrs, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("radclient: %v\n%s", err, out)
		return false
	}
	return bytes.Contains(out, []byte("Received Accounting-Response"))
}

// tftpRRQ sends a TFTP read request for file from 127.0.0.x (src) to the
// sinkhole at port: a worm's request, from the subscriber's address.
func tftpRRQ(t *testing.T, src string, port int, file string) {
	t.Helper()
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(append(append([]byte{0, 1}, file...), append([]byte{0}, "octet\x00"...)...)); err != nil {
		t.Fatal(err)
	}
}

// linesOf returns the evidence lines of host (and port, 0: any) so far.
func linesOf(t *testing.T, log, host string, port int) []map[string]any {
	t.Helper()
	if _, err := os.Stat(log); err != nil {
		return nil
	}
	var out []map[string]any
	for _, l := range logLines(t, log) {
		if l["host"] == host && l["event"] != nil && (port == 0 || l["port"] == float64(port)) {
			out = append(out, l)
		}
	}
	return out
}

// waitLine waits for the n-th evidence line of host and returns it.
func waitLine(t *testing.T, log, host string, n int) map[string]any {
	t.Helper()
	var got []map[string]any
	waitFor(t, fmt.Sprintf("evidence line %d of %s", n, host), 20*time.Second, func() bool {
		got = linesOf(t, log, host, 0)
		return len(got) >= n
	})
	return got[n-1]
}

func TestAttributionFreeRADIUS(t *testing.T) {
	bin := wormsinkBinary(t)
	dir := t.TempDir()
	const nasSecret, replSecret = "nas-secret-e2e", "replicate-secret-e2e"
	secrets := filepath.Join(dir, "secrets")
	if err := os.WriteFile(secrets, []byte("127.0.0.1/32 "+replSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := "sqlite:" + filepath.Join(dir, "wormsink.db")
	acct := freePort(t)
	args := []string{"--radius-acct-listen", fmt.Sprintf("127.0.0.1:%d", acct), "--radius-secrets", secrets, "--db", db}
	p := startServe(t, bin, args...)
	frPort, detail := startFreeRADIUS(t, acct, nasSecret, replSecret)

	stored := func(n float64) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%v accounting records stored", n), 20*time.Second, func() bool {
			return p.metric(t, "wormsink_attribution_accounting_total") >= n
		})
	}
	const nas = "NAS-IP-Address = 192.0.2.10"
	const framed = "Framed-IP-Address = 127.0.0.5"
	if !radclient(t, frPort, nasSecret, `User-Name = "alice"`, "Acct-Status-Type = Start", `Acct-Session-Id = "sess-a"`, nas, framed) {
		t.Fatal("FreeRADIUS did not answer the Start")
	}
	stored(1)
	tftpRRQ(t, "127.0.0.5", p.tftp, "msblast.exe")
	if l := waitLine(t, p.log, "127.0.0.5", 1); l["subscriber"] != "alice" {
		t.Fatalf("first sighting: subscriber %v, want alice: %v", l["subscriber"], l)
	}

	// alice leaves, bob gets the address: new sightings are bob's, the
	// line already written stays alice's.
	radclient(t, frPort, nasSecret, `User-Name = "alice"`, "Acct-Status-Type = Stop", `Acct-Session-Id = "sess-a"`, nas, framed, "Acct-Session-Time = 60")
	radclient(t, frPort, nasSecret, `User-Name = "bob"`, "Acct-Status-Type = Start", `Acct-Session-Id = "sess-b"`, nas, framed)
	stored(3)
	tftpRRQ(t, "127.0.0.5", p.tftp, "msblast.exe")
	if l := waitLine(t, p.log, "127.0.0.5", 2); l["subscriber"] != "bob" {
		t.Fatalf("after the new Start: subscriber %v, want bob: %v", l["subscriber"], l)
	}
	if l := linesOf(t, p.log, "127.0.0.5", 0)[0]; l["subscriber"] != "alice" {
		t.Fatalf("the first line changed: %v", l)
	}

	// Forged: a wrong secret straight to wormsink, and a request from a
	// client the secrets file does not list, change nothing.
	if radclient(t, acct, "not-the-secret", `User-Name = "mallory"`, "Acct-Status-Type = Start", `Acct-Session-Id = "sess-m"`, nas, framed) {
		t.Fatal("wormsink answered a request signed with a wrong secret")
	}
	waitFor(t, "the forged request counted", 10*time.Second, func() bool {
		return p.metric(t, `wormsink_radius_requests_total{result="bad_authenticator"}`) >= 1
	})
	// Unsigned: an all-zero Request Authenticator.
	unsigned := []byte{4, 9, 0, 20 + 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9, 'm', 'a', 'l', 'l', 'o', 'r', 'y'}
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", acct))
	if err != nil {
		t.Fatal(err)
	}
	c.Write(unsigned)
	c.Close()
	waitFor(t, "the unsigned request counted", 10*time.Second, func() bool {
		return p.metric(t, `wormsink_radius_requests_total{result="bad_authenticator"}`) >= 2
	})
	tftpRRQ(t, "127.0.0.5", p.tftp, "msblast.exe")
	if l := waitLine(t, p.log, "127.0.0.5", 3); l["subscriber"] != "bob" {
		t.Fatalf("after forged requests: subscriber %v, want bob", l["subscriber"])
	}

	// Accounting-On: the NAS restarted, every session of it is over.
	radclient(t, frPort, nasSecret, "Acct-Status-Type = Accounting-On", nas)
	stored(4)
	tftpRRQ(t, "127.0.0.5", p.tftp, "msblast.exe")
	if l := waitLine(t, p.log, "127.0.0.5", 4); l["subscriber"] != nil {
		t.Fatalf("after Accounting-On: subscriber %v, want none", l["subscriber"])
	}
	p.stop(t)

	// Everything survives a restart: the answer comes from the store.
	bobLine := linesOf(t, p.log, "127.0.0.5", 0)[1]
	code, out, errOut := runCmd(t, "", "attribution", "who", "--db", db, "127.0.0.5", bobLine["time"].(string))
	if code != 0 || !strings.Contains(out, "subscriber: bob") {
		t.Fatalf("who after restart: exit %d, %q %q", code, out, errOut)
	}

	// The detail file FreeRADIUS wrote imports into a fresh store with the
	// same answers.
	db2 := "sqlite:" + filepath.Join(dir, "imported.db")
	code, out, errOut = runCmd(t, "", "attribution", "import", "--db", db2, "--radius-detail", detail)
	if code != 0 || !strings.Contains(out, "4 accounting records") {
		t.Fatalf("import: exit %d, %q %q", code, out, errOut)
	}
	firstLine := linesOf(t, p.log, "127.0.0.5", 0)[0]
	// The detail file has whole seconds: ask a second after the sightings.
	for _, c := range []struct {
		line map[string]any
		want string
	}{{firstLine, "alice"}, {bobLine, "bob"}} {
		at, _ := time.Parse(time.RFC3339Nano, c.line["time"].(string))
		code, out, errOut = runCmd(t, "", "attribution", "who", "--db", db2, "127.0.0.5", strconv.FormatInt(at.Unix(), 10))
		if code != 0 || !strings.Contains(out, "subscriber: "+c.want) {
			t.Errorf("who from the imported detail at %s: exit %d, %q %q, want %s", at, code, out, errOut, c.want)
		}
	}
}

// netns is a network namespace the test made; its name carries the
// test's name and pid so that parallel runs do not collide.
type netns string

func newNetns(t *testing.T, name string) netns {
	t.Helper()
	n := netns(fmt.Sprintf("attrib-%s-%d", name, os.Getpid()%100000))
	runTool(t, "ip", "netns", "add", string(n))
	t.Cleanup(func() { exec.Command("ip", "netns", "del", string(n)).Run() })
	runTool(t, "ip", "-n", string(n), "link", "set", "lo", "up")
	return n
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(needTool(t, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// veth links a in na with b in nb.
func veth(t *testing.T, na netns, a string, nb netns, b string) {
	t.Helper()
	runTool(t, "ip", "link", "add", a, "netns", string(na), "type", "veth", "peer", "name", b, "netns", string(nb))
	runTool(t, "ip", "-n", string(na), "link", "set", a, "up")
	runTool(t, "ip", "-n", string(nb), "link", "set", b, "up")
}

// sendFrom sends payload over UDP from srcPort inside namespace n to dst,
// with a socket made in n.
func sendFrom(t *testing.T, n netns, srcPort int, dst string, payload []byte) {
	t.Helper()
	err := testutil.Do(string(n), func() error {
		raddr, err := net.ResolveUDPAddr("udp", dst)
		if err != nil {
			return err
		}
		c, err := net.DialUDP("udp", &net.UDPAddr{Port: srcPort}, raddr)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(payload)
		return err
	})
	if err != nil {
		t.Fatalf("send from %s: %v", n, err)
	}
}

func TestAttributionConntrackNAT(t *testing.T) {
	bin := wormsinkBinary(t)
	ulogd := needTool(t, "ulogd")
	needTool(t, "nft")
	needTool(t, "ip")
	plugins, _ := filepath.Glob("/usr/lib/*/ulogd/ulogd_output_JSON.so")
	if len(plugins) == 0 {
		t.Fatal("ulogd2-json is not installed: run `make deps`")
	}
	pluginDir := filepath.Dir(plugins[0])
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	c1, c2, nat, srv := newNetns(t, "c1"), newNetns(t, "c2"), newNetns(t, "nat"), newNetns(t, "srv")
	veth(t, c1, "eth0", nat, "c1")
	veth(t, c2, "eth0", nat, "c2")
	veth(t, srv, "eth0", nat, "pub")
	for _, a := range [][]string{
		{"-n", string(c1), "addr", "add", "100.64.0.2/24", "dev", "eth0"},
		{"-n", string(c1), "route", "add", "default", "via", "100.64.0.1"},
		{"-n", string(c2), "addr", "add", "100.64.1.2/24", "dev", "eth0"},
		{"-n", string(c2), "route", "add", "default", "via", "100.64.1.1"},
		{"-n", string(nat), "addr", "add", "100.64.0.1/24", "dev", "c1"},
		{"-n", string(nat), "addr", "add", "100.64.1.1/24", "dev", "c2"},
		{"-n", string(nat), "addr", "add", "198.51.100.1/24", "dev", "pub"},
		{"-n", string(srv), "addr", "add", "198.51.100.2/24", "dev", "eth0"},
	} {
		runTool(t, "ip", a...)
	}
	runTool(t, "ip", "netns", "exec", string(nat), "sysctl", "-qw", "net.ipv4.ip_forward=1")
	runTool(t, "ip", "netns", "exec", string(nat), "nft", `add table ip wsnat; add chain ip wsnat post { type nat hook postrouting priority srcnat; }; add rule ip wsnat post oifname "pub" masquerade`)
	// Timestamps on the conntrack entries (flow.start, flow.end): set now
	// that conntrack is loaded in the namespace.
	runTool(t, "ip", "netns", "exec", string(nat), "sysctl", "-qw", "net.netfilter.nf_conntrack_timestamp=1")

	natLog := filepath.Join(dir, "ulogd.json")
	conf := fmt.Sprintf(`[global]
logfile="%[1]s/ulogd.log"
loglevel=3
plugin="%[3]s/ulogd_inpflow_NFCT.so"
plugin="%[3]s/ulogd_filter_IP2STR.so"
plugin="%[3]s/ulogd_output_JSON.so"
stack=ct1:NFCT,ip2str1:IP2STR,json1:JSON

[ct1]
hash_enable=0

[json1]
file="%[2]s"
sync=1
`, dir, natLog, pluginDir)
	if err := os.WriteFile(filepath.Join(dir, "ulogd.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ul := exec.Command("ip", "netns", "exec", string(nat), ulogd, "-c", filepath.Join(dir, "ulogd.conf"))
	var ulOut lockedBuffer
	ul.Stdout, ul.Stderr = &ulOut, &ulOut
	if err := ul.Start(); err != nil {
		t.Fatal(err)
	}
	ulDone := make(chan struct{})
	go func() { ul.Wait(); close(ulDone) }()
	t.Cleanup(func() { ul.Process.Kill(); <-ulDone })
	waitFor(t, "ulogd ready", 20*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "ulogd.log"))
		return bytes.Contains(b, []byte("entering main loop"))
	})

	subs := filepath.Join(dir, "subscribers")
	os.WriteFile(subs, []byte("100.64.0.0/24 customer-a\n100.64.1.0/24 customer-b\n"), 0o644)
	evLog := filepath.Join(dir, "evidence.jsonl")
	// serve in the server's namespace: it sees the customers only through
	// the NAT, as the public address and port.
	sv := exec.Command("ip", "netns", "exec", string(srv), bin, "serve", "--dns-listen", "", "--tftp-listen", "198.51.100.2:69",
		"--user", "", "--log", evLog, "--sensor", "e2e", "--watch-interval", "0",
		"--db", "sqlite:"+filepath.Join(dir, "wormsink.db"), "--subscribers", subs, "--nat-log", "ulogd-json:"+natLog)
	var svOut lockedBuffer
	sv.Stdout, sv.Stderr = &svOut, &svOut
	if err := sv.Start(); err != nil {
		t.Fatal(err)
	}
	svDone := make(chan struct{})
	go func() { sv.Wait(); close(svDone) }()
	t.Cleanup(func() { sv.Process.Kill(); <-svDone })
	waitFor(t, "serve started", 20*time.Second, func() bool {
		b, _ := os.ReadFile(evLog)
		return bytes.Contains(b, []byte(`"event":"start"`))
	})

	rrq := append(append([]byte{0, 1}, "msblast.exe"...), append([]byte{0}, "octet\x00"...)...)
	// customer-a first, then customer-b from the same inside port: the
	// NAT keeps a's port (free) and must move b's, so both share the
	// public address and only the port tells them apart.
	sendFrom(t, c1, 40000, "198.51.100.2:69", rrq)
	var a map[string]any
	waitFor(t, "customer-a's sighting", 20*time.Second, func() bool {
		ls := linesOf(t, evLog, "198.51.100.1", 0)
		if len(ls) > 0 {
			a = ls[0]
		}
		return a != nil
	})
	sendFrom(t, c2, 40000, "198.51.100.2:69", rrq)
	var b map[string]any
	waitFor(t, "customer-b's sighting", 20*time.Second, func() bool {
		for _, l := range linesOf(t, evLog, "198.51.100.1", 0) {
			if l["port"] != a["port"] {
				b = l
			}
		}
		return b != nil
	})
	if a["port"] != float64(40000) {
		t.Fatalf("customer-a's public port %v, want 40000 (masquerade keeps a free port)", a["port"])
	}
	if a["subscriber"] != "customer-a" || a["nat_inside"] != "100.64.0.2:40000" {
		t.Errorf("public :40000 attributed to %v (inside %v), want customer-a (100.64.0.2:40000): %v", a["subscriber"], a["nat_inside"], a)
	}
	if b["subscriber"] != "customer-b" || b["nat_inside"] != "100.64.1.2:40000" {
		t.Errorf("public :%v attributed to %v (inside %v), want customer-b (100.64.1.2:40000): %v", b["port"], b["subscriber"], b["nat_inside"], b)
	}
	if t.Failed() {
		nl, _ := os.ReadFile(natLog)
		t.Logf("NAT log:\n%s\nserve:\n%s", nl, svOut.String())
	}

	// The bindings are in the store: who answers after serve is gone.
	sv.Process.Signal(unix.SIGTERM)
	<-svDone
	for _, l := range []map[string]any{a, b} {
		code, out, errOut := runCmd(t, "", "attribution", "who", "--db", "sqlite:"+filepath.Join(dir, "wormsink.db"), "--subscribers", subs,
			fmt.Sprintf("198.51.100.1:%v", l["port"]), l["time"].(string))
		if code != 0 || !strings.Contains(out, "subscriber: "+l["subscriber"].(string)) {
			t.Errorf("who 198.51.100.1:%v: exit %d %q %q", l["port"], code, out, errOut)
		}
	}
	// Without the port the address names two customers: never a guess.
	code, out, _ := runCmd(t, "", "attribution", "who", "--db", "sqlite:"+filepath.Join(dir, "wormsink.db"), "--subscribers", subs,
		"198.51.100.1", b["time"].(string))
	if code == 0 || !strings.Contains(out, "subscriber_candidates: 2") {
		t.Errorf("who without a port: exit %d %q, want 2 candidates", code, out)
	}
}

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
