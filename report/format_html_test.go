package report

import (
	"bytes"
	"html"
	"image/png"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"wormsink/evidence"
	"wormsink/signatures"
)

// oneMinutePage is a report of sightings that all fall into one bin (a
// short test run, as make run makes): two families with the same counts,
// hosts strong and weak, proven and not, with changing source ports.
func oneMinutePage(t testing.TB) ([]byte, []HostSummary) {
	t.Helper()
	at := time.Date(2026, 12, 6, 21, 0, 0, 0, time.UTC)
	var evs []evidence.Event
	for i, h := range []struct {
		host, fam string
		s         signatures.Strength
		p         evidence.Proof
	}{
		{"10.0.0.5", "Blaster", signatures.Strong, evidence.ProofTCP},
		{"10.0.0.9", "Blaster", signatures.Strong, evidence.ProofDatagram},
		{"192.0.2.77", "Welchia", signatures.Weak, evidence.ProofDatagram},
		{"2001:db8::42", "Mirai", signatures.Strong, evidence.ProofExchange},
	} {
		for k := range 3 {
			e := tftpEv(netip.MustParseAddr(h.host), at.Add(time.Duration(i*10+k)*time.Second), uint16(40000+i*100+k))
			e.Family, e.Sig, e.Evidence, e.Proof = h.fam, strings.ToLower(h.fam), h.s, h.p
			evs = append(evs, e)
		}
	}
	a := NewAggregator(Filter{}, true)
	r, _ := NewReader(bytes.NewReader(sensorLog(t, "sinkhole-1", evs)), "log")
	for r.Next() {
		a.Add(r.Sighting())
	}
	rows := a.Hosts()
	var buf bytes.Buffer
	if err := WriteHTML(&buf, rows, HTMLPage{Summary: a.Summary(len(rows), r.Stats()), Timeline: a.Timeline().Bin(TimelineBins)}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), rows
}

var polyline = regexp.MustCompile(`<polyline points="([^"]+)"`)

// TestChartOneBinIsDrawn: when every sighting falls into one bin the
// chart draws each family across the plot (it used to draw one point per
// family, which shows nothing), and the axis says where the bin starts
// and ends.
func TestChartOneBinIsDrawn(t *testing.T) {
	page, _ := oneMinutePage(t)
	s := string(page)
	lines := polyline.FindAllStringSubmatch(s, -1)
	if len(lines) != 3 {
		t.Fatalf("%d series drawn, want 3", len(lines))
	}
	for _, l := range lines {
		var xs []float64
		for _, pt := range strings.Fields(l[1]) {
			x, _ := strconv.ParseFloat(strings.Split(pt, ",")[0], 64)
			xs = append(xs, x)
		}
		if span := xs[len(xs)-1] - xs[0]; span < 0.9*float64(chartW-chartLeft-chartRight) {
			t.Errorf("a series spans %.0f of %d units: %s", span, chartW-chartLeft-chartRight, l[1])
		}
	}
	if !strings.Contains(s, ">12-06 21:00<") || !strings.Contains(s, ">12-06 21:01<") {
		t.Errorf("the axis does not say the bin's start and end")
	}
	// Equal families stay apart: the later one is dashed.
	if !strings.Contains(s, `stroke-dasharray="10 20"`) {
		t.Errorf("no dashed series")
	}
}

