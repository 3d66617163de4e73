package attribution

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"

	"wormsink/internal/testutil"
	"wormsink/store"
	"wormsink/store/storetest"
)

// TestRADIUSAnswersOnlyStored: an authentic request is answered with its
// Proxy-State echoed once stored; a wrong secret and an unknown client get
// no answer, are counted, and store nothing.
func TestRADIUSAnswersOnlyStored(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		a, stop := newAttributor(t, db, Config{})
		defer stop()
		srv, pc, stopRADIUS := startRADIUS(t, a, "right-secret")
		defer stopRADIUS()

		req := func(secret, user string) *radius.Packet {
			p := radius.New(radius.CodeAccountingRequest, []byte(secret))
			rfc2865.UserName_SetString(p, user)
			rfc2866.AcctSessionID_SetString(p, "s-"+user)
			rfc2866.AcctStatusType_Set(p, rfc2866.AcctStatusType_Value_Start)
			rfc2865.FramedIPAddress_Set(p, net.IPv4(100, 64, 9, 9))
			p.Add(rfc2865.ProxyState_Type, radius.Attribute("proxy-1"))
			return p
		}
		c := radius.Client{Retry: 0}
		rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := c.Exchange(rctx, req("right-secret", "alice"), pc.LocalAddr().String())
		rcancel()
		if err != nil || resp.Code != radius.CodeAccountingResponse {
			t.Fatalf("authentic request: %v %v", resp, err)
		}
		if ps := resp.Get(rfc2865.ProxyState_Type); string(ps) != "proxy-1" {
			t.Errorf("Proxy-State %q not echoed", ps)
		}
		if got := a.Lookup(mustAddr("100.64.9.9"), 0, time.Now()); got.Subscriber != "alice" {
			t.Errorf("answered before stored: %+v", got)
		}
		rctx, rcancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err = c.Exchange(rctx, req("wrong-secret", "mallory"), pc.LocalAddr().String())
		rcancel()
		if err == nil {
			t.Error("a request with a wrong secret was answered")
		}
		testutil.WaitFor(t, 10*time.Second, "the forged request counted", func() bool { return srv.Stats().BadAuthenticator == 1 })
		if st := srv.Stats(); st.Answered != 1 {
			t.Errorf("stats %+v", st)
		}
		if got := a.Lookup(mustAddr("100.64.9.9"), 0, time.Now()); got.Subscriber != "alice" {
			t.Errorf("the forged Start changed the session: %+v", got)
		}
	})
}

// startRADIUS serves RADIUS accounting into a on a loopback port, taking
// requests from 127.0.0.1 signed with secret; stop ends it (before a
// stops, so no request meets a stopped attributor).
func startRADIUS(t *testing.T, a *Attributor, secret string) (srv *RADIUS, pc radiusSocket, stop func()) {
	t.Helper()
	return startRADIUSOn(t, a, "127.0.0.1/32 "+secret+"\n", "127.0.0.1:0")
}

// startRADIUSOn serves RADIUS accounting into a on listen, for the NAS
// addresses and secrets of the secrets file text secrets.
func startRADIUSOn(t *testing.T, a *Attributor, secrets, listen string) (srv *RADIUS, pc radiusSocket, stop func()) {
	t.Helper()
	s, err := ParseSecrets(stringsReader(secrets), "secrets")
	if err != nil {
		t.Fatal(err)
	}
	srv, err = NewRADIUS(RADIUSConfig{Secrets: s, Log: zerolog.Nop(), Listen: listen}, a)
	if err != nil {
		t.Fatalf("RADIUS on %s: %v", listen, err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background()) }()
	return srv, srv.conn, func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-served; err != ErrServerClosed {
			t.Errorf("Serve after Shutdown: %v", err)
		}
	}
}

// The RADIUS server and the IPFIX collector bind in New (a port taken is
// New's error), release the port when shut down before serving, and
// return ErrServerClosed from a Serve after Shutdown.
func TestListenersLifecycle(t *testing.T) {
	secrets, err := ParseSecrets(stringsReader("127.0.0.1/32 s\n"), "secrets")
	if err != nil {
		t.Fatal(err)
	}
	type listener interface {
		Addr() net.Addr
		Serve(context.Context) error
		Shutdown(context.Context) error
	}
	kinds := map[string]func(listen string) (listener, error){
		"radius": func(l string) (listener, error) { return NewRADIUS(RADIUSConfig{Secrets: secrets, Listen: l}, nil) },
		"ipfix":  func(l string) (listener, error) { return NewIPFIX(IPFIXConfig{Listen: l}, nil) },
	}
	for name, newListener := range kinds {
		t.Run(name, func(t *testing.T) {
			first, err := newListener("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := first.Addr().String()
			if _, err := newListener(addr); err == nil {
				t.Fatalf("a second listener bound %s", addr)
			}
			if err := first.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := first.Serve(context.Background()); err != ErrServerClosed {
				t.Fatalf("Serve after Shutdown: %v", err)
			}
			again, err := newListener(addr)
			if err != nil {
				t.Fatalf("the port was not released: %v", err)
			}
			again.Shutdown(context.Background())
		})
	}
}
