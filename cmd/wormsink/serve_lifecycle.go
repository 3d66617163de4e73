package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"wormsink/internal/lifecycle"
)

// part is one running job of serve, in net/http's shape: its package's
// New checks the config and binds the sockets (in newServer, before
// privileges are dropped), Serve runs it until Shutdown is called or ctx
// ends, and Shutdown stops it, letting work in flight finish until its ctx
// ends. Shutdown before Serve releases what New bound.
type part interface {
	Serve(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

// readier is a part that says when it serves (the DNS shim once its
// sockets are read). serve starts the next part only then, and logs its
// start line once every part is ready.
type readier interface {
	Ready() <-chan struct{}
}

// namedPart is a part and the name its errors are prefixed with.
type namedPart struct {
	name string
	part
}

// add appends a part; parts start in the order added and stop in the
// reverse order.
func (s *server) add(name string, p part) {
	s.parts = append(s.parts, namedPart{name: name, part: p})
}

// loop adapts a job that runs until its context ends (the reload loop, the
// quarantine engine, a reader of a file) to a part: Shutdown ends the
// context and waits for the job to return.
type loop struct {
	run  func(ctx context.Context) error
	gate lifecycle.Gate
}

func newLoop(run func(ctx context.Context) error) *loop { return &loop{run: run} }

func (l *loop) Serve(ctx context.Context) error {
	stopped, err := l.gate.Enter()
	if err != nil || stopped {
		return err
	}
	defer l.gate.Exit()
	ctx, cancel := l.gate.Context(ctx)
	defer cancel()
	return l.run(ctx)
}

func (l *loop) Shutdown(ctx context.Context) error {
	_, err := l.gate.Shutdown(ctx)
	return err
}

// runParts serves every part: it starts them in order, each once the one
// before is ready, then runs until ctx ends (SIGTERM, SIGINT) or the first
// part fails, and stops them in the reverse order, all within
// --shutdown-timeout. It returns the first failure, named by its part.
func (s *server) runParts(ctx context.Context, started func()) error {
	// The parts are stopped one by one by Shutdown, not all at once by
	// the signal's context; their own context ends only once they are
	// stopped, or given up on.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	type exit struct {
		i   int
		err error
	}
	exits := make(chan exit, len(s.parts))
	done := make([]chan struct{}, len(s.parts))
	var runErr error
	fail := func(e exit) {
		if e.err != nil && runErr == nil {
			runErr = fmt.Errorf("%s: %w", s.parts[e.i].name, e.err)
		}
	}
	n := 0
start:
	for i, p := range s.parts {
		done[i] = make(chan struct{})
		n++
		go func() {
			defer close(done[i])
			exits <- exit{i, p.Serve(sctx)}
		}()
		r, ok := p.part.(readier)
		if !ok {
			continue
		}
		for {
			select {
			case <-r.Ready():
				continue start
			case e := <-exits:
				// A part that ended without an error is done (a log
				// followed to its end), not failed; but one that ends
				// before it was ready never served.
				if e.i == i && e.err == nil {
					e.err = errors.New("stopped before it served")
				}
				if fail(e); runErr != nil {
					break start
				}
			case <-ctx.Done():
				break start
			}
		}
	}
	if runErr == nil && ctx.Err() == nil {
		started()
	wait:
		for {
			select {
			case <-ctx.Done():
				break wait
			case e := <-exits:
				if fail(e); runErr != nil {
					break wait
				}
			}
		}
	}
	s.log.Info().Str("event", "stop").Msg("shutting down")
	dctx, dcancel := context.WithTimeout(context.Background(), s.cfg.shutdown)
	defer dcancel()
	// Parts a failed start never reached release what they bound.
	for i := len(s.parts) - 1; i >= n; i-- {
		s.parts[i].Shutdown(dctx)
	}
	var late []string
	for i := n - 1; i >= 0; i-- {
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			if err := s.parts[i].Shutdown(dctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				s.log.Warn().Str("event", "stop").Str("part", s.parts[i].name).Str("error", err.Error()).Msg("part did not stop cleanly")
			}
			<-done[i]
		}()
		select {
		case <-stopped:
			continue
		case <-dctx.Done():
		}
		// Past the deadline each part still gets a moment to close what
		// it holds (its Shutdown does so at once on an ended context).
		select {
		case <-stopped:
		case <-time.After(stopGrace):
			late = append(late, s.parts[i].name)
		}
	}
	if len(late) > 0 {
		s.log.Warn().Str("event", "stop").Strs("parts", late).Msg("listeners did not stop in time")
	}
	return runErr
}

// stopGrace is how long a part may take to return once the shutdown
// deadline has passed before serve gives up on it.
const stopGrace = 100 * time.Millisecond

// shutdownAll releases what the parts bound after a start that failed
// before runParts (Shutdown before Serve).
func (s *server) shutdownAll() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for i := len(s.parts) - 1; i >= 0; i-- {
		s.parts[i].Shutdown(ctx)
	}
}
