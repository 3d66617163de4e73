package desk

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"wormsink/report"
)

// chartData is a case's sightings per family over time, drawn as the HTML
// report draws its timeline: one line per family over equal time bins.
type chartData struct {
	W, H, L, R, T, B int
	YMax             uint64
	Series           []chartSeries
	Ticks            []chartTick
	Bin              string
}

type chartSeries struct {
	Family string
	Total  uint64
	Color  string
	Points string
}

type chartTick struct {
	X      float64
	Label  string
	Anchor string
}

const chartBins = 48

var chartPalette = []string{"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// buildChart bins the lines given (the newest of a case); nil when there
// is nothing to draw.
func buildChart(lines []EvidenceLine) *chartData {
	var p report.Parser
	var rec report.Sighting
	type pt struct {
		at  time.Time
		fam string
		n   uint64
	}
	var pts []pt
	for _, l := range lines {
		if k, _ := p.Parse([]byte(l.Line), &rec); k == report.LineEvidence {
			pts = append(pts, pt{rec.Time, string(rec.Family), rec.Count})
		}
	}
	if len(pts) == 0 {
		return nil
	}
	first, last := pts[0].at, pts[0].at
	for _, x := range pts {
		first, last = minTime(first, x.at), maxTime(last, x.at)
	}
	width := last.Sub(first)/chartBins + 1
	for _, w := range []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 6 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour} {
		if w >= width {
			width = w
			break
		}
	}
	start := first.Truncate(width)
	n := int(last.Sub(start)/width) + 1
	byFam := map[string][]uint64{}
	totals := map[string]uint64{}
	for _, x := range pts {
		c := byFam[x.fam]
		if c == nil {
			c = make([]uint64, n)
			byFam[x.fam] = c
		}
		c[int(x.at.Sub(start)/width)] += x.n
		totals[x.fam] += x.n
	}
	fams := make([]string, 0, len(byFam))
	for f := range byFam {
		fams = append(fams, f)
	}
	slices.SortFunc(fams, func(a, b string) int {
		if totals[a] != totals[b] {
			if totals[a] > totals[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	d := &chartData{W: 900, H: 240, L: 50, R: 885, T: 14, B: 206, YMax: 1, Bin: width.String()}
	for _, c := range byFam {
		for _, v := range c {
			d.YMax = max(d.YMax, v)
		}
	}
	x := func(i int) float64 {
		if n == 1 {
			return float64(d.L+d.R) / 2
		}
		return float64(d.L) + float64(d.R-d.L)*float64(i)/float64(n-1)
	}
	y := func(v uint64) float64 { return float64(d.B) - float64(d.B-d.T)*float64(v)/float64(d.YMax) }
	for k, f := range fams {
		var b strings.Builder
		for i, v := range byFam[f] {
			fmt.Fprintf(&b, "%.1f,%.1f ", x(i), y(v))
		}
		name := f
		if name == "" {
			name = "(no family)"
		}
		d.Series = append(d.Series, chartSeries{Family: name, Total: totals[f], Color: chartPalette[k%len(chartPalette)], Points: strings.TrimSpace(b.String())})
	}
	for t := 0; t < 5; t++ {
		i := t * (n - 1) / 4
		anchor := "middle"
		if t == 0 {
			anchor = "start"
		} else if t == 4 {
			anchor = "end"
		}
		d.Ticks = append(d.Ticks, chartTick{X: x(i), Label: start.Add(time.Duration(i) * width).UTC().Format("01-02 15:04"), Anchor: anchor})
		if n == 1 {
			break
		}
	}
	return d
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
