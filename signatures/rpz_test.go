package signatures

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

func rpzLines(t *testing.T, yaml string, opt ExportOptions) (string, []string) {
	t.Helper()
	s, err := Parse("rpz.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	var warns []string
	opt.Warn = func(m string) { warns = append(warns, m) }
	var b bytes.Buffer
	if err := ExportWith(&b, s, "rpz", opt); err != nil {
		t.Fatal(err)
	}
	return b.String(), warns
}

// A listed name below a wildcard makes BIND and Unbound stop the wildcard
// there; the export must spell the wildcard out below it.
func TestRPZCoveringWildcards(t *testing.T) {
	zone, _ := rpzLines(t, `serial: 1
signatures:
  - id: w
    family: W
    domains:
      - "*.ent"
      - name: sub.ent
        action: nxdomain
      - name: a.b.ent
        action: nodata
      - name: "*.own.ent"
        action: nxdomain
`, ExportOptions{Sinkhole: []netip.Addr{netip.MustParseAddr("192.0.2.1")}})
	for _, want := range []string{
		"\n*.sub.ent A 192.0.2.1 ; below *.ent\n", // below a listed name
		"\nb.ent A 192.0.2.1 ; below *.ent\n",     // the empty non-terminal itself
		"\n*.b.ent A 192.0.2.1 ; below *.ent\n",
		"\n*.a.b.ent A 192.0.2.1 ; below *.ent\n",
		"\nown.ent A 192.0.2.1 ; below *.ent\n", // a wildcard's base
	} {
		if !strings.Contains(zone, want) {
			t.Errorf("zone lacks %q:\n%s", want, zone)
		}
	}
	for _, not := range []string{"\n*.own.ent A", "\nsub.ent A", "\n*.ent CNAME"} {
		if strings.Contains(zone, not) {
			t.Errorf("zone has %q:\n%s", not, zone)
		}
	}
}

func TestRPZUnderscore(t *testing.T) {
	const f = `serial: 1
signatures:
  - id: u
    family: U
    domains:
      - _tcp.worm.example
      - name: _udp.worm.example
        action: nxdomain
`
	ip := []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	zone, warns := rpzLines(t, f, ExportOptions{Sinkhole: ip})
	if !strings.Contains(zone, "\n_tcp.worm.example CNAME *.\n") || strings.Contains(zone, "_tcp.worm.example A") ||
		!strings.Contains(zone, "\n_udp.worm.example CNAME .\n") {
		t.Errorf("default export:\n%s", zone)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "_tcp.worm.example") || !strings.Contains(warns[0], "check-names") {
		t.Errorf("warnings %q", warns)
	}
	zone, warns = rpzLines(t, f, ExportOptions{Sinkhole: ip, KeepUnderscore: true})
	if !strings.Contains(zone, "\n_tcp.worm.example A 192.0.2.1\n") || len(warns) != 0 {
		t.Errorf("--keep-underscore: %q\n%s", warns, zone)
	}
}

func TestRPZZoneAndLength(t *testing.T) {
	name := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 50) + ".example" // 250
	f := "serial: 3\nsignatures:\n  - id: l\n    family: L\n    domains: [" + name + ", short.example]\n"
	zone, warns := rpzLines(t, f, ExportOptions{Zone: "rpz.isp.example"})
	if !strings.HasPrefix(strings.SplitN(zone, "$ORIGIN", 2)[1], " rpz.isp.example.\n") ||
		!strings.Contains(zone, "\nrpz.isp.example. IN SOA localhost. hostmaster.localhost. 3 ") ||
		!strings.Contains(zone, "\nshort.example.rpz.isp.example. CNAME *.\n") {
		t.Errorf("--zone export:\n%s", zone)
	}
	if strings.Contains(zone, "\n"+name) || len(warns) != 1 || !strings.Contains(warns[0], "left out "+name) {
		t.Errorf("too long a name not left out with a warning: %q\n%s", warns, zone)
	}
	// Relative: it must fit below RelativeOriginMax characters.
	if _, warns := rpzLines(t, f, ExportOptions{}); len(warns) != 1 {
		t.Errorf("relative export warnings %q", warns)
	}
	if _, warns := rpzLines(t, f, ExportOptions{Zone: "r"}); len(warns) != 0 {
		t.Errorf("short zone warnings %q", warns)
	}
	s, _ := Parse("x", []byte(f))
	if err := ExportWith(&bytes.Buffer{}, s, "rpz", ExportOptions{Zone: "bad..zone"}); err == nil {
		t.Error("bad zone name accepted")
	}
}
