package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"wormsink/internal/testutil"
)

// The walled garden as a customer meets it: headless Chromium in the
// quarantined client's network namespace, resolving through the shim by
// the namespace's own resolv.conf (no resolver rules: the browser does its
// own DNS), lands on the notice page for an ordinary web name, reaches an
// allowlisted site, and releases itself with the button once; after the
// policy's one self-release the page offers no button. The neighbour's
// Chromium, on the same link, always gets the real site.
func TestQuarantineInChromium(t *testing.T) {
	bin := wormsinkBinary(t)
	chromium := needTool(t, "chromium")
	pid := os.Getpid()
	subnet := fmt.Sprintf("10.197.%d.", pid%200+20)
	gw, client, neighbour, noticeIP := subnet+"1", subnet+"2", subnet+"3", subnet+"4"

	// One link, a bridge in the test's namespace: the shim and the real web
	// site on .1, the notice page on .4, the client .2, the neighbour .3.
	br := fmt.Sprintf("enbr%d", pid)
	exec.Command("ip", "link", "del", br).Run()
	testutil.Run(t, "ip", "link", "add", br, "type", "bridge")
	t.Cleanup(func() { exec.Command("ip", "link", "del", br).Run() })
	testutil.Run(t, "ip", "addr", "add", gw+"/24", "dev", br)
	testutil.Run(t, "ip", "addr", "add", noticeIP+"/24", "dev", br)
	testutil.Run(t, "ip", "link", "set", br, "up")
	hosts := map[string]testutil.Netns{}
	for _, h := range []struct{ name, addr string }{{"encl", client}, {"ennb", neighbour}} {
		ns := testutil.NewNetns(t, h.name)
		dev := fmt.Sprintf("%s%d", h.name, pid)
		testutil.Veth(t, ns, dev, "eth0", nil, []string{h.addr + "/24"})
		testutil.Run(t, "ip", "link", "set", dev, "master", br)
		ns.Run(t, "ip", "route", "add", "default", "via", gw)
		// ip netns exec mounts this over /etc/resolv.conf in the namespace.
		etc := filepath.Join("/etc/netns", string(ns))
		if err := os.MkdirAll(etc, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(etc) })
		if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver "+gw+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		hosts[h.addr] = ns
	}

	// The real web sites, behind the real names.
	ln, err := net.Listen("tcp", gw+":80")
	if err != nil {
		t.Fatal(err)
	}
	site := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>%s</title><p>The real site %s</p>", r.Host, r.Host)
	})}
	go site.Serve(ln)
	t.Cleanup(func() { site.Close() })
	up := startUnbound(t, "www.example.net. 60 IN A "+gw, "download.windowsupdate.com. 60 IN A "+gw)

	dir := t.TempDir()
	sigs := filepath.Join(dir, "sigs.yaml")
	os.WriteFile(sigs, []byte(fmt.Sprintf(storySigs, 1, "worm.example")), 0o644)
	policy := filepath.Join(dir, "policy.yaml")
	os.WriteFile(policy, []byte(quarantinePolicy), 0o644)
	db := "sqlite:" + filepath.Join(dir, "wormsink.db")
	startServe(t, bin, "--upstream", up, "--signatures", sigs, "--db", db, "--quarantine-policy", policy,
		"--dns-listen", gw+":53", "--notice-ip", noticeIP, "--notice-listen", noticeIP+":80", "--notice-isp", "Example ISP")
	add := func() {
		t.Helper()
		if out, err := exec.Command(bin, "quarantine", "add", client, "--family", "Blaster", "--db", db, "--note", "browser test").CombinedOutput(); err != nil {
			t.Fatalf("quarantine add: %v\n%s", err, out)
		}
	}
	add()
	browse := func(from, url string, click bool, shot string) browserResult {
		t.Helper()
		return runBrowser(t, hosts[from], chromium, url, click, shot)
	}
	// The running serve follows the store within a second: wait for the
	// client's browser to see it, the way the customer would (reload).
	var got browserResult
	waitFor(t, "the notice page in the client's Chromium", 60*time.Second, func() bool {
		got = browse(client, "http://www.example.net/news", false, "")
		return strings.Contains(got.Text, "Blaster on your connection")
	})
	shot := filepath.Join(os.TempDir(), fmt.Sprintf("enforce-notice-%d.png", pid))
	got = browse(client, "http://www.example.net/news", true, shot)
	t.Logf("notice page screenshot: %s", shot)
	for _, want := range []string{"Blaster on your connection", "Blaster", "Install MS03-026", "0800 555 0100", "Example ISP", "My computer is clean"} {
		if !strings.Contains(got.Text, want) {
			t.Errorf("the notice page lacks %q:\n%s", want, got.Text)
		}
	}
	if !strings.Contains(got.After, "your connection is open again") {
		t.Fatalf("the release button did not release:\n%s", got.After)
	}
	if r := browse(client, "http://www.example.net/news", false, ""); !strings.Contains(r.Text, "The real site www.example.net") {
		t.Errorf("released client: %q", r.Text)
	}
	if r := browse(neighbour, "http://www.example.net/", false, ""); !strings.Contains(r.Text, "The real site www.example.net") {
		t.Errorf("the neighbour: %q", r.Text)
	}

	// Back in quarantine (by the abuse team: the grace period keeps the
	// policy from it): the allowlisted site still loads, and the one
	// self-release is used up, so the page offers no button.
	add()
	waitFor(t, "the notice page again", 60*time.Second, func() bool {
		got = browse(client, "http://www.example.net/", false, "")
		return strings.Contains(got.Text, "Blaster on your connection")
	})
	if strings.Contains(got.Text, "My computer is clean") || !strings.Contains(got.Text, "used every release") {
		t.Errorf("after the last self-release the page still offers one:\n%s", got.Text)
	}
	if r := browse(client, "http://download.windowsupdate.com/", false, ""); !strings.Contains(r.Text, "The real site download.windowsupdate.com") {
		t.Errorf("the allowlisted site in quarantine: %q", r.Text)
	}
	if r := browse(neighbour, "http://www.example.net/", false, ""); !strings.Contains(r.Text, "The real site www.example.net") {
		t.Errorf("the neighbour during the second quarantine: %q", r.Text)
	}
	if out, _ := exec.Command(bin, "quarantine", "show", client, "--db", db).CombinedOutput(); !strings.Contains(string(out), "self") {
		t.Errorf("the audit trail lacks the self-release:\n%s", out)
	}
}

