package desk

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"wormsink/internal/testutil"
	"wormsink/store/storetest"
)

// browser starts headless Chromium with a fresh profile.
func browser(t *testing.T) context.Context {
	t.Helper()
	bin := testutil.Need(t, "chromium")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(filepath.Join(t.TempDir(), "chromium-desk")),
		chromedp.WindowSize(1366, 900),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel3)
	return ctx
}

// TestBrowserWorksACase drives the desk as an analyst would: log in with
// the keyboard, filter, open a case, quarantine it with a note, release
// it; the audit trail names the user for both, and the quarantine engine
// enforced the quarantine in between.
func TestBrowserWorksACase(t *testing.T) {
	d := startDesk(t, storetest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "d.db")), nil)
	ctx := context.Background()
	t0 := time.Now().Add(-3 * time.Hour).UTC()
	var lines []Line
	for i := 0; i < 40; i++ {
		lines = append(lines,
			Line{"s1", "l", int64(i * 1000), evLine(t0.Add(time.Duration(i)*4*time.Minute), "198.51.100.7", "blaster", "strong", "tcp", "s1", "")},
			Line{"s1", "l", int64(i*1000 + 500), evLine(t0.Add(time.Duration(i)*3*time.Minute), "198.51.100.7", "sasser", "weak", "tcp", "s1", "")},
			Line{"s2", "l", int64(i * 1000), evLine(t0.Add(time.Duration(i)*time.Minute), "203.0.113.9", "conficker", "strong", "datagram", "s2", "")})
	}
	if _, err := d.st.Ingest(ctx, lines); err != nil {
		t.Fatal(err)
	}
	bctx := browser(t)
	var listText, auditText, title string
	shots := t.TempDir()
	if dir := os.Getenv("DESK_SCREENSHOTS"); dir != "" {
		shots = dir
	}
	var listPNG, casePNG []byte
	var err error
	step := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	get := func(what string, a chromedp.Action[string]) string {
		t.Helper()
		v, err := chromedp.Run(bctx, a)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	step("log in",
		chromedp.Navigate(d.url+"/"),
		chromedp.WaitVisible(`input[name=name]`),
		chromedp.SendKeys(`input[name=name]`, "alice"),
		chromedp.SendKeys(`input[name=password]`, testPassword+"\r"), // Enter submits: no mouse needed
		chromedp.WaitVisible(`header nav`))
	step("filter",
		chromedp.SendKeys(`input[name=family]`, "blaster"),
		chromedp.Click(`form.filters button[type=submit]`),
		chromedp.WaitVisible(`p.filtered`))
	listText = get("list", chromedp.Text(`tbody`))
	if listPNG, err = chromedp.Run(bctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatal(err)
	}
	step("open the case",
		chromedp.Click(`tbody a[href^="/cases/"]`),
		chromedp.WaitVisible(`svg.chart`))
	title = get("title", chromedp.Title())
	step("quarantine",
		chromedp.SendKeys(`#note`, "port 135 worm, customer warned by phone"),
		chromedp.Click(`button[value=quarantine]`),
		chromedp.WaitVisible(`p.done-quarantine`))
	if !strings.Contains(listText, "198.51.100.7") || strings.Contains(listText, "203.0.113.9") {
		t.Fatalf("filtered list: %q", listText)
	}
	if _, ok := d.eng.Lookup(netip.MustParseAddr("198.51.100.7")); !ok {
		t.Fatal("quarantined in the browser but not enforced by the engine")
	}
	step("release",
		chromedp.SendKeys(`#note`, "cleaned, confirmed by scan"),
		chromedp.Click(`button[value=release]`),
		chromedp.WaitVisible(`p.done-release`))
	auditText = get("audit", chromedp.Text(`//h2[text()="Audit trail"]/following-sibling::table[1]`))
	if casePNG, err = chromedp.Run(bctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.eng.Lookup(netip.MustParseAddr("198.51.100.7")); ok {
		t.Fatal("released in the browser but still enforced")
	}
	for _, want := range []string{"alice\tquarantine", "port 135 worm", "alice\trelease", "cleaned, confirmed by scan"} {
		if !strings.Contains(auditText, want) {
			t.Errorf("audit trail lacks %q:\n%s", want, auditText)
		}
	}
	if !strings.HasPrefix(title, "WS-") {
		t.Errorf("case page title %q", title)
	}
	os.WriteFile(filepath.Join(shots, "desk-list.png"), listPNG, 0o644)
	os.WriteFile(filepath.Join(shots, "desk-case.png"), casePNG, 0o644)

	// An analyst's browser: user management is refused, and the desk's
	// menu does not offer it.
	bctx = browser(t)
	step("analyst logs in on /users",
		chromedp.Navigate(d.url+"/users"),
		chromedp.WaitVisible(`input[name=name]`),
		chromedp.SendKeys(`input[name=name]`, "bob"),
		chromedp.SendKeys(`input[name=password]`, testPassword+"\r"),
		chromedp.WaitNotPresent(`input[name=password]`))
	body := get("users page", chromedp.Text(`body`))
	step("analyst's list", chromedp.Navigate(d.url+"/"), chromedp.WaitVisible(`header nav`))
	nav := get("menu", chromedp.Text(`header nav`))
	if !strings.Contains(body, "Only an admin manages users") || strings.Contains(nav, "Users") {
		t.Fatalf("analyst: /users says %q, menu %q", body, nav)
	}
}
