package quarantine

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"wormsink/evidence"
	"wormsink/signatures"
)

func TestPolicyFile(t *testing.T) {
	p, err := LoadPolicy("testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.SelfReleaseMax != 2 || p.SelfReleaseGrace != 15*time.Minute || p.AutoRelease != 72*time.Hour {
		t.Fatalf("self-release %d/%v auto %v", p.SelfReleaseMax, p.SelfReleaseGrace, p.AutoRelease)
	}
	for _, tc := range []struct {
		family string
		ev     signatures.Strength
		proof  evidence.Proof
		want   bool
	}{
		{"Mirai", signatures.Strong, evidence.ProofTCP, true},
		{"Mirai", signatures.Strong, evidence.ProofTrustedSource, true},
		{"Mirai", signatures.Strong, evidence.ProofDatagram, false},
		{"Mirai", signatures.Weak, evidence.ProofTCP, false},
		{"blaster", signatures.Strong, evidence.ProofTrustedSource, false}, // its own rule
		{"Blaster", signatures.Strong, evidence.ProofExchange, true},
		{"Conficker", signatures.Strong, evidence.ProofTCP, false},
	} {
		if got := p.Enters(evidence.DNSSinkhole, tc.family, tc.ev, tc.proof); got != tc.want {
			t.Errorf("Enters(%s, %v, %v) = %v, want %v", tc.family, tc.ev, tc.proof, got, tc.want)
		}
	}
	for name, want := range map[string]bool{
		"windowsupdate.com": true, "download.windowsupdate.com": true, "update.microsoft.com": false,
		"www.update.microsoft.com": true, "support.isp.example": true, "example.com": false, "xwindowsupdate.com": false,
	} {
		if got := p.Allowed(name); got != want {
			t.Errorf("Allowed(%s) = %v, want %v", name, got, want)
		}
	}
	if !p.Excluded(netip.MustParseAddr("198.51.100.7")) || !p.Excluded(netip.MustParseAddr("::ffff:198.51.100.7")) || p.Excluded(netip.MustParseAddr("10.0.0.1")) {
		t.Error("never networks")
	}
	if n := p.Notice("BLASTER"); !strings.Contains(n.Title, "Blaster") || len(n.Links) != 1 {
		t.Errorf("Blaster notice %+v", n)
	}
	if n := p.Notice("Mirai"); n.Title != "A device on your connection is infected" {
		t.Errorf("default notice %+v", n)
	}
	if !strings.Contains(p.Contact, "0800") {
		t.Errorf("contact %q", p.Contact)
	}
}

func TestPolicyDefaults(t *testing.T) {
	p, err := ParsePolicy("empty.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Auto || !p.Enters(evidence.DNSSinkhole, "x", signatures.Strong, evidence.ProofExchange) || p.Enters(evidence.DNSSinkhole, "x", signatures.Strong, evidence.ProofDatagram) {
		t.Fatal("an empty policy file: the default rule")
	}
	// A TFTP follow-up can be guessed: it does not quarantine unless the
	// policy says so; a TCP-proven TFTP request does.
	if p.Enters(evidence.TFTPRefused, "x", signatures.Strong, evidence.ProofExchange) || !p.Enters(evidence.TFTPRefused, "x", signatures.Strong, evidence.ProofTCP) {
		t.Fatal("TFTP exchange by default")
	}
	p, err = ParsePolicy("p.yaml", []byte("enter:\n  tftp_exchange: true\n"))
	if err != nil || !p.Enters(evidence.TFTPRefused, "x", signatures.Strong, evidence.ProofExchange) {
		t.Fatalf("tftp_exchange: true: %v", err)
	}
}

func TestPolicyErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"enter:\n  proof: [datagram]\n", "p.yaml:2: enter.proof: datagram proves nothing"},
		{"enter:\n  families:\n    Blaster:\n      proof: [tcp, datagram]\n", "p.yaml:4: enter.families.Blaster.proof: datagram"},
		{"allow:\n  - ok.example\n  - \"bad name!\"\n", "p.yaml:2: allow entry"},
		{"self_release:\n  max: -1\n", "p.yaml:2: self_release.max"},
		{"self_release:\n  grace: soon\n", "p.yaml:2: self_release.grace"},
		{"auto_release: 3\n", "p.yaml:1: auto_release"},
		{"colour: red\n", `p.yaml:1: policy: unknown key "colour"`},
		{"enter:\n  evidence: strong\n  evidence: weak\n", "p.yaml:3: enter: key \"evidence\" repeated"},
		{"never: [10.0.0.0/33]\n", "p.yaml:1: never:"},
		{"notice:\n  default:\n    links: [javascript:alert(1)]\n", "p.yaml:3: notice.default.links"},
		{"enter: [\n", "p.yaml:"},
		{"a: 1\n---\nb: 2\n", "second YAML document"},
	} {
		_, err := ParsePolicy("p.yaml", []byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.text, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error of several lines: %q", tc.text, err)
		}
	}
	long := "allow: [\"" + strings.Repeat("x", 100000) + "!\"]\n"
	if _, err := ParsePolicy("p.yaml", []byte(long)); err == nil || len(err.Error()) > 300 {
		t.Errorf("a long bad value echoed whole: %d bytes", len(err.Error()))
	}
}

func FuzzParsePolicy(f *testing.F) {
	b, _ := os.ReadFile("testdata/policy.yaml")
	f.Add(b)
	f.Add([]byte("enter:\n  proof: tcp\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePolicy("f.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.yaml") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		for _, r := range append([]Rule{p.Enter}, mapValues(p.Families)...) {
			for _, pr := range r.Proofs {
				if pr == evidence.ProofDatagram {
					t.Fatal("a policy that quarantines on a datagram was taken")
				}
			}
		}
	})
}

func mapValues(m map[string]Rule) []Rule {
	var out []Rule
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
