package attribution

import (
	"io"
	"strings"
	"testing"
	"time"
)

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

// subscriberAt is one expected look-up: addr, with no port, at t0 plus at,
// names want ("" for nobody).
type subscriberAt struct {
	addr string
	at   time.Duration
	want string
}

// checkSubscribers looks each case up in a and reports every mismatch;
// when says which moment of the test the look-ups are from.
func checkSubscribers(t *testing.T, a *Attributor, when string, cases []subscriberAt) {
	t.Helper()
	for _, c := range cases {
		if got := a.Lookup(mustAddr(c.addr), 0, t0.Add(c.at)); got.Subscriber != c.want {
			t.Errorf("%s: %s at +%v: subscriber %q, want %q", when, c.addr, c.at, got.Subscriber, c.want)
		}
	}
}
