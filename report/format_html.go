package report

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"wormsink/evidence"
)

// HTMLPage is what the report page shows besides the rows.
type HTMLPage struct {
	Title    string
	Summary  Summary
	Timeline Binned // sightings per family over time
}

// chart geometry, in SVG user units
const (
	chartW, chartH           = 960, 280
	chartLeft, chartRight    = 60, 16
	chartTop, chartBottom    = 16, 40
	timelineBins             = 96
	chartTicks               = 6
	chartLegendMaxFamilies   = 12
	chartOtherFamiliesLegend = "other families"
)

// TimelineBins is how many bins the page's chart draws.
const TimelineBins = timelineBins

var palette = []string{"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939"}

type htmlSeries struct {
	Family string
	Total  uint64
	Color  string
	// Width, Dash and DashOffset tell apart lines on the same values (two
	// families with the same counts, as in a short test run): the first
	// series is solid and widest; the others are dashes in three phases,
	// so up to three lines on one value alternate along it.
	Width      float64
	Dash       string
	DashOffset int
	Points     string // polyline points
	Area       string // closed polygon for the fill
}

type htmlTick struct {
	X      float64
	Label  string
	Anchor string // keeps the first and last labels inside the picture
}

type htmlRow struct {
	HostKey, FirstKey, LastKey, EventsKey, EvidenceKey string
	ProofKey                                           string // sorts like evidence: strongest first
	Cells                                              []string
	Strong                                             bool
	Datagram                                           bool   // its only proof is lone datagrams
	Port, PortKey                                      string // the last sighting's source port
	FirstPort                                          string // the first sighting's, when it differs
}

type htmlData struct {
	Title         string
	Summary       Summary
	Strong        int
	Range         string
	W, H          int
	PlotL, PlotR  int
	PlotT, PlotB  int
	YMax          uint64
	YMid          uint64
	YMidPos       float64
	Series        []htmlSeries
	Ticks         []htmlTick
	BinWidth      string
	TailNote      string // says the last bin covers less time than the others
	BinStart      string // where the first bin starts, UTC
	Rows          []htmlRow
	HasChart      bool
	ChartSubtitle string
	Networks      [][]string // cells of the network lines' networks
	Script        template.JS
	CSP           string
}

// WriteHTML writes one self-contained page: no external assets, no network.
// It has an inline SVG chart of sightings over time per family and the host
// table, sortable by clicking a column head (inline JavaScript; the table is
// complete without it).
func WriteHTML(w io.Writer, rows []HostSummary, page HTMLPage) error {
	d := htmlData{
		Title: page.Title, Summary: page.Summary, Script: pageScript, CSP: pageCSP,
		W: chartW, H: chartH, PlotL: chartLeft, PlotR: chartW - chartRight, PlotT: chartTop, PlotB: chartH - chartBottom,
	}
	if d.Title == "" {
		d.Title = "wormsink report"
	}
	for i := range rows {
		h := &rows[i]
		if h.Evidence == EvidenceStrong {
			d.Strong++
		}
		c := h.cells()
		for _, j := range []int{5, 6, 7, 8} { // lists: let them wrap between names
			c[j] = strings.ReplaceAll(c[j], listSep, listSep+" ")
		}
		// The source port is the last sighting's: the one a carrier-grade
		// NAT look-up needs, with the last seen time.
		first := ""
		if h.FirstPort != h.LastPort {
			first = strconv.Itoa(int(h.FirstPort))
		}
		d.Rows = append(d.Rows, htmlRow{
			FirstKey:    strconv.FormatInt(h.FirstSeen.UnixMilli(), 10),
			LastKey:     strconv.FormatInt(h.LastSeen.UnixMilli(), 10),
			EventsKey:   strconv.FormatUint(h.Events, 10),
			EvidenceKey: strconv.Itoa(int(h.Evidence)),
			ProofKey:    strconv.Itoa(int(evidence.ProofTCP - h.Proof)),
			Cells:       c,
			Strong:      h.Evidence == EvidenceStrong,
			Datagram:    !h.Proof.Verified(),
			FirstPort:   first,
			Port:        strconv.Itoa(int(h.LastPort)),
			PortKey:     strconv.Itoa(int(h.LastPort)),
		})
	}
	for i := range page.Summary.NetworkRows {
		c := page.Summary.NetworkRows[i].cells()
		for _, j := range []int{5, 6, 8} {
			c[j] = strings.ReplaceAll(c[j], listSep, listSep+" ")
		}
		d.Networks = append(d.Networks, c)
	}
	hostOrder(rows, d.Rows)
	chart(&d, page.Timeline)
	return pageTmpl.Execute(w, d)
}

