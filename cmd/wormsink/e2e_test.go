package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"wormsink/internal/evidencetest"
	"wormsink/internal/testutil"
)

// The whole story with real clients: a real unbound upstream, dig, tftp-hpa
// and curl against `wormsink serve` running as its own process; then the
// report, the metrics, a reload, a broken reload and a clean stop.

var wormsink = testutil.Binary{Pkg: "wormsink/cmd/wormsink"}

// TestMain removes the binary the tests built, once every test is done.
func TestMain(m *testing.M) { testutil.Main(m, &wormsink) }

// wormsinkBinary builds the command once per test run.
func wormsinkBinary(t *testing.T) string { return wormsink.Path(t) }

func needTool(t *testing.T, name string) string { t.Helper(); return testutil.Need(t, name) }

// freePort finds a port free for both UDP and TCP on 127.0.0.1.
func freePort(t *testing.T) int { t.Helper(); return testutil.FreePort(t) }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, d, what, cond)
}

// startUnbound runs a real unbound on a loopback port that answers the
// test's names from local data, so nothing leaves the machine.
func startUnbound(t *testing.T, localData ...string) string {
	t.Helper()
	unbound := needTool(t, "unbound")
	dir := t.TempDir()
	server := `  module-config: "iterator"
  local-zone: "example.net." static
  local-zone: "worm.example." static
`
	for _, d := range localData {
		server += fmt.Sprintf("  local-data: %q\n", d)
	}
	return testutil.Daemon{Name: "unbound", Ready: testutil.AnswersA("www.example.net."), Command: func(port int) (string, []string, error) {
		conf := filepath.Join(dir, "unbound.conf")
		return unbound, testutil.UnboundArgs(conf), os.WriteFile(conf, []byte(testutil.UnboundConf(port, dir, server, "")), 0o644)
	}}.StartT(t).Addr
}

type serveProc struct {
	cmd     *exec.Cmd
	stderr  bytes.Buffer
	done    chan error
	dns     int
	tftp    int
	metrics string
	log     string
}

func startServe(t *testing.T, bin string, args ...string) *serveProc {
	t.Helper()
	p := &serveProc{dns: freePort(t), tftp: freePort(t), metrics: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		log: filepath.Join(t.TempDir(), "evidence.jsonl"), done: make(chan error, 1)}
	all := append([]string{"serve",
		"--dns-listen", fmt.Sprintf("127.0.0.1:%d", p.dns),
		"--tftp-listen", fmt.Sprintf("127.0.0.1:%d", p.tftp),
		"--metrics-listen", p.metrics, "--log", p.log, "--sensor", "e2e", "--user", "", "--watch-interval", "0"}, args...)
	p.cmd = exec.Command(bin, all...)
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	waitFor(t, "serve /healthz", 10*time.Second, func() bool {
		select {
		case err := <-p.done:
			t.Fatalf("serve exited: %v\n%s", err, p.stderr.String())
		default:
		}
		resp, err := http.Get("http://" + p.metrics + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return p
}

func (p *serveProc) dig(t *testing.T, from, name, qtype string) (status string, answers []string) {
	t.Helper()
	out, err := exec.Command("dig", "-b", from, "-p", strconv.Itoa(p.dns), "@127.0.0.1", "+time=3", "+tries=1", name, qtype).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", name, err, out)
	}
	if m := regexp.MustCompile(`status: ([A-Z]+)`).FindSubmatch(out); m != nil {
		status = string(m[1])
	}
	inAnswer := false
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, ";; ANSWER SECTION"):
			inAnswer = true
		case inAnswer && strings.TrimSpace(line) == "":
			inAnswer = false
		case inAnswer:
			f := strings.Fields(line)
			answers = append(answers, f[len(f)-1])
		}
	}
	return status, answers
}

func (p *serveProc) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return v
		}
	}
	t.Fatalf("metric %s not exported", name)
	return 0
}

func (p *serveProc) stop(t *testing.T) {
	t.Helper()
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("serve exit after SIGTERM: %v\n%s", err, p.stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not exit within 5 s of SIGTERM")
	}
	t.Logf("SIGTERM to exit: %v", time.Since(start))
	p.done <- nil // for the cleanup
}

func logLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseLog(t, path, data)
}

// liveLogLines reads the complete lines of a log serve is still writing:
// a line being written when the file is read is left for the next poll.
func liveLogLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseLog(t, path, data[:bytes.LastIndexByte(data, '\n')+1])
}

