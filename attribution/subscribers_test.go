package attribution

import (
	"net/netip"
	"strings"
	"testing"
)

// TestSubscribersFileContacts: a subscribers line may name the
// subscriber's e-mail contact and language; a bad one is FILE:LINE.
func TestSubscribersFileContacts(t *testing.T) {
	subs, err := ParseSubscribers(strings.NewReader(`
100.64.0.0/24 alice alice@example.net de
100.64.1.0/24 alice alice@example.net   # the same contact again: fine
100.64.2.0/24 alice                     # no contact on this line: fine
192.0.2.1     bob   bob@example.org
192.0.2.2     carol
`), "subs")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ id, email, lang string }{
		{"alice", "alice@example.net", "de"}, {"bob", "bob@example.org", ""}, {"carol", "", ""},
	} {
		email, lang, ok := subs.Contact(tc.id)
		if email != tc.email || lang != tc.lang || ok != (tc.email != "") {
			t.Errorf("%s: %q %q %v, want %q %q", tc.id, email, lang, ok, tc.email, tc.lang)
		}
	}
	if id := subs.Lookup(netip.MustParseAddr("100.64.2.9")); id != "alice" {
		t.Errorf("100.64.2.9 is %q", id)
	}
	for _, tc := range []struct{ in, want string }{
		{"10.0.0.0/8 x not-an-address\n", `subs:1: "not-an-address" is not a bare e-mail address`},
		{"# c\n10.0.0.0/8 x X <x@y.z>\n", `subs:2: "X" is not`},
		{"10.0.0.0/8 x <x@y.z>\n", "subs:1: "},
		{"10.0.0.0/8 x x@y.z EN\n", `subs:1: language "EN"`},
		{"10.0.0.0/8 x x@y.z en more\n", "subs:1: want"},
		{"10.0.0.0/8 x x@y.z\n10.1.0.0/16 x other@y.z\n", `subs:2: subscriber "x" already has the contact x@y.z`},
	} {
		if _, err := ParseSubscribers(strings.NewReader(tc.in), "subs"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
}
