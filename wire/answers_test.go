package wire

import (
	"bytes"
	"net"
	"testing"

	"wormsink/evidence"
	"wormsink/internal/evidencetest"
	"wormsink/signatures"
)

// TestServerEarnsByItsOwnReply: a request names the server but proves
// nothing about it (weak, datagram, Named); the server's own DATA to the
// requester's address and port is its packet and makes it strong, once per
// request. An ERROR (it refused), a reply from anyone else, to another port,
// or before any request makes no line. One core and the parallel scanner
// agree.
func TestServerEarnsByItsOwnReply(t *testing.T) {
	cli, srv, other := net.IPv4(10, 1, 0, 5).To4(), net.IPv4(10, 1, 0, 9).To4(), net.IPv4(10, 1, 0, 77).To4()
	data := append([]byte{0, 3, 0, 1}, bytes.Repeat([]byte("MZ"), 256)...)
	errPkt := []byte("\x00\x05\x00\x01File not found\x00")
	frames := en(
		udp4(t, srv, cli, 50000, 1027, data),                        // 1: before any request: nothing
		udp4(t, cli, srv, 1027, 69, rrq(1, "msblast.exe", "octet")), // 2: requester + named server
		udp4(t, other, cli, 50001, 1027, data),                      // 3: someone else: nothing
		udp4(t, srv, cli, 50000, 1028, data),                        // 4: to another port: nothing
		udp4(t, srv, cli, 50000, 1027, data),                        // 5: the server serves it: strong
		udp4(t, cli, srv, 2000, 69, rrq(1, "msblast.exe", "octet")), // 6
		udp4(t, srv, cli, 50002, 2000, errPkt),                      // 7: the server refuses: nothing more
		udp4(t, srv, cli, 50000, 1027, data),                        // 8: its next block: nothing more
	)
	capture := encode(t, craftedFile{name: "answers", frames: frames})
	one, par := scanBoth(t, [][]byte{capture}, []string{"answers"}, 3, Options{})
	sameScan(t, "answers", one, par)

	var rec evidencetest.Recorder
	m := NewMatcher(StaticSet{signatures.Default()}, &rec, Options{})
	if _, err := m.Scan(t.Context(), bytes.NewReader(capture), "answers"); err != nil {
		t.Fatal(err)
	}
	type line struct {
		packet   uint64
		host     string
		role     string
		evidence signatures.Strength
		named    bool
	}
	var got []line
	for _, ev := range rec.Events() {
		got = append(got, line{ev.Packet, ev.Host.String(), ev.Role, ev.Evidence, ev.Named})
		if ev.Role == evidence.RoleServer && !ev.Named && (ev.Sig != "blaster" || ev.File != "msblast.exe" || ev.Peer.String() != "10.1.0.5") {
			t.Errorf("reply line %+v", ev)
		}
	}
	want := []line{
		{2, "10.1.0.5", evidence.RoleRequester, signatures.Strong, false},
		{2, "10.1.0.9", evidence.RoleServer, signatures.Weak, true},
		{5, "10.1.0.9", evidence.RoleServer, signatures.Strong, false},
		{6, "10.1.0.5", evidence.RoleRequester, signatures.Strong, false},
		{6, "10.1.0.9", evidence.RoleServer, signatures.Weak, true},
	}
	if len(got) != len(want) {
		t.Fatalf("lines %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}
