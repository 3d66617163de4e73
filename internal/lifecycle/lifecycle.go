// Package lifecycle holds what every running part's Serve and Shutdown
// share: the order between them, whichever comes first.
package lifecycle

import (
	"context"
	"errors"
	"sync"
)

// ErrServedTwice is what a second Serve gets.
var ErrServedTwice = errors.New("served twice")

// Gate orders a part's Serve against its Shutdown, in net/http's shape:
// Serve runs once; Shutdown stops it and waits for it to return, or,
// when it comes first, makes a later Serve return at once (the part then
// releases what its New bound itself). The zero value is ready.
type Gate struct {
	mu      sync.Mutex
	serving bool
	stopped bool
	stop    chan struct{} // closed by Stop
	done    chan struct{} // closed by Exit
}

func (g *Gate) init() {
	if g.stop == nil {
		g.stop, g.done = make(chan struct{}), make(chan struct{})
	}
}

// Enter begins Serve. It fails for a second Serve; stopped reports that
// Shutdown came first, and Serve should return at once. After a nil error
// Serve must call Exit when it returns.
func (g *Gate) Enter() (stopped bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.init()
	if g.serving {
		return false, ErrServedTwice
	}
	g.serving = true
	return g.stopped, nil
}

// Exit ends Serve: a Shutdown waiting in Wait returns.
func (g *Gate) Exit() { close(g.done) }

// Stop begins Shutdown: Stopped is closed. It reports whether Serve has
// begun; if not, the caller releases what New bound (a Serve that comes
// later sees stopped).
func (g *Gate) Stop() (serving bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.init()
	if !g.stopped {
		g.stopped = true
		close(g.stop)
	}
	return g.serving
}

// Stopped is closed once Shutdown has begun.
func (g *Gate) Stopped() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.init()
	return g.stop
}

// Wait waits for Serve to return, or for ctx.
func (g *Gate) Wait(ctx context.Context) error {
	g.mu.Lock()
	g.init()
	done := g.done
	g.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown is Stop then, when Serve has begun, Wait: the whole of a
// part's Shutdown when Serve releases everything itself. It reports
// whether Serve had begun.
func (g *Gate) Shutdown(ctx context.Context) (serving bool, err error) {
	if !g.Stop() {
		return false, nil
	}
	return true, g.Wait(ctx)
}

// Begin is what Serve starts with: Enter, then Context. It returns
// ErrServedTwice to a second Serve and closed when Shutdown came first;
// otherwise Serve runs under the context returned and defers end.
func (g *Gate) Begin(ctx context.Context, closed error) (_ context.Context, end func(), _ error) {
	stopped, err := g.Enter()
	if err != nil {
		return nil, nil, err
	}
	if stopped {
		g.Exit()
		return nil, nil, closed
	}
	ctx, cancel := g.Context(ctx)
	return ctx, func() { cancel(); g.Exit() }, nil
}

// Context is ctx ended also by Shutdown: what Serve runs its work under.
func (g *Gate) Context(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := g.Stopped()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
