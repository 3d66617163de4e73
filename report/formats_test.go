package report

import (
	"bytes"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"

	"wormsink/evidence"
	"wormsink/signatures"
)

// TestFormatRules: the formats that file complaints, and only they, list
// strong, proven hosts by default; the operator can widen both rules.
func TestFormatRules(t *testing.T) {
	seen := map[string]bool{}
	complaints := 0
	for _, f := range Formats() {
		if seen[f.Name] {
			t.Errorf("format %s twice", f.Name)
		}
		seen[f.Name] = true
		if (f.stream == nil) == (f.write == nil) {
			t.Errorf("%s: want exactly one of stream and write", f.Name)
		}
		if g, err := LookupFormat(f.Name); err != nil || g.Name != f.Name {
			t.Errorf("LookupFormat(%s): %v %v", f.Name, g, err)
		}
		flt := f.Rules(&Options{})
		if flt.StrongOnly != f.Complaint || flt.VerifiedOnly != f.Complaint {
			t.Errorf("%s: default rules %+v, complaint %v", f.Name, flt, f.Complaint)
		}
		weak := signatures.Weak
		if flt := f.Rules(&Options{Evidence: &weak, IncludeUnverified: true}); flt.StrongOnly || flt.VerifiedOnly {
			t.Errorf("%s: --evidence weak --include-unverified still filters: %+v", f.Name, flt)
		}
		if f.Complaint {
			complaints++
			if !f.HostsOnly {
				t.Errorf("%s files complaints about hosts but lists networks", f.Name)
			}
		}
	}
	for _, n := range []string{"shadowserver", "shadowserver6", "xarf"} {
		if f, _ := LookupFormat(n); f == nil || !f.Complaint {
			t.Errorf("%s is not a complaint format", n)
		}
	}
	if complaints != 3 {
		t.Errorf("%d complaint formats, want 3", complaints)
	}
	if _, err := LookupFormat("shadowserver7"); err == nil || !strings.Contains(err.Error(), "shadowserver6") {
		t.Errorf("unknown format: %v", err)
	}
	xarf, _ := LookupFormat("xarf")
	if _, err := xarf.New(&bytes.Buffer{}, Options{}); err == nil {
		t.Error("xarf without a reporter")
	}
}

// TestStreamRulesMatchAggregateRules: shadowserver rows (one per sighting)
// and xarf hosts (one per host) leave out the same hosts when each host
// has one line.
func TestStreamRulesMatchAggregateRules(t *testing.T) {
	var evs []evidence.Event
	for i, c := range []struct {
		s signatures.Strength
		p evidence.Proof
	}{{signatures.Strong, evidence.ProofTCP}, {signatures.Strong, evidence.ProofDatagram}, {signatures.Weak, evidence.ProofTCP}, {signatures.Weak, evidence.ProofDatagram}} {
		e := tftpEv(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), t0, 1000)
		e.Evidence, e.Proof = c.s, c.p
		evs = append(evs, e)
	}
	log := sensorLog(t, "s", evs)
	ss, _ := LookupFormat("shadowserver")
	xarf, _ := LookupFormat("xarf")
	var out bytes.Buffer
	rs, _ := ss.New(&out, Options{})
	rx, _ := xarf.New(&out, Options{Reporter: Reporter{Org: "x", Contact: "a@x.example", Domain: "x.example"}})
	a := NewAggregator(rx.Filter(), false)
	r, _ := NewReader(bytes.NewReader(log), "log")
	for r.Next() {
		if err := rs.Add(r.Sighting()); err != nil {
			t.Fatal(err)
		}
		a.Add(r.Sighting())
	}
	ns, err := rs.Finish(nil, r.Stats())
	if err != nil {
		t.Fatal(err)
	}
	nx, err := rx.Finish(a, r.Stats())
	if err != nil {
		t.Fatal(err)
	}
	if rs.left != a.LeftOut() || rs.left != (LeftOut{Weak: 2, Unverified: 1}) {
		t.Errorf("shadowserver left out %+v, xarf %+v; want 2 weak, 1 unverified", rs.left, a.LeftOut())
	}
	if len(ns) != 1 || len(nx) != 1 || strings.Replace(ns[0], "rows", "hosts", -1) != strings.Replace(nx[0], "xarf", "shadowserver", 1) {
		t.Errorf("notes differ: %q %q", ns, nx)
	}
	// The CSV header, one Shadowserver row, one X-ARF report.
	if o := out.String(); strings.Count(o, "\n") != 3 || !strings.Contains(o, "10.0.0.1") ||
		strings.Contains(o, "10.0.0.2") || strings.Contains(o, "10.0.0.3") || strings.Contains(o, "10.0.0.4") {
		t.Errorf("filed:\n%s", out.String())
	}
}

// TestFormatsDocumented: docs/report-formats.md names every format and
// says which file complaints, as the registry does.
func TestFormatsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/report-formats.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range Formats() {
		row := regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(f.Name) + "` \\|.*\\| (yes|no) \\|$").FindSubmatch(doc)
		if row == nil {
			t.Errorf("docs/report-formats.md has no row for %s", f.Name)
		} else if (string(row[1]) == "yes") != f.Complaint {
			t.Errorf("docs/report-formats.md: %s complaints %s, the registry says %v", f.Name, row[1], f.Complaint)
		}
	}
}

func TestDefaultFormatIsRegistered(t *testing.T) {
	if f, err := LookupFormat(DefaultFormat); err != nil || f.Complaint {
		t.Errorf("default format %q: %v %v", DefaultFormat, f, err)
	}
}
