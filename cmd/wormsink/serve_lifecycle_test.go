package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// trace records what the parts of one runParts did, in order.
type trace struct {
	mu     sync.Mutex
	events []string
}

func (t *trace) add(e string) {
	t.mu.Lock()
	t.events = append(t.events, e)
	t.mu.Unlock()
}

func (t *trace) list() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.events)
}

// tracedPart serves until Shutdown; ready, when set, is closed by the
// test (a readier); fail, when set, ends Serve with its error.
type tracedPart struct {
	name  string
	t     *trace
	ready chan struct{}
	fail  chan error
	stop  chan struct{}
	auto  chan struct{} // closed by Serve: ready as soon as it serves
}

func newTraced(name string, t *trace) *tracedPart {
	return &tracedPart{name: name, t: t, stop: make(chan struct{})}
}

func (p *tracedPart) Serve(ctx context.Context) error {
	p.t.add("serve " + p.name)
	if p.auto != nil {
		close(p.auto)
	}
	select {
	case <-p.stop:
		return nil
	case err := <-p.fail:
		return err
	case <-ctx.Done():
		p.t.add("context " + p.name)
		return nil
	}
}

func (p *tracedPart) Shutdown(ctx context.Context) error {
	p.t.add("shutdown " + p.name)
	close(p.stop)
	return nil
}

type readyPart struct{ *tracedPart }

func (p readyPart) Ready() <-chan struct{} {
	if p.auto != nil {
		return p.auto
	}
	return p.ready
}

// selfReady is a readier that is ready once it serves.
func selfReady(name string, t *trace) readyPart {
	p := newTraced(name, t)
	p.auto = make(chan struct{})
	return readyPart{p}
}

func testServer() *server {
	return &server{cfg: &serveConfig{shutdown: 5 * time.Second}, log: zerolog.Nop()}
}

// TestRunPartsOrder: the parts start in order, each after the one before
// is ready, the start is announced once all serve, and they stop in the
// reverse order by Shutdown, not by their context.
func TestRunPartsOrder(t *testing.T) {
	tr := &trace{}
	s := testServer()
	a := selfReady("a", tr)
	b := readyPart{newTraced("b", tr)}
	b.ready = make(chan struct{})
	c := selfReady("c", tr)
	s.add("a", a)
	s.add("b", b)
	s.add("c", c)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	errc := make(chan error, 1)
	go func() { errc <- s.runParts(ctx, func() { tr.add("started"); close(started) }) }()

	waitFor(t, "b serving", 10*time.Second, func() bool { return slices.Contains(tr.list(), "serve b") })
	// c waits for b's readiness.
	if got := tr.list(); slices.Contains(got, "serve c") || slices.Contains(got, "started") {
		t.Fatalf("c started before b was ready: %v", got)
	}
	close(b.ready)
	<-started
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("runParts: %v", err)
	}
	got := tr.list()
	starts := withPrefix(got, "serve ")
	if want := []string{"serve a", "serve b", "serve c"}; !slices.Equal(starts, want) {
		t.Errorf("start order %v, want %v", starts, want)
	}
	if i, j := slices.Index(got, "serve c"), slices.Index(got, "started"); j < i {
		t.Errorf("start announced before every part served: %v", got)
	}
	stops := withPrefix(got, "shutdown ")
	if want := []string{"shutdown c", "shutdown b", "shutdown a"}; !slices.Equal(stops, want) {
		t.Errorf("stop order %v, want %v", stops, want)
	}
	if ctxs := withPrefix(got, "context "); len(ctxs) > 0 {
		t.Errorf("parts stopped by their context, not by Shutdown: %v", ctxs)
	}
}

// TestRunPartsFirstFailure: the first part to fail stops the others and
// its error, named by the part, is what serve returns.
func TestRunPartsFirstFailure(t *testing.T) {
	tr := &trace{}
	s := testServer()
	a, b := newTraced("a", tr), newTraced("b", tr)
	b.fail = make(chan error, 1)
	s.add("first", a)
	s.add("second", b)
	errc := make(chan error, 1)
	started := make(chan struct{})
	go func() { errc <- s.runParts(context.Background(), func() { close(started) }) }()
	<-started
	b.fail <- errors.New("socket gone")
	err := <-errc
	if err == nil || err.Error() != "second: socket gone" {
		t.Fatalf("runParts = %v, want the failing part's error", err)
	}
	if got := tr.list(); !slices.Contains(got, "shutdown a") {
		t.Errorf("the other part was not shut down: %v", got)
	}
}

// TestRunPartsFailureBeforeReady: a part that fails before it is ready
// stops the start; the parts after it never serve and no start is
// announced.
func TestRunPartsFailureBeforeReady(t *testing.T) {
	tr := &trace{}
	s := testServer()
	a := readyPart{newTraced("a", tr)}
	a.ready = make(chan struct{})
	a.fail = make(chan error, 1)
	a.fail <- errors.New("bind: address in use")
	s.add("dns", a)
	s.add("later", newTraced("later", tr))
	err := s.runParts(context.Background(), func() { tr.add("started") })
	if err == nil || !strings.HasPrefix(err.Error(), "dns: bind") {
		t.Fatalf("runParts = %v, want dns's error", err)
	}
	got := tr.list()
	if slices.Contains(got, "serve later") || slices.Contains(got, "started") {
		t.Errorf("start went on after a failure: %v", got)
	}
	if !slices.Contains(got, "shutdown later") {
		t.Errorf("the part never started did not release what it bound: %v", got)
	}
}

// TestLoopShutdown: the adapter for jobs that run until their context
// ends stops them on Shutdown, also when Shutdown comes first.
func TestLoopShutdown(t *testing.T) {
	tr := &trace{}
	l := newLoop(func(ctx context.Context) error { tr.add("run"); <-ctx.Done(); return nil })
	errc := make(chan error, 1)
	go func() { errc <- l.Serve(context.Background()) }()
	waitFor(t, "loop serving", 10*time.Second, func() bool { return len(tr.list()) > 0 })
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	early := newLoop(func(ctx context.Context) error { <-ctx.Done(); return nil })
	early.Shutdown(context.Background())
	if err := early.Serve(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func withPrefix(events []string, prefix string) []string {
	var out []string
	for _, e := range events {
		if strings.HasPrefix(e, prefix) {
			out = append(out, e)
		}
	}
	return out
}
