package dnsblock

import (
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// TestServerCoalesceAnswersFirst: a reader that found one query answers it
// at once and only then waits Config.Coalesce, so lone queries are not held
// up. Were the wait before the answer, every exchange would take at least
// Coalesce; one reader waits at a time, so the others keep answering.
func TestServerCoalesceAnswersFirst(t *testing.T) {
	const wait = MaxCoalesce
	s := startShim(t, Config{Upstreams: []string{blackhole(t)}, Coalesce: wait}, newSource(t, testSigs), nil)
	fastest := time.Hour
	for range 8 {
		t0 := time.Now()
		r := ask(t, "udp", s.UDPAddr(), "worm.example", dns.TypeA)
		fastest = min(fastest, time.Since(t0))
		if len(r.Answer) != 1 {
			t.Fatalf("answer: %v", r)
		}
	}
	if fastest >= wait {
		t.Fatalf("the fastest of 8 exchanges took %v: readers wait before answering (Coalesce %v)", fastest, wait)
	}
}

// TestBatchWaitSleeps: the coalescing wait sleeps what it is asked when
// nothing interrupts it (the median of 21 waits of 2 ms: a lone one may
// meet a signal of the runtime's and end early, by design).
func TestBatchWaitSleeps(t *testing.T) {
	b := newTestBatch(t)
	const d = 2 * time.Millisecond
	var took []time.Duration
	for range 21 {
		t0 := time.Now()
		b.wait(d)
		took = append(took, time.Since(t0))
	}
	slices.Sort(took)
	if m := took[len(took)/2]; m < d {
		t.Fatalf("wait(%v): median %v", d, m)
	}
}

// TestBatchWaitEndsOnSignal: a signal ends the wait at once, so that a
// reader asked to stop for the garbage collector gets out of its system
// call and to a preemption check. When the wait slept again for what was
// left, the runtime's repeated requests could keep it in the system call
// and the whole process stood still.
func TestBatchWaitEndsOnSignal(t *testing.T) {
	b := newTestBatch(t)
	const d = 10 * time.Second
	tid := make(chan int)
	took := make(chan time.Duration)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid <- unix.Gettid()
		t0 := time.Now()
		b.wait(d)
		took <- time.Since(t0)
	}()
	thread := <-tid
	for {
		// SIGURG is what the runtime preempts with; it ignores one that
		// finds nothing to preempt. Sent until the wait returns: the
		// first may come before the nanosleep starts.
		if err := unix.Tgkill(unix.Getpid(), thread, unix.SIGURG); err != nil {
			t.Fatal(err)
		}
		select {
		case w := <-took:
			if w >= d/2 {
				t.Fatalf("wait(%v) went on after signals: returned after %v", d, w)
			}
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func newTestBatch(t *testing.T) *udpBatch {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return newUDPBatch(c)
}

// TestConfigCoalesceBound: a wait that would hold the scheduler up is an
// error at start, not a silent cap.
func TestConfigCoalesceBound(t *testing.T) {
	_, err := New(Config{Listen: "127.0.0.1:0", Upstreams: []string{blackhole(t)}, SinkholeIPs: []netip.Addr{netip.MustParseAddr("192.0.2.66")}, Coalesce: MaxCoalesce + 1}, newSource(t, testSigs), nil, zerologNop())
	if err == nil || !strings.Contains(err.Error(), "coalesce") {
		t.Fatalf("Coalesce above MaxCoalesce: err %v", err)
	}
}

// TestServerCoalesceOff: a negative Coalesce reads again at once.
func TestServerCoalesceOff(t *testing.T) {
	s := startShim(t, Config{Upstreams: []string{blackhole(t)}, Coalesce: -1}, newSource(t, testSigs), nil)
	readers := runtime.GOMAXPROCS(0)
	start := time.Now()
	for range 2 * (readers + 1) {
		ask(t, "udp", s.UDPAddr(), "worm.example", dns.TypeA)
	}
	// A second is hundreds of times what these exchanges take even on a
	// busy machine.
	if took := time.Since(start); took >= time.Second {
		t.Fatalf("%d exchanges took %v with coalescing off", 2*(readers+1), took)
	}
}

// TestServerCoalesceBurst: a burst that arrives while the readers wait is
// read and answered in full, every query once.
func TestServerCoalesceBurst(t *testing.T) {
	s := startShim(t, Config{Upstreams: []string{blackhole(t)}, Coalesce: MaxCoalesce}, newSource(t, testSigs), nil)
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(s.UDPAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// One query first, so that the readers are waiting when the burst comes.
	ask(t, "udp", s.UDPAddr(), "worm.example", dns.TypeA)
	const n = 3 * batchSize
	for i := range n {
		m := new(dns.Msg)
		m.SetQuestion("worm.example.", dns.TypeA)
		m.Id = uint16(i + 1)
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	seen := make(map[uint16]bool)
	buf := make([]byte, 1500)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(seen) < n {
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("after %d of %d answers: %v", len(seen), n, err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:k]); err != nil {
			t.Fatal(err)
		}
		if seen[r.Id] || r.Id == 0 || r.Id > n {
			t.Fatalf("answer id %d twice or unknown", r.Id)
		}
		if len(r.Answer) != 1 {
			t.Fatalf("answer %d: %v", r.Id, r)
		}
		seen[r.Id] = true
	}
}
