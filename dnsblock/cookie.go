package dnsblock

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
	"net/netip"
	"sync/atomic"
	"time"
)

// DNS cookies (RFC 7873) in the interoperable server cookie format of RFC
// 9018, so that the sinkhole can tell a client that really holds its
// address from a forged datagram: a query carrying a client cookie gets a
// server cookie back, made from the client cookie, the client's address, a
// time and a secret; a later query that presents a valid server cookie
// proves its sender received our earlier answer at that address (proof
// "exchange"). A cookie never makes an answer different otherwise: there is
// no BADCOOKIE, and a missing or stale server cookie changes nothing but
// the proof.
//
// Server cookie: version 1 | 3 reserved zero bytes | 32-bit timestamp
// (seconds) | SipHash-2-4(client cookie | version | reserved | timestamp |
// client address) under a 128-bit secret. The secret is random at start and
// replaced every cookieRotate; the previous one is kept so a cookie made
// just before a rotation still verifies.

const (
	clientCookieLen = 8
	serverCookieLen = 16
	cookieVersion   = 1
	// A server cookie is accepted for an hour after it was made and five
	// minutes before (clock skew between anycast instances), as RFC 9018
	// suggests.
	cookieMaxAge    = 3600
	cookieMaxFuture = 300
	cookieRotate    = 30 * time.Minute
)

type cookieSecrets struct {
	cur, prev [16]byte
	born      int64 // unix seconds
}

// cookieJar makes and checks server cookies. It is safe for concurrent use
// and allocates only when it rotates its secret.
type cookieJar struct {
	s   atomic.Pointer[cookieSecrets]
	now func() int64 // unix seconds; tests move it
}

func newCookieJar() *cookieJar {
	j := &cookieJar{now: func() int64 { return time.Now().Unix() }}
	s := &cookieSecrets{born: j.now()}
	rand.Read(s.cur[:])
	rand.Read(s.prev[:])
	j.s.Store(s)
	return j
}

// secrets returns the secrets in force at now, rotating them when due.
func (j *cookieJar) secrets(now int64) *cookieSecrets {
	s := j.s.Load()
	if now-s.born < int64(cookieRotate/time.Second) {
		return s
	}
	n := &cookieSecrets{prev: s.cur, born: now}
	rand.Read(n.cur[:])
	if j.s.CompareAndSwap(s, n) {
		return n
	}
	return j.s.Load()
}

// cookieHash is the 8-byte hash of RFC 9018 §4.4 for one secret.
func cookieHash(key *[16]byte, client []byte, head [8]byte, addr netip.Addr) uint64 {
	var in [8 + 8 + 16]byte
	n := copy(in[:], client)
	n += copy(in[n:], head[:])
	if a := addr.Unmap(); a.Is4() {
		b := a.As4()
		n += copy(in[n:], b[:])
	} else {
		b := a.As16()
		n += copy(in[n:], b[:])
	}
	return siphash24(binary.LittleEndian.Uint64(key[:8]), binary.LittleEndian.Uint64(key[8:]), in[:n])
}

// answer looks at the COOKIE option of a query from client: it reports
// whether the query presented a valid server cookie of ours, and writes the
// server cookie to send back into out.
func (j *cookieJar) answer(opt []byte, client netip.Addr, out *[serverCookieLen]byte) (valid bool) {
	now := j.now()
	s := j.secrets(now)
	cc := opt[:clientCookieLen]
	if len(opt) == clientCookieLen+serverCookieLen && opt[8] == cookieVersion {
		var head [8]byte
		copy(head[:], opt[8:16])
		ts := int64(binary.BigEndian.Uint32(head[4:]))
		// Serial number arithmetic (RFC 1982) on the 32-bit timestamp.
		age := int64(int32(uint32(now) - uint32(ts)))
		if age <= cookieMaxAge && age >= -cookieMaxFuture {
			got := binary.LittleEndian.Uint64(opt[16:])
			valid = cookieHash(&s.cur, cc, head, client) == got || cookieHash(&s.prev, cc, head, client) == got
		}
	}
	head := [8]byte{cookieVersion}
	binary.BigEndian.PutUint32(head[4:], uint32(now))
	copy(out[:8], head[:])
	binary.LittleEndian.PutUint64(out[8:], cookieHash(&s.cur, cc, head, client))
	return valid
}

// siphash24 is SipHash-2-4 (Aumasson and Bernstein, 2012) of m under the
// key k0|k1, as RFC 9018 specifies; the cookie holds the output
// little-endian, as SipHash's reference code writes it (RFC 9018's test
// vectors check this).
func siphash24(k0, k1 uint64, m []byte) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13)
		v1 ^= v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16)
		v3 ^= v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21)
		v3 ^= v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17)
		v1 ^= v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	n := len(m)
	for len(m) >= 8 {
		w := binary.LittleEndian.Uint64(m)
		v3 ^= w
		round()
		round()
		v0 ^= w
		m = m[8:]
	}
	var last [8]byte
	copy(last[:], m)
	last[7] = byte(n)
	w := binary.LittleEndian.Uint64(last[:])
	v3 ^= w
	round()
	round()
	v0 ^= w
	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}
