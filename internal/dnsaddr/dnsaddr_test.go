package dnsaddr

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1": "192.0.2.1:53", "192.0.2.1:5353": "192.0.2.1:5353", "2001:db8::1": "[2001:db8::1]:53",
		"[2001:db8::1]": "[2001:db8::1]:53", "[2001:db8::1]:54": "[2001:db8::1]:54", " 10.0.0.1 ": "10.0.0.1:53",
		"[::ffff:192.0.2.1]:53": "192.0.2.1:53",
	} {
		if got, err := Parse(in); err != nil || got.String() != want {
			t.Errorf("Parse(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for bad, says := range map[string]string{
		"":                    "empty",
		"resolver.example":    "not a host name",
		"resolver.example:53": "not a host name",
		"1.2.3.4:0":           "port 0",
		"1.2.3.4:x":           `port "x"`,
		"[2001:db8::1]:99999": `port "99999"`,
		"fe80::1%eth0":        "zone",
		"192.0.2.1:53:53":     "want IP",
	} {
		if _, err := Parse(bad); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("Parse(%q) = %v, want an error saying %q", bad, err, says)
		}
	}
}

func TestParseList(t *testing.T) {
	got, err := ParseList("192.0.2.1, [2001:db8::1]:54,,")
	want := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:53"), netip.MustParseAddrPort("[2001:db8::1]:54")}
	if err != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("ParseList = %v, %v", got, err)
	}
	if _, err := ParseList("192.0.2.1,ns.example"); err == nil {
		t.Fatal("a name in the list accepted")
	}
}

// FuzzParse: no input panics, and what is accepted is an address with a
// port that reads back as itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "[::1]:53", "ns.example", "1.2.3.4:0", "fe80::1%eth0", "[", ":53"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ap, err := Parse(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error on more than one line: %q", err)
			}
			return
		}
		if !ap.IsValid() || ap.Port() == 0 || ap.Addr().Zone() != "" || ap.Addr().Is4In6() {
			t.Fatalf("Parse(%q) = %v", s, ap)
		}
		if again, err := Parse(ap.String()); err != nil || again != ap {
			t.Fatalf("Parse(%q) = %v, read back as %v, %v", s, ap, again, err)
		}
	})
}
