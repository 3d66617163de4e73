package sinkhole

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"wormsink/internal/testutil"
	"wormsink/internal/tftp"
)

// TestFlood: 200,000 read requests from 2,000 source ports of one host
// within 20 s, against the server running as a process of its own. The
// server answers within its limits, holds few file descriptors and little
// memory throughout, never replies with more bytes than it was sent, and
// its evidence counts every request of every source port.
func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood test skipped in -short mode")
	}
	const (
		ports      = 2000
		perPort    = 100
		total      = ports * perPort
		sendFor    = 12 * time.Second // the pace; the limit is 20 s
		sourceRate = 2000.0
		burst      = 200
		totalRate  = 3000.0
	)
	p := startProc(t, "-source-rate", "2000", "-source-burst", "200", "-total-rate", "3000", "-total-burst", "300")

	// Requests of several shapes and sizes, the smallest smaller than the
	// server's reply text would need.
	shapes := [][]byte{
		rrq(tftp.OpRRQ, "msblast.exe", "octet"),
		rrq(tftp.OpRRQ, `C:\WINDOWS\system32\MSBLAST.EXE`, "OCTET"),
		rrq(tftp.OpRRQ, "/penis32.exe", "netascii", "blksize", "1432", "tsize", "0"),
		rrq(tftp.OpRRQ, "a", "mail"),
		rrq(tftp.OpWRQ, "teekids.exe", "octet"),
	}

	// Watch the server process all along.
	var maxFDs atomic.Int64
	var maxRSS atomic.Int64
	var samples atomic.Int64
	var sampleErr atomic.Value
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			s, err := sampleProc(p.cmd.Process.Pid)
			if err != nil {
				sampleErr.Store(err)
				return
			}
			samples.Add(1)
			if int64(s.fds) > maxFDs.Load() {
				maxFDs.Store(int64(s.fds))
			}
			if s.rss > maxRSS.Load() {
				maxRSS.Store(s.rss)
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	// The clients, each reading its replies and checking them.
	conns := make([]*net.UDPConn, ports)
	var replies, probes, badReplies atomic.Int64
	var readers sync.WaitGroup
	for i := range conns {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		reqLen := len(shapes[i%len(shapes)])
		readers.Add(1)
		go func() {
			defer readers.Done()
			buf := make([]byte, 2048)
			for {
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				if isProbe(buf[:n]) {
					// These clients never answer: no round follows it.
					probes.Add(1)
					if from.Addr() != p.addr.Addr() {
						badReplies.Add(1)
					}
					continue
				}
				replies.Add(1)
				if from.Addr() != p.addr.Addr() || n > reqLen || n < 5 || buf[0] != 0 || buf[1] != tftp.OpError {
					badReplies.Add(1)
				}
			}
		}()
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		readers.Wait()
	}()

	start := time.Now()
	sent := 0
	var backPressure time.Duration // waiting for the server to read its queue
	for round := 0; round < perPort; round++ {
		for i, c := range conns {
			if _, err := c.WriteToUDPAddrPort(shapes[i%len(shapes)], p.addr); err != nil {
				t.Fatal(err)
			}
			sent++
			if sent%500 == 0 {
				// Keep the pace, and never let the kernel queue overflow:
				// a request the kernel drops, the server cannot count.
				if ahead := time.Duration(sent)*sendFor/total - time.Since(start); ahead > 0 {
					time.Sleep(ahead)
				}
				waitFrom := time.Now()
				for {
					rx, _, ok := udpQueue(p.addr.Port())
					if !ok || rx < 1<<20 {
						break
					}
					time.Sleep(time.Millisecond)
				}
				backPressure += time.Since(waitFrom)
			}
		}
	}
	sendTime := time.Since(start)
	// Everything read by the server: its socket queue is empty.
	waitDrained(t, "the server to read every request", func() (int64, bool) {
		rx, _, ok := udpQueue(p.addr.Port())
		return rx, ok
	})
	elapsed := time.Since(start)
	_, drops, _ := udpQueue(p.addr.Port())
	close(stopSampling)
	<-sampled
	cpu, cpuErr := procCPU(p.cmd.Process.Pid)
	st := p.stop(t)
	// The server has exited: every reply it sent is read or waits in a
	// client socket's queue. Wait until the clients have read them all.
	clientPorts := map[uint16]bool{}
	for _, c := range conns {
		clientPorts[c.LocalAddr().(*net.UDPAddr).AddrPort().Port()] = true
	}
	waitDrained(t, "the clients to read every reply", func() (int64, bool) {
		rx, _ := udpQueues(clientPorts)
		return rx, true
	})
	if _, clientDrops := udpQueues(clientPorts); clientDrops != 0 || uint64(replies.Load()) != st.Replies || uint64(probes.Load()) != st.Probes {
		t.Fatalf("clients read %d replies of %d sent and %d probes of %d; the kernel dropped %d", replies.Load(), st.Replies, probes.Load(), st.Probes, clientDrops)
	}

	t.Logf("sent %d requests in %v (%.0f/s); server: %+v", sent, sendTime, float64(sent)/sendTime.Seconds(), st)
	t.Logf("server process: max %d fds, max RSS %.1f MB over %d samples; kernel drops %d",
		maxFDs.Load(), float64(maxRSS.Load())/(1<<20), samples.Load(), drops)

	t.Logf("server CPU %v (%.1f µs a request); the sender waited %v on its queue and %v for it to drain",
		cpu, float64(cpu.Microseconds())/total, backPressure, elapsed-sendTime)
	// The flood's pace is the sender's (12 s; more on a loaded machine).
	// What the server owes is capacity: 200,000 requests in 20 s on one
	// core is at most 100 µs of CPU each, counted in CPU time, which a
	// loaded machine does not stretch as it stretches the wall clock.
	if cpuErr != nil {
		t.Fatalf("server CPU: %v", cpuErr)
	}
	if cpu > 20*time.Second*total/200_000 {
		t.Errorf("the server took %v of CPU for %d requests, want at most 100 µs each", cpu, total)
	}
	if err, _ := sampleErr.Load().(error); err != nil {
		t.Fatalf("sampling the server: %v", err)
	}
	if samples.Load() < 100 {
		t.Errorf("only %d samples of the server process", samples.Load())
	}
	if maxFDs.Load() >= 256 {
		t.Errorf("server held up to %d file descriptors, want < 256", maxFDs.Load())
	}
	if maxRSS.Load() >= 100<<20 {
		t.Errorf("server RSS reached %d bytes, want < 100 MB", maxRSS.Load())
	}
	if drops != 0 {
		t.Errorf("the kernel dropped %d requests", drops)
	}
	if st.Received != total {
		t.Errorf("server received %d datagrams, want %d", st.Received, total)
	}
	if badReplies.Load() != 0 {
		t.Errorf("%d replies were not an ERROR no larger than their request", badReplies.Load())
	}
	// Within the limits: all the ports are one source.
	limit := burst + sourceRate*elapsed.Seconds()
	if total := 300 + totalRate*elapsed.Seconds(); total < limit {
		limit = total
	}
	if r := replies.Load(); r == 0 || float64(r) > limit {
		t.Errorf("%d replies, want 1..%.0f", r, limit)
	}
	if st.SourceLimited+st.TotalLimited+st.Replies != total {
		t.Errorf("limited %d+%d plus replies %d is not every request", st.SourceLimited, st.TotalLimited, st.Replies)
	}

	// Every source port in the evidence, with what it sent.
	counts := map[uint16]uint64{}
	for _, l := range readLog(t, p.log) {
		if l.Host != "127.0.0.1" || l.Server != p.addr.String() {
			t.Fatalf("evidence line %+v", l)
		}
		// The flooding clients never follow up a refusal, like a forger
		// who never sees it: nothing may be more than a datagram.
		if l.Proof != "datagram" {
			t.Fatalf("a client that never answered got proof %q: %+v", l.Proof, l)
		}
		counts[l.Port] += l.Count
	}
	for i, c := range conns {
		port := c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		if counts[port] != perPort {
			t.Errorf("source port %d (shape %d): evidence counts %d requests, want %d", port, i%len(shapes), counts[port], perPort)
		}
	}
	if len(counts) != ports {
		t.Errorf("evidence names %d source ports, want %d", len(counts), ports)
	}
}

// waitDrained waits until queued (bytes in socket queues) is 0, failing only
// when it stops shrinking for a long while: a loaded machine drains slowly,
// a stuck one does not drain at all.
func waitDrained(t *testing.T, what string, queued func() (int64, bool)) {
	t.Helper()
	const stall = 30 * time.Second
	best, since := int64(-1), time.Now()
	for {
		q, ok := queued()
		if ok && q == 0 {
			return
		}
		if best < 0 || q < best {
			best, since = q, time.Now()
		}
		if time.Since(since) > stall {
			t.Fatalf("timed out waiting for %s: %d bytes queued, no progress for %v", what, q, stall)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// udpQueues sums the receive queues and drops of the UDP sockets on
// 127.0.0.1 bound to these ports, in one read of /proc/net/udp.
func udpQueues(ports map[uint16]bool) (rxQueue, drops int64) {
	socks, _ := testutil.UDPSockets()
	for _, s := range socks {
		if ports[s.Local.Port()] {
			rxQueue += s.RxQueue
			drops += s.Drops
		}
	}
	return rxQueue, drops
}