// browserResult is what the browser saw: the page's text, and after a
// click on its button the next page's text.
type browserResult struct {
	Text  string `json:"text"`
	After string `json:"after"`
	Error string `json:"error"`
}

// runBrowser runs Chromium inside ns through this test binary (the
// browser and its DevTools socket must both live in the namespace).
func runBrowser(t *testing.T, ns testutil.Netns, chromium, url string, click bool, shot string) browserResult {
	t.Helper()
	out := filepath.Join(t.TempDir(), "result.json")
	cmd := ns.Command(os.Args[0], "-test.run", "^TestBrowserHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "WORMSINK_BROWSER_URL="+url, "WORMSINK_BROWSER_OUT="+out,
		"WORMSINK_BROWSER_CHROMIUM="+chromium, "WORMSINK_BROWSER_SHOT="+shot, fmt.Sprintf("WORMSINK_BROWSER_CLICK=%v", click))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("browser in %s: %v\n%s", ns, err, b)
	}
	var r browserResult
	b, err := os.ReadFile(out)
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err != nil {
		t.Fatalf("browser result: %v", err)
	}
	if r.Error != "" {
		t.Logf("browser in %s, %s: %s", ns, url, r.Error)
	}
	return r
}

// TestBrowserHelper is the browser runBrowser starts in a namespace; run
// directly it does nothing.
func TestBrowserHelper(t *testing.T) {
	url := os.Getenv("WORMSINK_BROWSER_URL")
	if url == "" {
		return
	}
	var r browserResult
	defer func() {
		b, _ := json.Marshal(r)
		if err := os.WriteFile(os.Getenv("WORMSINK_BROWSER_OUT"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(os.Getenv("WORMSINK_BROWSER_CHROMIUM")),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// Plain HTTP as typed: the notice page cannot answer HTTPS, and an
		// upgrade attempt only adds a timeout before the same fallback.
		chromedp.Flag("disable-features", "HttpsUpgrades"),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1000, 1200),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	text := func() (string, error) { return chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body"))) }
	var err error
	if err = chromedp.Do(ctx, chromedp.Navigate(url)); err == nil {
		r.Text, err = text()
	}
	if err != nil {
		r.Error = err.Error()
		return
	}
	if shot := os.Getenv("WORMSINK_BROWSER_SHOT"); shot != "" {
		if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
			os.WriteFile(shot, png, 0o644)
		}
	}
	if os.Getenv("WORMSINK_BROWSER_CLICK") != "true" {
		return
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("button"))); err != nil {
		r.Error = err.Error()
		return
	}
	// The form's answer replaces the page: poll until it has.
	for ctx.Err() == nil {
		if r.After, err = text(); err == nil && r.After != r.Text && r.After != "" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.Error = "no page after the click"
}
