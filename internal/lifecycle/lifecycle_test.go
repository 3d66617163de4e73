package lifecycle

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestServeThenShutdown: Shutdown ends Serve's context and waits for it.
func TestServeThenShutdown(t *testing.T) {
	var g Gate
	entered := make(chan struct{})
	served := make(chan error, 1)
	go func() {
		stopped, err := g.Enter()
		if err != nil || stopped {
			served <- errors.New("Enter refused")
			return
		}
		defer g.Exit()
		close(entered)
		ctx, cancel := g.Context(context.Background())
		defer cancel()
		<-ctx.Done()
		served <- nil
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if serving, err := g.Shutdown(ctx); !serving || err != nil {
		t.Fatalf("Shutdown = %v, %v", serving, err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if _, err := g.Enter(); !errors.Is(err, ErrServedTwice) {
		t.Fatalf("second Enter: %v", err)
	}
}

// TestShutdownFirst: a Shutdown before Serve reports that Serve has not
// begun (the part releases its sockets), and the Serve after it sees it.
func TestShutdownFirst(t *testing.T) {
	var g Gate
	if serving, err := g.Shutdown(context.Background()); serving || err != nil {
		t.Fatalf("Shutdown = %v, %v", serving, err)
	}
	stopped, err := g.Enter()
	if err != nil || !stopped {
		t.Fatalf("Enter after Shutdown = %v, %v", stopped, err)
	}
	g.Exit()
}

// TestBegin: Serve's start in one call, in both orders.
func TestBegin(t *testing.T) {
	closed := errors.New("closed")
	var g Gate
	ctx, end, err := g.Begin(context.Background(), closed)
	if err != nil {
		t.Fatal(err)
	}
	go func() { <-ctx.Done(); end() }()
	if _, err := g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.Begin(context.Background(), closed); !errors.Is(err, ErrServedTwice) {
		t.Fatalf("second Begin: %v", err)
	}
	var early Gate
	early.Shutdown(context.Background())
	if _, _, err := early.Begin(context.Background(), closed); err != closed {
		t.Fatalf("Begin after Shutdown: %v", err)
	}
}

// TestWaitGivesUp: Wait ends with ctx when Serve does not return.
func TestWaitGivesUp(t *testing.T) {
	var g Gate
	g.Enter()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := g.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v", err)
	}
}