// TestHTMLPortColumnAndFilters: the host table has the source port (the
// last sighting's, and the first's when it differs), check boxes that
// filter without JavaScript (by CSS), a text filter the script shows, and
// a Content-Security-Policy that admits exactly the page's script.
func TestHTMLPortColumnAndFilters(t *testing.T) {
	page, rows := oneMinutePage(t)
	s := string(page)
	if !strings.Contains(s, `>source port</th>`) || !strings.Contains(s, `data-v="40002">40002<small>first 40000</small>`) {
		t.Errorf("no source port column, or not the last sighting's")
	}
	if strings.Count(s, `<tr class="host`) != len(rows) || strings.Count(s, ` datagram"`) != 2 {
		t.Errorf("rows: %d, datagram-only rows %d", strings.Count(s, `<tr class="host`), strings.Count(s, ` datagram"`))
	}
	for _, want := range []string{`id="only-strong"`, `id="only-proven"`, `body:has(#only-strong:checked) #hosts tr.host:not(.strong)`,
		`<label id="search" hidden>`, `http-equiv="Content-Security-Policy"`} {
		if !strings.Contains(s, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	csp := regexp.MustCompile(`http-equiv="Content-Security-Policy" content="([^"]*)"`).FindStringSubmatch(s)
	if csp == nil {
		t.Fatal("no policy")
	}
	policy := html.UnescapeString(csp[1])
	m := regexp.MustCompile(`script-src 'sha256-([^']+)'`).FindStringSubmatch(policy)
	sc := regexp.MustCompile(`(?s)<script>(.*)</script>`).FindStringSubmatch(s)
	if m == nil || sc == nil || scriptHash(sc[1]) != m[1] || strings.Count(s, "<script") != 1 || !strings.HasPrefix(policy, "default-src 'none';") {
		t.Errorf("the policy %q does not admit exactly the page's one script", policy)
	}
}

// TestHTMLFilterInChromium drives the page in headless Chromium: the text
// filter (from the address, #filter=...) hides the rows it does not
// match, a check box hides rows by CSS, the count says what shows, and a
// one-bin chart is visible on the screenshot (pixels of the first
// family's colour across the plot, not just its legend square).
func TestHTMLFilterInChromium(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (make deps installs it)")
	}
	page, rows := oneMinutePage(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "report.html")
	checked := filepath.Join(dir, "checked.html")
	if err := os.WriteFile(file, page, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(checked, bytes.Replace(page, []byte(`id="only-strong"`), []byte(`id="only-strong" checked`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	shown := regexp.MustCompile(`id="shown"[^>]*>([^<]*)<`)

	dom := chromium(t, bin, dir, "--dump-dom", "file://"+file+"#filter=blaster%20TCP")
	if !strings.Contains(dom, `data-ready="1"`) {
		t.Fatalf("the script did not run (the policy blocked it?):\n%.1500s", dom)
	}
	if n := strings.Count(dom, `<tr class="host`); n != len(rows) || strings.Count(dom, `hidden=""`) != len(rows)-1 {
		t.Errorf("filter 'blaster TCP': %d rows, %d hidden; want one shown", n, strings.Count(dom, `hidden=""`))
	}
	if m := shown.FindStringSubmatch(dom); m == nil || m[1] != "showing 1 of 4 hosts" || strings.Contains(dom, `<label id="search" hidden`) {
		t.Errorf("count %q, search box shown: %v", m, !strings.Contains(dom, `<label id="search" hidden`))
	}
	dom = chromium(t, bin, dir, "--dump-dom", "file://"+checked)
	if m := shown.FindStringSubmatch(dom); m == nil || m[1] != "showing 3 of 4 hosts" {
		t.Errorf("'strong evidence only' checked: count %q, want 3 of 4 (the weak host hidden by CSS)", m)
	}

	shot := filepath.Join(dir, "shot.png")
	chromium(t, bin, dir, "--screenshot="+shot, "--window-size=1280,900", "file://"+file)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	// The first series' colour, #d62728, in the chart's band of the page.
	red, cols := 0, map[int]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < min(b.Max.Y, 480); y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if near(r>>8, 0xd6) && near(g>>8, 0x27) && near(bl>>8, 0x28) {
				red++
				cols[x/40] = true
			}
		}
	}
	if red < 1000 || len(cols) < 20 {
		t.Errorf("the chart shows %d pixels of the first family's colour in %d of %d columns: blank", red, len(cols), b.Dx()/40)
	}
	if out := os.Getenv("WORMSINK_SCREENSHOT"); out != "" {
		data, _ := os.ReadFile(shot)
		os.WriteFile(out, data, 0o644) // for a human to look at
	}
}

func near(a, b uint32) bool { return a+12 >= b && b+12 >= a }
