package attribution

import (
	"bytes"
	"crypto/md5"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"layeh.com/radius"
)

// The parsers take what a NAS, a NAT box or a file hands them: whatever
// comes in, they return an error or a well-formed record, never panic.

func FuzzULOGD(f *testing.F) {
	f.Add([]byte(ulogdNew))
	f.Add([]byte(ulogdDestroy))
	f.Add([]byte(`{"ct.event": 4, "src_ip": "::1", "reply.ip.daddr.str": "::2", "orig.l4.sport": 1, "reply.l4.dport": 2}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		ev, err := ParseULOGD(line, time.UTC)
		if err != nil {
			return
		}
		b := ev.Binding
		if !b.Public.IsValid() || !b.Inside.IsValid() || b.PortLo == 0 || b.PortLo != b.PortHi || ev.At.IsZero() {
			t.Fatalf("accepted a bad binding: %+v", ev)
		}
	})
}

func FuzzPBA(f *testing.F) {
	f.Add([]byte("Dec  6 12:00:00 mx1 {cgn1}[jservices-nat]: JSERVICES_NAT_PORT_BLOCK_ALLOC: 100.64.0.10 -> 198.51.100.7:1024-1151 0x67530000"))
	f.Add([]byte("2026-12-06T12:00:00Z srx1 RT_NAT: RT_SRC_NAT_PBA_RELEASE: Subscriber 100.64.0.11 used/maximum [0/8] blocks, releases port block [1152-1279] from 198.51.100.7 in source pool p1 lsys_id: 0"))
	f.Add([]byte("<14>1 2026-12-06T12:00:00.5Z srx1 RT_SRC_NAT_PBA_INTERIM: Subscriber ::1 port block [1-1] from ::2"))
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, line []byte) {
		ev, err := ParsePBA(line, time.UTC, now)
		if err != nil {
			return
		}
		b := ev.Binding
		if !b.Public.IsValid() || !b.Inside.IsValid() || b.PortLo == 0 || b.PortLo > b.PortHi || ev.At.IsZero() {
			t.Fatalf("accepted a bad block: %+v", ev)
		}
	})
}

func FuzzDetail(f *testing.F) {
	f.Add("Sun Dec  6 20:52:04 2026\n\tUser-Name = \"alice\"\n\tAcct-Status-Type = Start\n\tAcct-Session-Id = \"s1\"\n\tNAS-IP-Address = 192.0.2.10\n\tFramed-IP-Address = 127.0.0.5\n\tTimestamp = 1796590324\n\n")
	f.Add("Sun Dec  6 20:52:04 2026\n\tAcct-Status-Type = Accounting-On\n\tNAS-IP-Address = ::1\n\tEvent-Timestamp = \"Dec  6 2026 20:54:00 UTC\"\n")
	f.Add("\tUser-Name = x\n")
	f.Fuzz(func(t *testing.T, s string) {
		r := NewDetailReader(strings.NewReader(s), "d", time.UTC)
		for i := 0; i < 1000; i++ {
			ev, err := r.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "d:") {
					t.Fatalf("error without FILE:LINE: %v", err)
				}
				continue
			}
			if !ev.Session.NAS.IsValid() || ev.At.IsZero() {
				t.Fatalf("accepted a bad record: %+v", ev)
			}
		}
	})
}

func FuzzIPFIX(f *testing.F) {
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	f.Add(ipfixMessage(at, ipfixTemplate, ipfixRecord(at, natEventSessionCreate, "100.64.0.2", 5000, "198.51.100.9", 40000, 0, 0)))
	f.Add(ipfixMessage(at, [][2]uint16{{ieNATEvent, 65535}, {0x8000 | 1, 4}}, []byte{1, 16, 0, 0, 0, 0}))
	f.Fuzz(func(t *testing.T, msg []byte) {
		d := NewIPFIXDecoder()
		exporter := netip.MustParseAddr("127.0.0.1")
		for i := 0; i < 2; i++ { // twice: templates from the first pass apply
			d.Decode(exporter, msg, func(ev NATEvent) {
				b := ev.Binding
				if !b.Public.IsValid() || !b.Inside.IsValid() || b.PortLo == 0 || b.PortLo > b.PortHi {
					t.Fatalf("bad event: %+v", ev)
				}
			})
		}
		if len(d.templates) > ipfixMaxTemplates {
			t.Fatalf("%d templates", len(d.templates))
		}
	})
}

func FuzzDeterministic(f *testing.F) {
	f.Add("100.64.0.0/22 198.51.100.0/30 1024-65000 2026-12-06T00:00:00Z 2026-12-07T00:00:00Z\n")
	f.Add("100.64.0.0/10 198.51.100.0/26 1-65535\n# x\n")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDeterministic(strings.NewReader(s), "det")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "det") {
				t.Fatalf("error without the file's name: %v", err)
			}
			return
		}
		// Every inside address maps to a range whose ports map back to it.
		for _, r := range d.rules {
			in := r.inside.Addr()
			at := time.UnixMilli(r.from)
			pub, lo, hi, ok := d.Forward(in, at)
			if !ok {
				t.Fatalf("no forward mapping for %s", in)
			}
			for _, p := range []uint16{lo, hi} {
				res, ok := d.lookup(pub, p, r.from)
				if !ok || res.Inside.Addr() != in {
					t.Fatalf("%s:%d maps to %+v, want %s", pub, p, res, in)
				}
			}
		}
	})
}

func FuzzSubscribers(f *testing.F) {
	f.Add("100.64.0.0/24 alice\n2001:db8::/48 bob # comment\n192.0.2.1 carol\n")
	f.Add("100.64.0.0/24 alice alice@example.net de\n100.64.1.0/24 alice alice@example.net\n192.0.2.1 carol c@x.y\n")
	f.Fuzz(func(t *testing.T, s string) {
		subs, err := ParseSubscribers(strings.NewReader(s), "subs")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "subs") {
				t.Fatalf("error without the file's name: %v", err)
			}
			return
		}
		for p, id := range subs.byPrefix {
			if got := subs.Lookup(p.Addr()); got == "" {
				t.Fatalf("%s (%s) not found", p, id)
			}
		}
		for id := range subs.contacts {
			if email, _, ok := subs.Contact(id); !ok || strings.ContainsAny(email, "\r\n<> ") {
				t.Fatalf("subscriber %s: contact %q could break a mail header", id, email)
			}
		}
	})
}

func FuzzSecrets(f *testing.F) {
	f.Add("127.0.0.1/32 s3cret\n10.0.0.0/8\tanother secret\n")
	f.Fuzz(func(t *testing.T, s string) {
		sec, err := ParseSecrets(strings.NewReader(s), "secrets")
		if err != nil {
			// An error may name the line but never quote a secret.
			for _, line := range strings.Split(s, "\n") {
				if _, secret, ok := strings.Cut(strings.TrimSpace(line), " "); ok && len(secret) > 8 && strings.Contains(err.Error(), secret) {
					t.Fatalf("error quotes a secret: %v", err)
				}
			}
			return
		}
		for i, p := range sec.nets {
			if !bytes.Equal(sec.Secret(p.Addr()), sec.keys[i]) && sec.nets[i].Bits() == p.Addr().BitLen() {
				t.Fatalf("%s: wrong secret", p)
			}
		}
	})
}

// FuzzRADIUSRequest feeds what a NAS could send after the authenticator
// check: attributes of any shape. The server walks the attributes itself;
// whatever layeh's parser refuses it must refuse too, and what it takes
// must be a record with a time and a NAS.
func FuzzRADIUSRequest(f *testing.F) {
	p := radius.New(radius.CodeAccountingRequest, []byte("s"))
	p.Add(1, radius.Attribute("alice"))
	p.Add(40, radius.Attribute{0, 0, 0, 1})
	p.Add(44, radius.Attribute("s1"))
	p.Add(8, radius.Attribute{100, 64, 0, 2})
	p.Add(123, radius.Attribute{0, 56, 0x20, 0x01, 0x0d, 0xb8})
	p.Add(33, radius.Attribute("proxy"))
	b, _ := p.Encode()
	f.Add(b)
	secrets, _ := ParseSecrets(strings.NewReader("127.0.0.1 s\n"), "s")
	srv, _ := NewRADIUS(RADIUSConfig{Secrets: secrets}, nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 20 {
			return
		}
		_, perr := radius.ParseAttributes(b[20:])
		ev, err := srv.event(b[20:], netip.MustParseAddr("127.0.0.1"))
		if err != nil {
			return
		}
		if perr != nil {
			t.Fatalf("attributes layeh refuses (%v) taken: %+v", perr, ev)
		}
		if ev.At.IsZero() || !ev.Session.NAS.IsValid() {
			t.Fatalf("bad record: %+v", ev)
		}
	})
}

// FuzzRADIUSDatagram signs attributes of any shape as a NAS would and
// feeds the datagram to the server's own check and walk: nothing panics,
// and when a record is taken its answer (identifier, Proxy-States, Response
// Authenticator) is one layeh's client accepts.
func FuzzRADIUSDatagram(f *testing.F) {
	p := radius.New(radius.CodeAccountingRequest, []byte("s"))
	p.Add(1, radius.Attribute("alice"))
	p.Add(40, radius.Attribute{0, 0, 0, 1})
	p.Add(44, radius.Attribute("s1"))
	p.Add(33, radius.Attribute("proxy"))
	b, _ := p.Encode()
	f.Add(b[20:], byte(7))
	secrets, _ := ParseSecrets(strings.NewReader("127.0.0.1 s\n"), "s")
	srv, _ := NewRADIUS(RADIUSConfig{Secrets: secrets}, nil)
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1812}
	f.Fuzz(func(t *testing.T, attrs []byte, id byte) {
		if len(attrs) > radius.MaxPacketLength-20 {
			attrs = attrs[:radius.MaxPacketLength-20]
		}
		l := 20 + len(attrs)
		pkt := append([]byte{byte(radius.CodeAccountingRequest), id, byte(l >> 8), byte(l)}, make([]byte, 16)...)
		pkt = append(pkt, attrs...)
		sum := md5.Sum(append(append([]byte(nil), pkt...), 's'))
		copy(pkt[4:20], sum[:])
		var batch radiusBatch
		srv.take(&batch, &ipv4.Message{Buffers: [][]byte{pkt}, N: len(pkt), Addr: from})
		if len(batch.reqs) == 0 {
			return
		}
		resp, _ := response(nil, nil, &batch.reqs[0])
		if !radius.IsAuthenticResponse(resp, pkt, []byte("s")) {
			t.Fatalf("answer %x does not authenticate", resp)
		}
		got, err := radius.Parse(resp, []byte("s"))
		if err != nil || got.Identifier != id {
			t.Fatalf("answer %x: %v", resp, err)
		}
		for _, av := range got.Attributes {
			if av.Type != 33 {
				t.Fatalf("answer carries attribute %d", av.Type)
			}
		}
	})
}
