package dnsblock

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"wormsink/internal/evidencetest"

	"github.com/miekg/dns"
)

// FuzzAnswer feeds arbitrary client messages to the handler: it must not
// panic, and whatever it sends back must be a well-formed DNS answer with
// the client's ID.
func FuzzAnswer(f *testing.F) {
	for _, q := range [][]byte{
		packQuery(f, "worm.example.", dns.TypeA, true),
		packQuery(f, "x.wild.example.", dns.TypeAAAA, false),
		packQuery(f, "nx.example.", dns.TypeMX, true),
		packQuery(f, "unlisted.example.", dns.TypeA, false),
		{1, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 41},
		cookieQuery(f, "0102030405060708"),
		cookieQuery(f, "0102030405060708010000005cf79f111f8130c3eee29480"),
	} {
		f.Add(q, true)
	}
	h := newTestHandler(f, "", 100, &evidencetest.Counter{})
	sc := newScratch()
	f.Fuzz(func(t *testing.T, msg []byte, inside bool) {
		client := netip.MustParseAddrPort("192.168.1.5:1234")
		if !inside {
			client = netip.MustParseAddrPort("[2001:db8::5]:1234")
		}
		for _, tcp := range []bool{false, true} {
			resp, fwd := h.answer(sc, msg, client, tcp)
			if fwd {
				if !inside {
					t.Fatal("outside client forwarded")
				}
				continue
			}
			if resp == nil {
				continue
			}
			m := new(dns.Msg)
			if err := m.Unpack(resp); err != nil {
				t.Fatalf("answer does not parse: %v\nquery %x\nanswer %x", err, msg, resp)
			}
			if !m.Response || m.Id != binary.BigEndian.Uint16(msg) {
				t.Fatalf("bad answer header %+v", m.MsgHdr)
			}
			if !tcp && len(resp) > 512 && (m.IsEdns0() == nil || len(resp) > int(m.IsEdns0().UDPSize())) {
				t.Fatalf("UDP answer of %d bytes", len(resp))
			}
		}
	})
}

// FuzzRelay feeds arbitrary upstream answers (after a matching header and
// question) through the relay, the cache and a cache hit.
func FuzzRelay(f *testing.F) {
	seed := func(build func(*dns.Msg)) []byte {
		m := new(dns.Msg)
		m.SetQuestion("alias.example.", dns.TypeA)
		m.Response = true
		build(m)
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		return b[headerLen:]
	}
	rr := func(s string) dns.RR { r, _ := dns.NewRR(s); return r }
	f.Add(uint16(1), uint16(0), uint16(0), seed(func(m *dns.Msg) {}))
	f.Add(uint16(2), uint16(0), uint16(0), seed(func(m *dns.Msg) {
		m.Answer = []dns.RR{rr("alias.example. 60 IN CNAME target.example."), rr("target.example. 60 IN A 192.0.2.1")}
	}))
	f.Add(uint16(0), uint16(1), uint16(1), seed(func(m *dns.Msg) {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{rr("example. 60 IN SOA a.example. b.example. 1 2 3 4 5")}
		m.SetEdns0(1232, true)
	}))
	h := newTestHandler(f, "", 100, &evidencetest.Counter{})
	q := packQuery(f, "alias.example.", dns.TypeA, false)
	sc := newScratch()
	f.Fuzz(func(t *testing.T, an, ns, ar uint16, body []byte) {
		if len(body) < len(q)-headerLen {
			return
		}
		resp := make([]byte, headerLen, headerLen+len(body))
		copy(resp, q)
		resp[2] |= 0x80
		binary.BigEndian.PutUint16(resp[6:], an)
		binary.BigEndian.PutUint16(resp[8:], ns)
		binary.BigEndian.PutUint16(resp[10:], ar)
		resp = append(resp, body...)
		copy(resp[headerLen:], q[headerLen:]) // the question always matches: the reader checked it
		if err := parseQuery(q, &sc.q, sc.name[:]); err != nil {
			t.Fatal(err)
		}
		out := h.relay(sc, q, append([]byte(nil), resp...), h.src.Current(), benchClient, false)
		if len(out) < headerLen {
			t.Fatal("short relay")
		}
		hit, fwd := h.answer(sc, q, benchClient, false)
		if !fwd {
			if m := new(dns.Msg); binary.BigEndian.Uint16(hit) != binary.BigEndian.Uint16(q) {
				t.Fatalf("cache hit with wrong id: %x", m)
			}
		}
	})
}
