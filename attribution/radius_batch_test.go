package attribution

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"

	"wormsink/internal/testutil"
	"wormsink/store"
	"wormsink/store/storetest"
)

// startRequest is an Accounting-Request Start for user on addr, signed
// with secret.
func startRequest(t *testing.T, secret, user string, addr net.IP) ([]byte, *radius.Packet) {
	t.Helper()
	p := radius.New(radius.CodeAccountingRequest, []byte(secret))
	rfc2865.UserName_SetString(p, user)
	rfc2866.AcctSessionID_SetString(p, "s-"+user)
	rfc2866.AcctStatusType_Set(p, rfc2866.AcctStatusType_Value_Start)
	rfc2865.FramedIPAddress_Set(p, addr)
	p.Add(rfc2865.ProxyState_Type, radius.Attribute("ps-"+user))
	p.Add(rfc2865.ProxyState_Type, radius.Attribute("second"))
	b, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b, p
}

// TestRADIUSBatchAnswersEach: requests from many NAS sockets at once, with
// forged ones among them, are read and committed in batches; every
// authentic one gets its own answer on its own socket (its identifier,
// both Proxy-States in order, a Response Authenticator layeh accepts) and
// is in the index once answered; the forged ones get none and are counted.
func TestRADIUSBatchAnswersEach(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		a, stop := newAttributor(t, db, Config{})
		defer stop()
		srv, pc, stopRADIUS := startRADIUS(t, a, "batch-secret")
		defer stopRADIUS()
		const socks, each = 16, 8
		var wg sync.WaitGroup
		errs := make(chan error, socks*each)
		for s := range socks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("udp", pc.LocalAddr().String())
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				// A forged request first on every other socket: it must not
				// hold up, or be answered in place of, the good ones.
				if s%2 == 0 {
					forged, _ := startRequest(t, "not-the-secret", fmt.Sprintf("forger-%d", s), net.IPv4(100, 65, byte(s), 1))
					c.Write(forged)
				}
				for i := range each {
					user := fmt.Sprintf("u%d-%d", s, i)
					req, p := startRequest(t, "batch-secret", user, net.IPv4(100, 66, byte(s), byte(i)))
					buf := make([]byte, 4096)
					ok := false
					for try := 0; try < 5 && !ok; try++ {
						c.Write(req)
						c.SetReadDeadline(time.Now().Add(3 * time.Second))
						n, err := c.Read(buf)
						if err != nil {
							continue // slow machine: send again, as a NAS does
						}
						resp, err := radius.Parse(buf[:n], []byte("batch-secret"))
						if err != nil || resp.Identifier != p.Identifier {
							errs <- fmt.Errorf("%s: answer %v %v", user, resp, err)
							return
						}
						if !radius.IsAuthenticResponse(buf[:n], req, []byte("batch-secret")) {
							errs <- fmt.Errorf("%s: the Response Authenticator does not check", user)
							return
						}
						ps := resp.Attributes
						if len(ps) != 2 || ps[0].Type != 33 || string(ps[0].Attribute) != "ps-"+user || string(ps[1].Attribute) != "second" {
							errs <- fmt.Errorf("%s: Proxy-States %v", user, ps)
							return
						}
						if got := a.Lookup(mustAddr(fmt.Sprintf("100.66.%d.%d", s, i)), 0, time.Now()); got.Subscriber != user {
							errs <- fmt.Errorf("%s: answered before stored: %+v", user, got)
							return
						}
						ok = true
					}
					if !ok {
						errs <- fmt.Errorf("%s: no answer", user)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		testutil.WaitFor(t, 10*time.Second, "the forged requests counted", func() bool { return srv.Stats().BadAuthenticator == socks/2 })
		// The counter moves once sendmmsg returns, maybe after a client
		// has its answer.
		testutil.WaitFor(t, 10*time.Second, "the answers counted", func() bool { return srv.Stats().Answered >= socks*each })
		if st := srv.Stats(); st.Failed != 0 || st.Malformed != 0 {
			t.Errorf("stats %+v", st)
		}
		for s := 0; s < socks; s += 2 {
			if got := a.Lookup(mustAddr(fmt.Sprintf("100.65.%d.1", s)), 0, time.Now()); got.Subscriber != "" {
				t.Errorf("a forged Start was stored: %+v", got)
			}
		}
	})
}

