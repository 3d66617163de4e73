package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"wormsink/internal/testutil"
	"wormsink/signatures/feed"
)

// The signed signature feed with the real parts: nginx from Debian serves
// the feed, wormsink sigs sign publishes it, serve --sigs-url follows it
// and dig asks the DNS shim for the names each release lists.

// nginxProc is nginx serving dir/www on a loopback port, with an access
// log of "msec status request" lines the tests count requests in.
type nginxProc struct {
	dir, www string
	port     int
	tlsPort  int
	cmd      *exec.Cmd
	done     chan struct{}
	mtime    time.Time // the next publish's mtime: validators must change with content
}

// startNginx runs nginx in the foreground, as one process (master_process
// off), with every path it writes inside a temporary directory. A file
// www/ratelimit makes it answer 429 with Retry-After: 3. With tls, it
// also serves HTTPS on tlsPort with a certificate from a private CA.
func startNginx(t *testing.T, tls *tlsFiles) *nginxProc {
	t.Helper()
	bin := needTool(t, "nginx")
	dir := t.TempDir()
	n := &nginxProc{dir: dir, www: filepath.Join(dir, "www"), port: freePort(t), done: make(chan struct{}),
		mtime: time.Now().Add(-time.Hour).Truncate(time.Second)}
	os.MkdirAll(n.www, 0o755)
	os.MkdirAll(filepath.Join(dir, "tmp"), 0o755)
	tlsConf := ""
	if tls != nil {
		n.tlsPort = freePort(t)
		tlsConf = fmt.Sprintf("listen 127.0.0.1:%d ssl;\n    ssl_certificate %s;\n    ssl_certificate_key %s;", n.tlsPort, tls.cert, tls.key)
	}
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
  log_format feed '$msec $status "$request" $body_bytes_sent';
  access_log %[1]s/access.log feed;
  client_body_temp_path %[1]s/tmp/body;
  proxy_temp_path %[1]s/tmp/proxy;
  fastcgi_temp_path %[1]s/tmp/fastcgi;
  uwsgi_temp_path %[1]s/tmp/uwsgi;
  scgi_temp_path %[1]s/tmp/scgi;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:%[2]d;
    %[3]s
    root %[1]s/www;
    location / {
      if (-f %[1]s/www/ratelimit) {
        add_header Retry-After 3 always;
        return 429;
      }
    }
  }
}
`, dir, n.port, tlsConf)
	cf := filepath.Join(dir, "nginx.conf")
	os.WriteFile(cf, []byte(conf), 0o644)
	n.cmd = exec.Command(bin, "-p", dir, "-c", cf, "-e", filepath.Join(dir, "error.log"))
	out := &testutil.SyncBuffer{}
	n.cmd.Stdout, n.cmd.Stderr = out, out
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.cmd.Wait(); close(n.done) }()
	t.Cleanup(n.stop)
	waitFor(t, "nginx listening", 10*time.Second, func() bool {
		select {
		case <-n.done:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %s\n%s", out.String(), log)
		default:
		}
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return n
}

func (n *nginxProc) stop() {
	select {
	case <-n.done:
		return
	default:
	}
	n.cmd.Process.Signal(os.Interrupt)
	select {
	case <-n.done:
	case <-time.After(5 * time.Second):
		n.cmd.Process.Kill()
		<-n.done
	}
}

func (n *nginxProc) url(file string) string {
	return fmt.Sprintf("http://127.0.0.1:%d/%s", n.port, file)
}

// publish puts a signature file and its .minisig on the server, each
// release with a later mtime so nginx's ETag and Last-Modified change.
func (n *nginxProc) publish(t *testing.T, data, sig []byte) {
	t.Helper()
	n.mtime = n.mtime.Add(2 * time.Second)
	for _, f := range []struct {
		name string
		data []byte
	}{{"sigs.yaml.minisig", sig}, {"sigs.yaml", data}} {
		p := filepath.Join(n.www, f.name)
		if err := os.WriteFile(p+".tmp", f.data, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p+".tmp", n.mtime, n.mtime)
		if err := os.Rename(p+".tmp", p); err != nil {
			t.Fatal(err)
		}
	}
}

// access is one line of the access log.
type access struct {
	at      time.Time
	status  int
	request string
}

func (n *nginxProc) accesses(t *testing.T) []access {
	t.Helper()
	f, err := os.Open(filepath.Join(n.dir, "access.log"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []access
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.SplitN(sc.Text(), " ", 3)
		if len(fs) < 3 {
			continue
		}
		ms, _ := strconv.ParseFloat(fs[0], 64)
		st, _ := strconv.Atoi(fs[1])
		out = append(out, access{at: time.UnixMilli(int64(ms * 1000)), status: st, request: fs[2]})
	}
	return out
}

// feedRelease builds a release's file text.
func feedRelease(serial int, expires time.Time, names ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "serial: %d\nexpires: %s\nsignatures:\n  - id: feedworm\n    family: FeedWorm\n    domains:\n", serial, expires.UTC().Format(time.RFC3339))
	for _, nm := range names {
		fmt.Fprintf(&b, "      - %s\n", nm)
	}
	return []byte(b.String())
}

// signWithCLI signs data as a maintainer does: wormsink sigs sign.
func signWithCLI(t *testing.T, bin, key string, data []byte) []byte {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "sigs.yaml")
	os.WriteFile(p, data, 0o644)
	if out, err := exec.Command(bin, "sigs", "sign", "--key", key, p).CombinedOutput(); err != nil {
		t.Fatalf("sigs sign: %v\n%s", err, out)
	}
	sig, err := os.ReadFile(p + ".minisig")
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func sinkholed(t *testing.T, p *serveProc, name string) bool {
	t.Helper()
	status, ans := p.dig(t, "127.0.0.1", name, "A")
	return status == "NOERROR" && slices.Contains(ans, "127.0.0.1")
}

func feedLog(t *testing.T, p *serveProc, event, reason string) int {
	n := 0
	for _, l := range logLines(t, p.log) {
		if l["event"] == event && (reason == "" || l["reason"] == reason) {
			n++
		}
	}
	return n
}

func TestSigsFeedWithNginx(t *testing.T) {
	bin := wormsinkBinary(t)
	needTool(t, "dig")
	web := startNginx(t, nil)
	dir := t.TempDir()
	key := filepath.Join(dir, "maint")
	if out, err := exec.Command(bin, "sigs", "keygen", "-o", key).CombinedOutput(); err != nil {
		t.Fatalf("sigs keygen: %v\n%s", err, out)
	}
	if fi, err := os.Stat(key + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret key mode: %v %v", fi.Mode(), err)
	}
	exp := time.Now().Add(72 * time.Hour).Truncate(time.Second)
	web.publish(t, feedRelease(1, exp, "one.feed.example"), signWithCLI(t, bin, key+".key", feedRelease(1, exp, "one.feed.example")))

	// First start: no last-good copy yet, so serve fetches it before serving.
	local := filepath.Join(dir, "sigs.yaml")
	const interval = 2 * time.Second
	args := []string{"--signatures", local, "--sigs-url", web.url("sigs.yaml"), "--sigs-pubkey", key + ".pub",
		"--sigs-interval", interval.String(), "--upstream", "127.0.0.1:9", "--sinkhole-ip", "127.0.0.1"}
	p := startServe(t, bin, args...)
	if !sinkholed(t, p, "one.feed.example") {
		t.Fatal("serial 1's name not answered at start")
	}

	// A new serial is taken within one interval and its names answered.
	rel2 := feedRelease(2, exp, "one.feed.example", "two.feed.example")
	web.publish(t, rel2, signWithCLI(t, bin, key+".key", rel2))
	published := time.Now()
	waitFor(t, "serial 2 answered", 3*interval+5*time.Second, func() bool { return sinkholed(t, p, "two.feed.example") })
	took := time.Since(published)
	t.Logf("serial 2 answered %v after it was published (interval %v)", took, interval)
	if took > interval+2*time.Second { // one interval, and the loaded machine's slack
		t.Errorf("serial 2 took %v, more than one interval (%v)", took, interval)
	}
	if v := p.metric(t, "wormsink_sigs_feed_serial"); v != 2 {
		t.Fatalf("serial metric %v", v)
	}
	if feedLog(t, p, "sigs_update", "") < 1 {
		t.Fatal("no sigs_update line for the applied update")
	}

	// Unchanged: the next checks are 304s, and nothing else is fetched.
	mark := len(web.accesses(t))
	waitFor(t, "two 304s", 3*interval+5*time.Second, func() bool {
		n := 0
		for _, a := range web.accesses(t)[mark:] {
			if a.status == 304 {
				n++
			}
		}
		return n >= 2
	})
	for _, a := range web.accesses(t)[mark:] {
		if a.status != 304 || !strings.Contains(a.request, "GET /sigs.yaml ") {
			t.Fatalf("an unchanged feed fetched more than a 304: %+v", a)
		}
	}
	if p.metric(t, "wormsink_sigs_feed_not_modified_total") < 2 {
		t.Fatal("304s not counted")
	}

	// Each bad release is refused with its reason counted and logged, and
	// the shim keeps answering from serial 2.
	_, otherSec, _ := feed.GenerateKey()
	other, err := feed.ParsePrivateKey(otherSec, nil)
	if err != nil {
		t.Fatal(err)
	}
	ownKey, err := os.ReadFile(key + ".key")
	if err != nil {
		t.Fatal(err)
	}
	own, err := feed.ParsePrivateKey(ownKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(k feed.PrivateKey, data []byte, c feed.Comment) []byte {
		s, err := feed.Sign(k, data, c.String())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rel3 := feedRelease(3, exp, "three.feed.example")
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	old := feedRelease(1, exp.Add(time.Hour), "old.feed.example")
	expired := feedRelease(3, past, "three.feed.example")
	for _, tc := range []struct {
		name, reason string
		data, sig    []byte
	}{
		{"tampered file", "signature", append(append([]byte{}, rel3...), "      - evil.feed.example\n"...), signWithCLI(t, bin, key+".key", rel3)},
		{"another key", "signature", rel3, sign(other, rel3, feed.Comment{Serial: 3, Expires: exp, File: "sigs.yaml"})},
		{"older serial", "rollback", old, signWithCLI(t, bin, key+".key", old)},
		{"expired", "freeze", expired, sign(own, expired, feed.Comment{Serial: 3, Expires: past, File: "sigs.yaml"})},
		{"comment naming another serial", "signature", rel3, sign(own, rel3, feed.Comment{Serial: 4, Expires: exp, File: "sigs.yaml"})},
	} {
		metric := fmt.Sprintf(`wormsink_sigs_feed_failures_total{reason="%s"}`, tc.reason)
		before := p.metric(t, metric)
		lines := feedLog(t, p, "sigs_refused", tc.reason)
		web.publish(t, tc.data, tc.sig)
		waitFor(t, tc.name+" refused", 3*interval+5*time.Second, func() bool { return p.metric(t, metric) > before })
		if feedLog(t, p, "sigs_refused", tc.reason) <= lines {
			t.Errorf("%s: no sigs_refused log line with reason %s", tc.name, tc.reason)
		}
		if v := p.metric(t, "wormsink_sigs_feed_serial"); v != 2 {
			t.Fatalf("%s: serial in service %v", tc.name, v)
		}
		if !sinkholed(t, p, "two.feed.example") {
			t.Fatalf("%s: the last good set stopped answering", tc.name)
		}
		for _, n := range []string{"three.feed.example", "evil.feed.example", "old.feed.example"} {
			if sinkholed(t, p, n) {
				t.Fatalf("%s: refused name %s answered", tc.name, n)
			}
		}
	}
	got, _ := os.ReadFile(local)
	if string(got) != string(rel2) {
		t.Fatalf("the last-good copy changed after refusals:\n%s", got)
	}

	// A good release after all that is taken again.
	web.publish(t, rel3, signWithCLI(t, bin, key+".key", rel3))
	waitFor(t, "serial 3 answered", 3*interval+5*time.Second, func() bool { return sinkholed(t, p, "three.feed.example") })
	p.stop(t)

	// Restart with the feed unreachable: serve starts on the last good copy.
	web.stop()
	p = startServe(t, bin, args...)
	if !sinkholed(t, p, "three.feed.example") || p.metric(t, "wormsink_signature_serial") != 3 {
		t.Fatal("restart did not start on the last good copy")
	}
	waitFor(t, "network failure counted", 3*interval+5*time.Second, func() bool {
		return p.metric(t, `wormsink_sigs_feed_failures_total{reason="network"}`) > 0
	})
	if exp := p.metric(t, "wormsink_sigs_feed_expiry_timestamp_seconds"); exp != float64(feedExpiry(t, local)) {
		t.Fatalf("expiry metric %v", exp)
	}
}

func feedExpiry(t *testing.T, path string) int64 {
	data, _ := os.ReadFile(path)
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "expires: "); ok {
			tm, err := time.Parse(time.RFC3339, v)
			if err != nil {
				t.Fatal(err)
			}
			return tm.Unix()
		}
	}
	return 0
}

// Mirrors are tried in order: the first down, the second serves. A 429
// with Retry-After keeps the client away for as long as it says.
func TestSigsFeedMirrorsAndRetryAfter(t *testing.T) {
	bin := wormsinkBinary(t)
	needTool(t, "dig")
	web := startNginx(t, nil)
	dir := t.TempDir()
	key := filepath.Join(dir, "maint")
	if out, err := exec.Command(bin, "sigs", "keygen", "-o", key).CombinedOutput(); err != nil {
		t.Fatalf("sigs keygen: %v\n%s", err, out)
	}
	pub, _ := os.ReadFile(key + ".pub")
	exp := time.Now().Add(72 * time.Hour).Truncate(time.Second)
	rel1 := feedRelease(10, exp, "m1.feed.example")
	web.publish(t, rel1, signWithCLI(t, bin, key+".key", rel1))
	local := filepath.Join(dir, "sigs.yaml")
	os.WriteFile(local, feedRelease(9, exp, "m0.feed.example"), 0o644)
	down := fmt.Sprintf("http://127.0.0.1:%d/sigs.yaml", freePort(t)) // nothing listens there
	p := startServe(t, bin, "--signatures", local, "--sigs-url", down, "--sigs-url", web.url("sigs.yaml"),
		// the key given as its base64 line, as minisign -P takes it
		"--sigs-pubkey", strings.TrimSpace(strings.Split(string(pub), "\n")[1]),
		"--sigs-interval", "1s", "--upstream", "127.0.0.1:9", "--sinkhole-ip", "127.0.0.1")
	waitFor(t, "serial 10 from the second mirror", 15*time.Second, func() bool { return sinkholed(t, p, "m1.feed.example") })
	if p.metric(t, `wormsink_sigs_feed_failures_total{reason="network"}`) < 1 {
		t.Fatal("the first mirror's failure was not counted")
	}

	// 429 with Retry-After: 3, while the interval is 1 s.
	os.WriteFile(filepath.Join(web.www, "ratelimit"), nil, 0o644)
	rel2 := feedRelease(11, exp, "m2.feed.example")
	web.publish(t, rel2, signWithCLI(t, bin, key+".key", rel2))
	var limited access
	waitFor(t, "a 429", 15*time.Second, func() bool {
		for _, a := range web.accesses(t) {
			if a.status == 429 {
				limited = a
				return true
			}
		}
		return false
	})
	os.Remove(filepath.Join(web.www, "ratelimit"))
	waitFor(t, "serial 11 after the Retry-After", 20*time.Second, func() bool { return sinkholed(t, p, "m2.feed.example") })
	var next *access
	for _, a := range web.accesses(t) {
		if a.at.After(limited.at) && a.status != 429 {
			next = &a
			break
		}
		if a.at.After(limited.at) && a.status == 429 {
			t.Fatalf("asked again %v after a 429 with Retry-After: 3", a.at.Sub(limited.at))
		}
	}
	if next == nil {
		t.Fatal("no request after the 429")
	}
	gap := next.at.Sub(limited.at)
	t.Logf("next request %v after the 429 (Retry-After: 3, interval 1s)", gap)
	if gap < 2900*time.Millisecond {
		t.Fatalf("asked again %v after a 429 with Retry-After: 3", gap)
	}
}

// tlsFiles are a private CA and a server certificate for 127.0.0.1.
type tlsFiles struct{ ca, cert, key string }

func makeTLS(t *testing.T) *tlsFiles {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wormsink feed test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	f := &tlsFiles{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "server.pem"), key: filepath.Join(dir, "server.key")}
	os.WriteFile(f.ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	os.WriteFile(f.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}), 0o644)
	os.WriteFile(f.key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	return f
}

// HTTPS from a private CA: refused without --sigs-ca, taken with it; and
// sigs pull, the one-round command for cron.
func TestSigsPullHTTPSPrivateCA(t *testing.T) {
	bin := wormsinkBinary(t)
	tf := makeTLS(t)
	web := startNginx(t, tf)
	dir := t.TempDir()
	key := filepath.Join(dir, "maint")
	if out, err := exec.Command(bin, "sigs", "keygen", "-o", key).CombinedOutput(); err != nil {
		t.Fatalf("sigs keygen: %v\n%s", err, out)
	}
	exp := time.Now().Add(72 * time.Hour).Truncate(time.Second)
	rel := feedRelease(5, exp, "tls.feed.example")
	web.publish(t, rel, signWithCLI(t, bin, key+".key", rel))
	local := filepath.Join(dir, "sigs.yaml")
	url := fmt.Sprintf("https://127.0.0.1:%d/sigs.yaml", web.tlsPort)
	pull := func(extra ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		args := append([]string{"sigs", "pull", "--sigs-url", url, "--sigs-pubkey", key + ".pub", "--signatures", local}, extra...)
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		return string(out), err
	}
	out, err := pull()
	if err == nil || !strings.Contains(out, "network") || !strings.Contains(out, "certificate") {
		t.Fatalf("pull without --sigs-ca: %v\n%s", err, out)
	}
	if _, err := os.Stat(local); err == nil {
		t.Fatal("a file was written from an unverified server")
	}
	out, err = pull("--sigs-ca", tf.ca)
	if err != nil || !strings.Contains(out, "updated to serial 5") {
		t.Fatalf("pull with --sigs-ca: %v\n%s", err, out)
	}
	got, _ := os.ReadFile(local)
	if string(got) != string(rel) {
		t.Fatal("last-good copy differs from the release")
	}
	out, err = pull("--sigs-ca", tf.ca)
	if err != nil || !strings.Contains(out, "unchanged at serial 5") {
		t.Fatalf("second pull: %v\n%s", err, out)
	}
	// The copy and its signature verify with the CLI, as minisign would.
	if out, err := exec.Command(bin, "sigs", "verify", "--pubkey", key+".pub", local).CombinedOutput(); err != nil {
		t.Fatalf("sigs verify of the last-good copy: %v\n%s", err, out)
	}

	// serve follows the same HTTPS feed with --sigs-ca.
	needTool(t, "dig")
	p := startServe(t, bin, "--signatures", local, "--sigs-url", url, "--sigs-pubkey", key+".pub", "--sigs-ca", tf.ca,
		"--sigs-interval", "1s", "--upstream", "127.0.0.1:9", "--sinkhole-ip", "127.0.0.1")
	rel6 := feedRelease(6, exp, "tls.feed.example", "tls6.feed.example")
	web.publish(t, rel6, signWithCLI(t, bin, key+".key", rel6))
	start := time.Now()
	waitFor(t, "serial 6 over HTTPS", 15*time.Second, func() bool { return sinkholed(t, p, "tls6.feed.example") })
	t.Logf("serial 6 over HTTPS after %v", time.Since(start))
	if n := p.metric(t, `wormsink_sigs_feed_failures_total{reason="network"}`); n != 0 {
		t.Fatalf("%v network failures with --sigs-ca", n)
	}
}