// hostOrder gives each row a sort key in address order.
func hostOrder(rows []HostSummary, out []htmlRow) {
	idx := make([]int, len(rows))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return rows[a].Host.Compare(rows[b].Host) })
	for rank, i := range idx {
		out[i].HostKey = fmt.Sprintf("%08d", rank)
	}
}

func chart(d *htmlData, tl Binned) {
	if len(tl.Series) == 0 {
		return
	}
	d.HasChart = true
	series := tl.Series
	if len(series) > chartLegendMaxFamilies {
		// Fold the long tail into one line so the legend stays readable.
		other := Series{Family: chartOtherFamiliesLegend, Counts: make([]uint64, len(series[0].Counts))}
		for _, s := range series[chartLegendMaxFamilies-1:] {
			other.Total = addSat(other.Total, s.Total)
			for i, c := range s.Counts {
				other.Counts[i] = addSat(other.Counts[i], c)
			}
		}
		series = append(series[:chartLegendMaxFamilies-1:chartLegendMaxFamilies-1], other)
	}
	n := len(series[0].Counts)
	var ymax uint64 = 1
	for _, s := range series {
		for _, c := range s.Counts {
			ymax = max(ymax, c)
		}
	}
	d.YMax, d.YMid = ymax, ymax/2
	plotW := float64(d.PlotR - d.PlotL)
	plotH := float64(d.PlotB - d.PlotT)
	d.YMidPos = float64(d.PlotB) - plotH*float64(d.YMid)/float64(ymax)
	// Each bin is drawn across its width (a step from its start to its
	// end), so one bin (every sighting in one minute, as in a short test
	// run) is a bar across the chart, not a single point nobody sees.
	x := func(i int) float64 { return float64(d.PlotL) + plotW*float64(i)/float64(n) }
	y := func(c uint64) float64 { return float64(d.PlotB) - plotH*float64(c)/float64(ymax) }
	for k, s := range series {
		var pts strings.Builder
		for i, c := range s.Counts {
			fmt.Fprintf(&pts, "%.1f,%.1f %.1f,%.1f ", x(i), y(c), x(i+1), y(c))
		}
		p := strings.TrimSpace(pts.String())
		area := fmt.Sprintf("%.1f,%d %s %.1f,%d", x(0), d.PlotB, p, x(n), d.PlotB)
		fam := s.Family
		if fam == "" {
			fam = "(no family: unlisted TFTP files)"
		}
		width := 2 + 2*float64(len(series)-1-k)/float64(max(len(series)-1, 1))
		dash, offset := "none", 0
		if k > 0 {
			dash, offset = "10 20", 10*((k-1)%3)
		}
		d.Series = append(d.Series, htmlSeries{Family: fam, Total: s.Total, Color: palette[k%len(palette)], Points: p, Area: area,
			Width: width, Dash: dash, DashOffset: offset})
	}
	// Labels carry the year when the log spans more than one.
	layout := "01-02 15:04"
	if tl.First.Year() != tl.Last.Year() {
		layout = "2006-01-02 15:04"
	}
	// Ticks on bin starts, the first and last bins' included; one bin
	// gets its end as well.
	last := -1
	for t := 0; t < chartTicks; t++ {
		i := t * (n - 1) / max(chartTicks-1, 1)
		if i == last {
			continue
		}
		last = i
		anchor := "middle"
		switch {
		case i == 0:
			anchor = "start"
		case i == n-1:
			anchor = "end"
		}
		d.Ticks = append(d.Ticks, htmlTick{X: x(i), Label: tl.Start.Add(time.Duration(i) * tl.Width).Format(layout), Anchor: anchor})
	}
	if n == 1 {
		d.Ticks = append(d.Ticks, htmlTick{X: x(1), Label: tl.End.Format(layout), Anchor: "end"})
	}
	d.Range = tl.First.Format(evidence.TimeFormat) + " – " + tl.Last.Format(evidence.TimeFormat)
	d.BinWidth = binWidthText(tl.Width)
	d.BinStart = tl.Start.Format("2006-01-02 15:04") + " UTC"
	if tl.TailPartial && n > 1 {
		d.TailNote = "the last bin is partial: the log ends at " + tl.Last.Format(layout)
	}
}

// binWidthText says a bin width as people do: "15 min", "1 h", "7 days".
func binWidthText(w time.Duration) string {
	switch {
	case w >= 24*time.Hour && w%(24*time.Hour) == 0:
		if w == 24*time.Hour {
			return "1 day"
		}
		return fmt.Sprintf("%d days", w/(24*time.Hour))
	case w >= time.Hour && w%time.Hour == 0:
		return fmt.Sprintf("%d h", w/time.Hour)
	case w%time.Minute == 0:
		return fmt.Sprintf("%d min", w/time.Minute)
	}
	return w.String()
}

