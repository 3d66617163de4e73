package dnsblock

import (
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The test vectors of RFC 9018 appendix A: the same server cookie from the
// same secret, client cookie, address and time, so a cookie made here is
// checked by any RFC 9018 server sharing the secret (an anycast group of
// BIND, Knot, PowerDNS or wormsink) and the other way round.
func TestCookieRFC9018Vectors(t *testing.T) {
	for _, v := range []struct {
		secret, client, ip string
		ts                 uint32
		want               string
	}{
		{"e5e973e5a6b2a43f48e7dc849e37bfcf", "2464c4abcf10c957", "198.51.100.100", 1559731985, "010000005cf79f111f8130c3eee29480"},
		{"e5e973e5a6b2a43f48e7dc849e37bfcf", "2464c4abcf10c957", "198.51.100.100", 1559734385, "010000005cf7a871d4a564a1442aca77"},
		{"e5e973e5a6b2a43f48e7dc849e37bfcf", "fc93fc62807ddb86", "203.0.113.203", 1559734700, "010000005cf7a9acf73a7810aca2381e"},
		{"dd3bdf9344b678b185a6f5cb60fca715", "22681ab97d52c298", "2001:db8:220:1:59de:d0f4:8769:82b8", 1559741817, "010000005cf7c57926556bd0934c72f8"},
	} {
		var key [16]byte
		copy(key[:], unhex(t, v.secret))
		head := [8]byte{cookieVersion}
		binary.BigEndian.PutUint32(head[4:], v.ts)
		var got [16]byte
		copy(got[:], head[:])
		binary.LittleEndian.PutUint64(got[8:], cookieHash(&key, unhex(t, v.client), head, netip.MustParseAddr(v.ip)))
		if hex.EncodeToString(got[:]) != v.want {
			t.Errorf("client %s: server cookie %x, want %s", v.client, got, v.want)
		}
	}
	// A.3: another server of the anycast set sent nonzero reserved bytes;
	// the hash covers them as received, so the cookie still verifies.
	j := newCookieJar()
	s := j.s.Load()
	copy(s.cur[:], unhex(t, "e5e973e5a6b2a43f48e7dc849e37bfcf"))
	s.born = 1559727985
	j.now = func() int64 { return 1559727985 + 600 }
	var out [16]byte
	if !j.answer(unhex(t, "fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5"), netip.MustParseAddr("203.0.113.203"), &out) {
		t.Error("RFC 9018 A.3's cookie with reserved bytes set did not verify")
	}
	if out[1] != 0 || out[2] != 0 || out[3] != 0 {
		t.Errorf("our cookie %x has reserved bytes set", out)
	}
}

// A server cookie verifies for the client cookie and address it was made
// for, within its lifetime and across one secret rotation; not for another
// address, a changed byte, or once too old.
func TestCookieJar(t *testing.T) {
	j := newCookieJar()
	now := int64(1_800_000_000)
	j.now = func() int64 { return now }
	j.s.Load().born = now
	client := netip.MustParseAddr("192.0.2.7")
	cc := unhex(t, "0102030405060708")
	var sc [16]byte
	if j.answer(cc, client, &sc) {
		t.Fatal("a client cookie alone verified")
	}
	opt := append(append([]byte{}, cc...), sc[:]...)
	var again [16]byte
	if !j.answer(opt, client, &again) {
		t.Fatal("our own server cookie did not verify")
	}
	if j.answer(opt, netip.MustParseAddr("192.0.2.8"), &again) {
		t.Error("verified for another address")
	}
	bad := append([]byte{}, opt...)
	bad[len(bad)-1] ^= 1
	if j.answer(bad, client, &again) {
		t.Error("verified with a changed hash")
	}
	now += int64(cookieRotate.Seconds()) + 1 // one rotation: still valid
	if !j.answer(opt, client, &again) {
		t.Error("not valid after one rotation")
	}
	now += cookieMaxAge // too old, and two rotations away
	if j.answer(opt, client, &again) {
		t.Error("valid after its lifetime")
	}
}

func BenchmarkCookie(b *testing.B) {
	j := newCookieJar()
	client := netip.MustParseAddr("192.0.2.7")
	var sc [16]byte
	j.answer(unhex(b, "0102030405060708"), client, &sc)
	opt := append(unhex(b, "0102030405060708"), sc[:]...)
	b.ReportAllocs()
	for b.Loop() {
		if !j.answer(opt, client, &sc) {
			b.Fatal("invalid")
		}
	}
}