func parseLog(t *testing.T, path string, data []byte) []map[string]any {
	t.Helper()
	out, err := evidencetest.Lines(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}

func sightings(lines []map[string]any, event string) float64 {
	n := 0.0
	for _, l := range lines {
		if l["event"] == event && l["host"] != nil {
			n += l["count"].(float64)
		}
	}
	return n
}

const storySigs = `serial: %d
signatures:
  - id: blaster
    family: Blaster
    references: [CVE-2003-0352]
    tftp_files: [msblast.exe]
    domains:
      - %s
      - name: windowsupdate.com
        action: nxdomain
        evidence: weak
`

func TestServeStory(t *testing.T) {
	bin := wormsinkBinary(t)
	needTool(t, "dig")
	tftp := needTool(t, "tftp")
	curl := needTool(t, "curl")
	upstream := startUnbound(t, "www.example.net. A 192.0.2.80", "tftp.worm.example. A 198.51.100.66")

	dir := t.TempDir()
	sigPath := filepath.Join(dir, "sigs.yaml")
	os.WriteFile(sigPath, fmt.Appendf(nil, storySigs, 100, "tftp.worm.example"), 0o644)
	p := startServe(t, bin, "--signatures", sigPath, "--upstream", upstream, "--sinkhole-ip", "127.0.0.1")

	// Host 3 (127.0.0.3) and host 2 (127.0.0.2) look up the worm's TFTP
	// host, then ask the sinkhole for the worm. 127.0.0.1 is the sinkhole's
	// own address: what it does is never recorded as a host.
	for _, host := range []string{"127.0.0.3", "127.0.0.2"} {
		if st, ans := p.dig(t, host, "tftp.worm.example", "A"); st != "NOERROR" || len(ans) != 1 || ans[0] != "127.0.0.1" {
			t.Fatalf("%s: tftp.worm.example A: %s %v, want the sinkhole 127.0.0.1", host, st, ans)
		}
	}
	if st, ans := p.dig(t, "127.0.0.3", "www.example.net", "A"); st != "NOERROR" || len(ans) != 1 || ans[0] != "192.0.2.80" {
		t.Fatalf("forwarded name: %s %v", st, ans)
	}
	if st, _ := p.dig(t, "127.0.0.3", "windowsupdate.com", "A"); st != "NXDOMAIN" {
		t.Fatalf("windowsupdate.com: %s, want NXDOMAIN", st)
	}

	work := t.TempDir()
	// tftp-hpa cannot choose its source: it asks from 127.0.0.1, the
	// sinkhole's own address, which is answered but never a host.
	out, _ := runIn(work, tftp, "127.0.0.1", strconv.Itoa(p.tftp), "-m", "octet", "-c", "get", "msblast.exe")
	if !strings.Contains(out, "Error code") {
		t.Errorf("tftp get msblast.exe: %q, want an error", out)
	}
	for _, host := range []string{"127.0.0.3", "127.0.0.2"} {
		out, err := runIn(work, curl, "-sS", "--max-time", "10", "--interface", host, "-o", filepath.Join(work, "got-"+host),
			fmt.Sprintf("tftp://127.0.0.1:%d/msblast.exe", p.tftp))
		if err == nil {
			t.Errorf("curl from %s fetched msblast.exe: %q", host, out)
		}
	}
	if fi, err := os.Stat(filepath.Join(work, "msblast.exe")); err == nil && fi.Size() > 0 {
		t.Errorf("tftp received %d bytes of msblast.exe", fi.Size())
	}

	// Reload: a new file (higher serial) lists another name.
	os.WriteFile(sigPath, fmt.Appendf(nil, storySigs, 101, "tftp2.worm.example"), 0o644)
	reloads := p.metric(t, `wormsink_signature_reloads_total{result="ok"}`)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "reload", 5*time.Second, func() bool { return p.metric(t, "wormsink_signature_serial") == 101 })
	if got := p.metric(t, `wormsink_signature_reloads_total{result="ok"}`); got != reloads+1 {
		t.Errorf("reloads ok %v, want %v", got, reloads+1)
	}
	if st, ans := p.dig(t, "127.0.0.3", "tftp2.worm.example", "A"); st != "NOERROR" || len(ans) != 1 || ans[0] != "127.0.0.1" {
		t.Fatalf("after reload tftp2.worm.example: %s %v", st, ans)
	}
	if st, ans := p.dig(t, "127.0.0.3", "tftp.worm.example", "A"); len(ans) != 1 || ans[0] != "198.51.100.66" {
		t.Fatalf("after reload tftp.worm.example should be forwarded: %s %v", st, ans)
	}

	// A broken file keeps the set in service and raises the failure metric.
	os.WriteFile(sigPath, []byte("serial: 102\nsignatures:\n  - id: Bad\n"), 0o644)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "failed reload", 5*time.Second, func() bool { return p.metric(t, `wormsink_signature_reloads_total{result="failed"}`) == 1 })
	if st, ans := p.dig(t, "127.0.0.3", "tftp2.worm.example", "A"); st != "NOERROR" || len(ans) != 1 || ans[0] != "127.0.0.1" {
		t.Fatalf("after broken reload: %s %v", st, ans)
	}
	if p.metric(t, "wormsink_signature_serial") != 101 {
		t.Fatal("broken file replaced the set")
	}

	// tftp-hpa's sighting is recorded when its refusal's wait ends (the
	// proof is decided then), as the sinkhole's own address: excluded.
	waitFor(t, "tftp-hpa's sighting", 10*time.Second, func() bool { return p.metric(t, "wormsink_evidence_excluded_total") >= 1 })
	sinkholed := p.metric(t, `wormsink_dns_queries_total{outcome="sinkholed"}`)
	refused := p.metric(t, `wormsink_tftp_requests_total{outcome="refused"}`)
	excluded := p.metric(t, "wormsink_evidence_excluded_total")
	p.stop(t)

	lines := logLines(t, p.log)
	if got := sightings(lines, "dns_sinkhole"); got != sinkholed || got != 5 {
		t.Errorf("dns_sinkhole sightings %v, metric %v, want 5", got, sinkholed)
	}
	if got := sightings(lines, "tftp_refused"); got != refused-1 || got < 2 || excluded != 1 {
		t.Errorf("tftp_refused sightings %v, metric %v, excluded %v: want one per request, less tftp-hpa's from the sinkhole's own address", got, refused, excluded)
	}
	for _, l := range lines {
		if l["host"] == "127.0.0.1" {
			t.Errorf("the sinkhole's own address is a host: %v", l)
		}
	}
	var failed, stopped bool
	for _, l := range lines {
		failed = failed || l["event"] == "reload_failed" && strings.Contains(fmt.Sprint(l["error"]), "sigs.yaml:3:")
		stopped = stopped || l["event"] == "stop"
	}
	if !failed || !stopped {
		t.Errorf("service lines: reload_failed with file:line %v, stop %v", failed, stopped)
	}

	// The abuse team's view.
	var rep bytes.Buffer
	cmd := exec.Command(bin, "report", "--format", "csv", p.log)
	cmd.Stdout = &rep
	if err := cmd.Run(); err != nil {
		t.Fatalf("report: %v", err)
	}
	rows, err := csv.NewReader(&rep).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string][]string{}
	for _, r := range rows[1:] {
		hosts[r[0]] = r
	}
	if _, ok := hosts["127.0.0.1"]; ok {
		t.Errorf("report lists the sinkhole's own address:\n%s", rep.String())
	}
	for _, h := range []string{"127.0.0.3", "127.0.0.2"} {
		r, ok := hosts[h]
		if !ok {
			t.Fatalf("report lacks %s:\n%s", h, rep.String())
		}
		if r[4] != "strong" || !strings.Contains(r[7], "dns=") || !strings.Contains(r[7], "tftp=") || !strings.Contains(r[5], "Blaster") {
			t.Errorf("report row for %s: %v", h, r)
		}
	}
}

