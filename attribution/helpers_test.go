package attribution

import (
	"context"
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

// aliceAndBob parses the subscribers most NAT tests share: alice in
// 100.64.0.0/24, bob in 100.64.1.0/24.
func aliceAndBob(t *testing.T) *Subscribers {
	t.Helper()
	subs, err := ParseSubscribers(stringsReader("100.64.0.0/24 alice\n100.64.1.0/24 bob\n"), "subs")
	if err != nil {
		t.Fatal(err)
	}
	return subs
}

// feedNAT gives a the NAT events in order and waits until they are stored.
func feedNAT(t *testing.T, a *Attributor, evs ...NATEvent) {
	t.Helper()
	ctx := context.Background()
	for _, ev := range evs {
		if err := a.NAT(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}