var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{{.CSP}}">
<title>{{.Title}}</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d1d1f;background:#fff}
h1{font-size:20px;margin:0 0 4px}
h2{font-size:16px;margin:20px 0 4px}
.sum{color:#555;margin:0 0 16px}
.sum b{color:#1d1d1f}
figure{margin:0 0 20px}
figcaption{font-weight:600;margin-bottom:4px}
svg text{font:11px system-ui,sans-serif;fill:#444}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;margin:6px 0 0;padding:0;list-style:none}
.legend li::before{content:"";display:inline-block;width:10px;height:10px;margin-right:5px;background:var(--c)}
table{border-collapse:collapse;width:100%}
th,td{padding:4px 6px;border-bottom:1px solid #e5e5e5;text-align:left;white-space:nowrap}
td.wrap{white-space:normal}
th{position:sticky;top:0;background:#f5f5f7;cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" ▲"}
th[aria-sort=descending]::after{content:" ▼"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td small{display:block;color:#666}
tr.strong td:nth-child(6){color:#b00020;font-weight:600}
.filters{display:flex;flex-wrap:wrap;align-items:center;gap:6px 18px;margin:0 0 10px}
.filters input[type=search]{font:inherit;padding:3px 6px;width:22em}
#shown{color:#555}
/* The check boxes filter without JavaScript: the rows they hide are
   chosen by CSS alone. */
body:has(#only-strong:checked) #hosts tr.host:not(.strong),
body:has(#only-proven:checked) #hosts tr.host.datagram{display:none}
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p class="sum"><b id="host-count">{{len .Rows}}</b> hosts (<b>{{.Strong}}</b> with strong evidence), <b>{{.Summary.Sightings}}</b> sightings{{if .Summary.Saturated}} (counts reached 2^64-1 and were held there: the true sums are larger){{end}} from {{.Summary.Lines}} log lines{{if .Summary.Malformed}}, {{.Summary.Malformed}} malformed lines skipped{{end}}{{if .Summary.Networks}}, <b>{{.Summary.NetworkSightings}}</b> of them in <b>{{.Summary.Networks}}</b> networks (below the hosts){{end}}{{if .Range}}; {{.Range}}{{end}}</p>
{{if .HasChart}}<figure>
<figcaption>Sightings over time per family ({{.BinWidth}} bins from {{.BinStart}}{{with .TailNote}}; {{.}}{{end}})</figcaption>
<svg id="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {{.W}} {{.H}}" width="100%" role="img" aria-label="sightings over time per family">
<line x1="{{.PlotL}}" y1="{{.PlotB}}" x2="{{.PlotR}}" y2="{{.PlotB}}" stroke="#999"/>
<line x1="{{.PlotL}}" y1="{{.PlotT}}" x2="{{.PlotL}}" y2="{{.PlotB}}" stroke="#999"/>
<line x1="{{.PlotL}}" y1="{{.YMidPos}}" x2="{{.PlotR}}" y2="{{.YMidPos}}" stroke="#eee"/>
<text x="{{.PlotL}}" dx="-6" y="{{.PlotT}}" dy="4" text-anchor="end">{{.YMax}}</text>
<text x="{{.PlotL}}" dx="-6" y="{{.YMidPos}}" dy="4" text-anchor="end">{{.YMid}}</text>
<text x="{{.PlotL}}" dx="-6" y="{{.PlotB}}" dy="4" text-anchor="end">0</text>
{{range .Ticks}}<text x="{{.X}}" y="{{$.PlotB}}" dy="18" text-anchor="{{.Anchor}}">{{.Label}}</text>
{{end}}{{range .Series}}<g class="series"><title>{{.Family}}: {{.Total}} sightings</title><polygon points="{{.Area}}" fill="{{.Color}}" fill-opacity="0.12"/><polyline points="{{.Points}}" fill="none" stroke="{{.Color}}" stroke-width="{{printf "%.1f" .Width}}" stroke-dasharray="{{.Dash}}" stroke-dashoffset="{{.DashOffset}}"/></g>
{{end}}</svg>
<ul class="legend">{{range .Series}}<li style="--c:{{.Color}}">{{.Family}} ({{.Total}})</li>{{end}}</ul>
</figure>{{end}}
<div class="filters">
<label id="search" hidden>Filter <input type="search" id="filter" placeholder="host, port, family, signature, sensor…" autocomplete="off"></label>
<label><input type="checkbox" id="only-strong"> strong evidence only</label>
<label><input type="checkbox" id="only-proven"> hide hosts seen only in lone datagrams (forgeable)</label>
<span id="shown" aria-live="polite"></span>
</div>
<table id="hosts">
<thead><tr><th data-type="host">host</th><th>first seen</th><th>last seen</th><th class="num" title="source port of the last sighting (of the first, when it differs)">source port</th><th class="num">events</th><th>evidence</th><th>families</th><th>signatures</th><th>sources</th><th>sensors</th><th>proof</th><th>subscribers</th></tr></thead>
<tbody>
{{range .Rows}}<tr class="host{{if .Strong}} strong{{end}}{{if .Datagram}} datagram{{end}}"><td data-v="{{.HostKey}}">{{index .Cells 0}}</td><td data-v="{{.FirstKey}}">{{index .Cells 1}}</td><td data-v="{{.LastKey}}">{{index .Cells 2}}</td><td class="num" data-v="{{.PortKey}}">{{.Port}}{{with .FirstPort}}<small>first {{.}}</small>{{end}}</td><td class="num" data-v="{{.EventsKey}}">{{index .Cells 3}}</td><td data-v="{{.EvidenceKey}}">{{index .Cells 4}}</td><td class="wrap">{{index .Cells 5}}</td><td class="wrap">{{index .Cells 6}}</td><td class="wrap">{{index .Cells 7}}</td><td class="wrap">{{index .Cells 8}}</td><td data-v="{{.ProofKey}}">{{index .Cells 9}}</td><td class="wrap">{{index .Cells 10}}</td></tr>
{{end}}</tbody>
</table>
{{if .Networks}}<h2>Networks</h2>
<p class="sum"><b>{{.Summary.NetworkSightings}}</b> sightings the evidence line budget folded per network. These are not hosts: no host in them is named, and the sources may have been forged.</p>
<table id="networks">
<thead><tr><th>network</th><th>first seen</th><th>last seen</th><th class="num">events</th><th>evidence</th><th>families</th><th>signatures</th><th>sources</th><th>sensors</th></tr></thead>
<tbody>
{{range .Networks}}<tr class="network"><td>{{index . 0}}</td><td>{{index . 1}}</td><td>{{index . 2}}</td><td class="num">{{index . 3}}</td><td>{{index . 4}}</td><td class="wrap">{{index . 5}}</td><td class="wrap">{{index . 6}}</td><td>{{index . 7}}</td><td class="wrap">{{index . 8}}</td></tr>
{{end}}</tbody>
</table>{{end}}
<script>{{.Script}}</script>
</body>
</html>
`))

// pageScript is the page's one script: sorting, the text filter and the
// count of rows shown. The page is complete without it.
const pageScript template.JS = `
(function () {
  "use strict";
  var table = document.getElementById("hosts");
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  // The count shown is the rows the browser holds, not a number baked in.
  document.getElementById("host-count").textContent = String(rows.length);
  function key(row, col) {
    var cell = row.cells[col];
    var v = cell.getAttribute("data-v");
    return v !== null ? v : cell.textContent;
  }
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var sorted = Array.prototype.slice.call(body.rows);
      var numeric = sorted.every(function (r) { var k = key(r, col); return k !== "" && !isNaN(k); });
      sorted.sort(function (a, b) {
        var x = key(a, col), y = key(b, col), c;
        if (numeric) { c = Number(x) - Number(y); } else { c = x < y ? -1 : x > y ? 1 : 0; }
        return asc ? c : -c;
      });
      var frag = document.createDocumentFragment();
      sorted.forEach(function (r) { frag.appendChild(r); });
      body.appendChild(frag);
    });
  });
  // The text filter: every word typed must appear in the row (any case).
  // The address bar keeps it (#filter=...), so a filtered view can be
  // linked to. The check boxes work by CSS; the count reads what shows.
  var search = document.getElementById("search");
  var input = document.getElementById("filter");
  var shown = document.getElementById("shown");
  var text = rows.map(function (r) { return r.textContent.toLowerCase(); });
  function count() {
    var n = rows.filter(function (r) { return !r.hidden && getComputedStyle(r).display !== "none"; }).length;
    shown.textContent = n === rows.length ? "" : "showing " + n + " of " + rows.length + " hosts";
  }
  function apply() {
    var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    rows.forEach(function (r, i) {
      r.hidden = !words.every(function (w) { return text[i].indexOf(w) >= 0; });
    });
    count();
  }
  search.hidden = false;
  var m = /^#filter=(.*)$/.exec(location.hash);
  if (m) { try { input.value = decodeURIComponent(m[1]); } catch (e) { input.value = m[1]; } }
  input.addEventListener("input", function () {
    apply();
    history.replaceState(null, "", input.value ? "#filter=" + encodeURIComponent(input.value) : location.pathname);
  });
  ["only-strong", "only-proven"].forEach(function (id) { document.getElementById(id).addEventListener("change", count); });
  apply();
  document.body.setAttribute("data-ready", "1");
})();
`

// pageCSP lets the page run its own script and nothing else: no other
// script, no network, no plugins. A name from a log that slipped past
// escaping still could not run.
var pageCSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-" + scriptHash(string(pageScript)) + "'; base-uri 'none'; form-action 'none'"

func scriptHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return base64.StdEncoding.EncodeToString(h[:])
}