func runIn(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestServeReloadUnderLoad: ten SIGHUPs with alternating signature files
// while dnsperf loads the shim; no query is lost and each new set takes effect.
func TestServeReloadUnderLoad(t *testing.T) {
	bin := wormsinkBinary(t)
	dnsperf := needTool(t, "dnsperf")
	upstream := startUnbound(t, "www.example.net. A 192.0.2.80", "u.example.net. A 192.0.2.81")
	dir := t.TempDir()
	sigPath := filepath.Join(dir, "sigs.yaml")
	writeSet := func(serial int, prefix string) {
		var b strings.Builder
		fmt.Fprintf(&b, "serial: %d\nsignatures:\n  - id: load\n    family: Load\n    domains:\n", serial)
		for i := 0; i < 100; i++ {
			fmt.Fprintf(&b, "      - %s%03d.worm.example\n", prefix, i)
		}
		tmp := sigPath + ".tmp"
		os.WriteFile(tmp, []byte(b.String()), 0o644)
		os.Rename(tmp, sigPath)
	}
	writeSet(1, "a")
	p := startServe(t, bin, "--signatures", sigPath, "--upstream", upstream, "--sinkhole-ip", "127.0.0.1", "--tftp-listen", "")

	var q strings.Builder
	for i := 0; i < 1000; i++ {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&q, "a%03d.worm.example A\n", i%100)
		case 1:
			fmt.Fprintf(&q, "b%03d.worm.example AAAA\n", i%100)
		case 2:
			q.WriteString("www.example.net A\n")
		default:
			q.WriteString("u.example.net A\n")
		}
	}
	queries := filepath.Join(dir, "queries.txt")
	os.WriteFile(queries, []byte(q.String()), 0o644)
	perf := exec.Command(dnsperf, "-s", "127.0.0.1", "-p", strconv.Itoa(p.dns), "-d", queries, "-c", "2", "-l", "12", "-Q", "2000")
	var perfOut bytes.Buffer
	perf.Stdout, perf.Stderr = &perfOut, &perfOut
	if err := perf.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 11; i++ {
		prefix, old := "b", "a"
		if i%2 == 1 {
			prefix, old = "a", "b"
		}
		writeSet(i, prefix)
		p.cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, fmt.Sprintf("serial %d", i), 5*time.Second, func() bool { return p.metric(t, "wormsink_signature_serial") == float64(i) })
		if st, ans := p.dig(t, "127.0.0.1", prefix+"042.worm.example", "A"); st != "NOERROR" || len(ans) != 1 || ans[0] != "127.0.0.1" {
			t.Fatalf("reload %d: %s042 not sinkholed: %s %v", i, prefix, st, ans)
		}
		if st, _ := p.dig(t, "127.0.0.1", old+"042.worm.example", "A"); st != "NXDOMAIN" {
			t.Fatalf("reload %d: %s042 still listed: %s", i, old, st)
		}
		time.Sleep(500 * time.Millisecond) // spread the reloads over the load
	}
	if err := perf.Wait(); err != nil {
		t.Fatalf("dnsperf: %v\n%s", err, perfOut.String())
	}
	m := regexp.MustCompile(`Queries lost:\s+(\d+)`).FindStringSubmatch(perfOut.String())
	sent := regexp.MustCompile(`Queries sent:\s+(\d+)`).FindStringSubmatch(perfOut.String())
	if m == nil || sent == nil || m[1] != "0" || sent[1] == "0" {
		t.Fatalf("dnsperf lost queries:\n%s", perfOut.String())
	}
	t.Logf("dnsperf: %s queries sent, %s lost, across 10 reloads", sent[1], m[1])
	if got := p.metric(t, `wormsink_signature_reloads_total{result="ok"}`); got != 10 {
		t.Errorf("reloads ok = %v, want 10", got)
	}
	p.stop(t)
}

