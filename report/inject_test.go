package report

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"

	"wormsink/evidence"
	"wormsink/signatures"
)

// Names that a spreadsheet would run as formulas: the family and sensor
// names come from files and flags an attacker may have shaped.
var formulaNames = []string{"=HYPERLINK(\"http://x.example\",\"go\")", "+1+1", "-2+3", "@SUM(A1:A9)", "\tcmd", "\rcmd"}

// TestCSVFormulaCellsNeutralised: in csv and shadowserver output no cell
// starts with =, +, -, @, tab or CR; such cells get a leading quote and are
// otherwise kept.
func TestCSVFormulaCellsNeutralised(t *testing.T) {
	var evs []evidence.Event
	for i, n := range formulaNames {
		ev := dnsEv(host1, t0, "sig", n, signatures.Strong)
		ev.Port = uint16(1000 + i)
		evs = append(evs, ev)
	}
	var logs [][]byte
	for _, n := range formulaNames {
		logs = append(logs, sensorLog(t, n, evs))
	}
	rows, _ := aggregate(t, Filter{}, logs...)
	var out bytes.Buffer
	if err := WriteCSV(&out, rows); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	checkCells(t, "csv", recs[1:])
	// The names are all there, behind their quote.
	fams := recs[1][5]
	for _, n := range formulaNames {
		if !strings.Contains(fams, n) {
			t.Errorf("csv families %q lost %q", fams, n)
		}
	}
	if !strings.HasPrefix(fams, "'") {
		t.Errorf("families cell %q not neutralised", fams)
	}

	out.Reset()
	sw := NewShadowserverWriter(&out)
	for _, l := range logs {
		r, _ := NewReader(bytes.NewReader(l), "log")
		for r.Next() {
			if err := sw.Write(r.Sighting()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := sw.Flush(); err != nil {
		t.Fatal(err)
	}
	recs, err = csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1+len(formulaNames)*len(formulaNames) {
		t.Fatalf("%d shadowserver rows", len(recs)-1)
	}
	checkCells(t, "shadowserver", recs[1:])
	seen := map[string]bool{}
	for _, r := range recs[1:] {
		seen[r[ssFamily]] = true
		seen[r[ssPublicSource]] = true // the sensor
	}
	for _, n := range formulaNames {
		if !seen["'"+n] {
			t.Errorf("shadowserver has no cell %q", "'"+n)
		}
	}
}

func checkCells(t *testing.T, format string, recs [][]string) {
	t.Helper()
	for _, r := range recs {
		for j, c := range r {
			if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
				t.Errorf("%s: cell %d %q starts a formula", format, j, c)
			}
		}
	}
}
