// Package testutil holds what the tests of several packages share: the real
// programs they start (resolvers, PostgreSQL, tcpdump, wormsink), found and waited for.
package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultReadyTimeout is how long a Daemon may take to become ready: the
// test machine is loaded, and named or pdns_recursor loading a zone can
// take seconds there.
const DefaultReadyTimeout = 60 * time.Second

// Proc is a program a test runs in the background (a resolver, an
// authoritative server, a capture). Its output is kept for the failure
// message.
type Proc struct {
	Name string
	Addr string // 127.0.0.1:Port for a Daemon
	Port int
	bin  string
	args []string
	cmd  *exec.Cmd
	logs SyncBuffer
	done chan struct{}
}

// Launch starts bin with args; ctx's end kills it. It does not wait for
// anything: Daemon.Start does.
func Launch(ctx context.Context, name, bin string, args ...string) (*Proc, error) {
	p := &Proc{Name: name, bin: bin, args: args}
	return p, p.run(ctx)
}

func (p *Proc) run(ctx context.Context) error {
	p.cmd = exec.CommandContext(ctx, p.bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.logs, &p.logs
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("%s: start: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.done = done
	go func(c *exec.Cmd) { c.Wait(); close(done) }(p.cmd)
	return nil
}

// Log is everything the program wrote to stdout and stderr so far.
func (p *Proc) Log() string { return p.logs.String() }

// Done is closed when the program has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Pid is the running program's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the program.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Exited reports whether the program has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill ends the program and waits for it.
func (p *Proc) Kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// Stop ends the program the way its init system would (SIGTERM) and waits;
// a program still running after 20 s is killed and Stop says so.
func (p *Proc) Stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(20 * time.Second):
		p.Kill()
		return fmt.Errorf("%s did not stop on SIGTERM", p.Name)
	}
}

// Restart stops the program (SIGTERM) and starts it again with the same
// arguments, as a service restart does.
func (p *Proc) Restart(ctx context.Context) error {
	if err := p.Stop(); err != nil {
		return err
	}
	return p.run(ctx)
}

// PortInUse reports whether a server's log says its port was taken.
func PortInUse(log string) bool {
	l := strings.ToLower(log)
	return strings.Contains(l, "address already in use") || strings.Contains(l, "address in use")
}

// Daemon is a server program started on a free loopback port, retried on
// another port when a process of another test takes the one picked
// before the program binds it.
type Daemon struct {
	Name string
	// Command returns the program (a path, or a name Find looks up) and
	// its arguments for port; it may write the configuration files the
	// program reads.
	Command func(port int) (bin string, args []string, err error)
	// Ready returns nil once the program at addr (127.0.0.1:port) serves
	// what the test needs; nil Ready: started is ready.
	Ready func(addr string) error
	// Port is a fixed port; 0 picks a free one.
	Port int
	// Timeout for Ready to hold; 0 is DefaultReadyTimeout.
	Timeout time.Duration
}

// Start runs the daemon and waits until it is ready. It returns errors
// rather than failing a test, so that resolvers can start in parallel
// goroutines; ctx's end kills it. A daemon that is not ready is killed.
func (d Daemon) Start(ctx context.Context) (*Proc, error) {
	timeout := d.Timeout
	if timeout == 0 {
		timeout = DefaultReadyTimeout
	}
	for attempt := 0; ; attempt++ {
		port := d.Port
		if port == 0 {
			var err error
			if port, err = freePort(); err != nil {
				return nil, err
			}
		}
		bin, args, err := d.Command(port)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Name, err)
		}
		if !strings.Contains(bin, "/") {
			path, err := Find(bin)
			if err != nil {
				return nil, fmt.Errorf("%s is not installed: run `make deps` (scripts/deps.sh)", bin)
			}
			bin = path
		}
		p := &Proc{Name: d.Name, Addr: fmt.Sprintf("127.0.0.1:%d", port), Port: port, bin: bin, args: args}
		if err := p.run(ctx); err != nil {
			return nil, err
		}
		err = p.waitReady(d.Ready, timeout)
		if err == nil {
			return p, nil
		}
		p.Kill()
		if errors.Is(err, errPortTaken) && d.Port == 0 && attempt < 4 {
			continue
		}
		return nil, err
	}
}

// StartT is Start for the test's own goroutine: it fails t on error and
// kills the daemon when the test ends.
func (d Daemon) StartT(t testing.TB) *Proc {
	t.Helper()
	p, err := d.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

var errPortTaken = errors.New("port in use")

func (p *Proc) waitReady(ready func(string) error, timeout time.Duration) error {
	if ready == nil {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for {
		err := ready(p.Addr)
		if err == nil {
			// Another test's server on the same port answers as well:
			// only a socket of the program's own counts.
			if p.ownsPort() {
				return nil
			}
			err = fmt.Errorf("port %d answers, but from another program's socket", p.Port)
		}
		if PortInUse(p.Log()) { // named keeps running without its port
			return fmt.Errorf("%s: %w (%d):\n%s", p.Name, errPortTaken, p.Port, p.Log())
		}
		if p.Exited() {
			return fmt.Errorf("%s exited before it was ready (%v):\n%s", p.Name, err, p.Log())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready on %s: %v\n%s", p.Name, p.Addr, err, p.Log())
		}
		time.Sleep(20 * time.Millisecond) // polling the readiness condition
	}
}

// freePort finds a port free for both UDP and TCP on 127.0.0.1 (a DNS
// server binds both).
func freePort() (int, error) {
	for range 50 {
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return 0, err
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		u.Close()
		if err == nil {
			l.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port on 127.0.0.1")
}

// SyncBuffer is a bytes.Buffer that a program's or a logger's output and
// the test share: writes and reads may come from different goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Part is a running part of wormsink: New binds, Serve runs until
// Shutdown (or its context), Shutdown drains.
type Part interface {
	Serve(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

// Serve runs p until the test ends: then it stops p with Shutdown, waits
// for Serve to return and fails the test unless it returned closed (the
// part's ErrServerClosed) or nil, or took longer than 10 seconds.
func Serve(t testing.TB, p Part, closed error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.Serve(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, closed) {
				t.Errorf("Serve: %v", err)
			}
		case <-ctx.Done():
			t.Errorf("Serve did not return after Shutdown")
		}
	})
}