// TestServeDropsPrivileges: started as root, serve binds its sockets and
// then runs as --user, still answering.
func TestServeDropsPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (make test runs as root in CI)")
	}
	bin := wormsinkBinary(t)
	p := startServe(t, bin, "--user", "nobody", "--upstream", "127.0.0.1:9", "--sinkhole-ip", "127.0.0.1")
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Uid:\s+(\d+)\s+(\d+)\s+(\d+)`).FindSubmatch(status)
	if m == nil || string(m[1]) == "0" || string(m[2]) == "0" || string(m[3]) == "0" {
		t.Fatalf("still root: %s", m)
	}
	if st, _ := p.dig(t, "127.0.0.1", "windowsupdate.com", "A"); st != "NXDOMAIN" {
		t.Fatalf("after the drop: %s", st)
	}
	p.stop(t)
}

// Started as root with --user nobody and a signature file nobody cannot
// read, serve must not start (every later reload would fail): one clear
// line, status 1.
func TestServeUnreadableSignaturesAfterDrop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (make test runs as root in CI)")
	}
	bin := wormsinkBinary(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sigs := filepath.Join(dir, "signatures.yaml")
	if err := os.WriteFile(sigs, []byte("serial: 1\nsignatures:\n  - id: x\n    family: X\n    tftp_files: [x.exe]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--user", "nobody", "--signatures", sigs, "--dns-listen", "",
		"--tftp-listen", "127.0.0.1:0", "--log", filepath.Join(dir, "log"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	// Either it exits, or it logs its start: wait for whichever comes.
	var err error
	exited := false
	waitFor(t, "serve to exit or start", 60*time.Second, func() bool {
		select {
		case err = <-done:
			exited = true
			return true
		default:
		}
		data, _ := os.ReadFile(filepath.Join(dir, "log"))
		return bytes.Contains(data, []byte(`"event":"start"`))
	})
	if !exited {
		cmd.Process.Kill()
		<-done
		t.Fatal("serve started with a signature file --user nobody cannot read")
	}
	msg := strings.TrimSuffix(stderr.String(), "\n")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitFailure || strings.Contains(msg, "\n") ||
		!strings.HasPrefix(msg, "wormsink: serve: ") || !strings.Contains(msg, sigs) || !strings.Contains(msg, "nobody") {
		t.Fatalf("exit %v, stderr %q; want status 1 and one line naming the file and the user", err, msg)
	}
}
