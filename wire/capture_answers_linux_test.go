package wire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"

	"wormsink/evidence"
	"wormsink/internal/evidencetest"
	"wormsink/signatures"
)

// TestLiveCaptureRepliesAcrossWorkers: a TFTP server answers from a fresh
// port, so its DATA's 5-tuple is not its request's and the fan-out hands
// request and reply to different workers about three times in four with
// four workers. 64 servers each serve one worm request, request and reply
// sent back to back: every server must earn its serving line (strong, its
// own packet), whichever worker read which, once each; and the lines agree
// with a scan of the same frames.
func TestLiveCaptureRepliesAcrossWorkers(t *testing.T) {
	cli, srv := vethNetns(t, fmt.Sprintf("wseg%d", os.Getpid()%10000))
	rec := &evidencetest.Recorder{}
	var c *Capture
	inNetns(t, srv, func() {
		var err error
		c, err = NewCapture("vs", CaptureConfig{Sigs: StaticSet{signatures.Default()}, Rec: rec, Workers: 4, RingMB: 4, Promisc: true})
		if err != nil {
			t.Fatal(err)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, ErrCaptureClosed) {
			t.Errorf("Serve: %v, want ErrCaptureClosed", err)
		}
	}()
	tx := newRawSender(t, cli, "vc")

	const pairs = 64
	data := append([]byte{0, 3, 0, 1}, make([]byte, 512)...)
	servers := map[netip.Addr]bool{}
	var frames []frame
	for i := range pairs {
		client, server := net.IP{10, 20, 0, byte(i + 1)}, net.IP{10, 20, 1, byte(i + 1)}
		servers[netip.AddrFrom4([4]byte(server))] = true
		req := udp4(t, client, server, uint16(40000+i), 69, rrq(1, "msblast.exe", "octet"))
		reply := udp4(t, server, client, uint16(50000+i), uint16(40000+i), data)
		frames = append(frames, frame{data: req}, frame{data: reply})
	}
	for i, f := range frames {
		tx.send(t, f.data)
		if i%16 == 15 {
			waitFor(t, fmt.Sprintf("%d frames read", i+1), func() bool { return c.Stats().Packets >= uint64(i+1) })
		}
	}
	serving := func() map[netip.Addr]int {
		got := map[netip.Addr]int{}
		for _, ev := range rec.Events() {
			if ev.Role == evidence.RoleServer && !ev.Named {
				got[ev.Host]++
			}
		}
		return got
	}
	defer func() { t.Logf("serving %d, events %d, stats %+v", len(serving()), rec.Len(), c.Stats()) }()
	waitFor(t, "every server's serving line", func() bool { return len(serving()) == pairs })
	for host, n := range serving() {
		if !servers[host] || n != 1 {
			t.Errorf("%s: %d serving lines", host, n)
		}
	}
	for _, ev := range rec.Events() {
		if ev.Role == evidence.RoleServer && !ev.Named && (ev.Sig != "blaster" || ev.File != "msblast.exe" || ev.Evidence != signatures.Strong || ev.Port < 50000) {
			t.Errorf("serving line %s (%s)", short(ev), ev.Evidence)
		}
	}
	if st := c.Stats(); st.Events != 3*pairs {
		t.Errorf("%d events counted, want %d", st.Events, 3*pairs)
	}
}