// TestRADIUSLengthAndPadding: octets past a request's Length are padding
// and ignored (RFC 2865 §3), so the request is answered; a Length past
// the datagram's end, and a datagram longer than any RADIUS packet, are
// malformed, counted and not answered.
func TestRADIUSLengthAndPadding(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		a, stop := newAttributor(t, db, Config{})
		defer stop()
		srv, pc, stopRADIUS := startRADIUS(t, a, "pad-secret")
		defer stopRADIUS()
		c, err := net.Dial("udp", pc.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		req, _ := startRequest(t, "pad-secret", "padded", net.IPv4(100, 67, 0, 1))
		c.Write(append(append([]byte(nil), req...), 0, 0, 0, 0, 0, 0, 0))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil || !radius.IsAuthenticResponse(buf[:n], req, []byte("pad-secret")) {
			t.Fatalf("padded request: %v", err)
		}
		short, _ := startRequest(t, "pad-secret", "short", net.IPv4(100, 67, 0, 2))
		c.Write(short[:len(short)-3])
		testutil.WaitFor(t, 10*time.Second, "the cut request counted", func() bool { return srv.Stats().Malformed == 1 })
		// Longer than any RADIUS packet (4,096 bytes): counted, not answered.
		c.Write(append(append([]byte(nil), req...), make([]byte, 5000)...))
		testutil.WaitFor(t, 10*time.Second, "the oversized datagram counted", func() bool { return srv.Stats().Malformed == 2 })
		if got := a.Lookup(mustAddr("100.67.0.2"), 0, time.Now()); got.Subscriber != "" {
			t.Errorf("a cut request was stored: %+v", got)
		}
		if st := srv.Stats(); st.Answered != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestRADIUSOnIPv6: on an IPv6 socket (read in batches, answered one by
// one) a request is answered as on IPv4.
func TestRADIUSOnIPv6(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		a, stop := newAttributor(t, db, Config{})
		defer stop()
		srv, _, stopRADIUS := startRADIUSOn(t, a, "::1 v6-secret\n", "[::1]:0")
		defer stopRADIUS()
		_, p := startRequest(t, "v6-secret", "six", net.IPv4(100, 68, 0, 1))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := radius.Exchange(ctx, p, srv.Addr().String())
		if err != nil || resp.Code != radius.CodeAccountingResponse {
			t.Fatalf("exchange: %v %v", resp, err)
		}
		if got := a.Lookup(mustAddr("100.68.0.1"), 0, time.Now()); got.Subscriber != "six" {
			t.Errorf("not stored: %+v", got)
		}
	})
}

// TestRADIUSOnWildcard: a wildcard listen address is one dual-stack
// socket, as net.ListenPacket makes it: a NAS on IPv4 (an IPv4-mapped
// peer) and one on IPv6 are both answered.
func TestRADIUSOnWildcard(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		a, stop := newAttributor(t, db, Config{})
		defer stop()
		srv, _, stopRADIUS := startRADIUSOn(t, a, "127.0.0.1 wild-secret\n::1 wild-secret\n", ":0")
		defer stopRADIUS()
		port := srv.Addr().(*net.UDPAddr).Port
		for i, host := range []string{"127.0.0.1", "::1"} {
			_, p := startRequest(t, "wild-secret", "w"+host, net.IPv4(100, 69, 0, byte(i+1)))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := radius.Exchange(ctx, p, net.JoinHostPort(host, fmt.Sprint(port)))
			cancel()
			if err != nil || resp.Code != radius.CodeAccountingResponse {
				t.Fatalf("from %s: %v %v", host, resp, err)
			}
			if got := a.Lookup(mustAddr(fmt.Sprintf("100.69.0.%d", i+1)), 0, time.Now()); got.Subscriber != "w"+host {
				t.Errorf("from %s: not stored: %+v", host, got)
			}
		}
	})
}
