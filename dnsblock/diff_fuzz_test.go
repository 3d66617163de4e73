package dnsblock

import (
	"bytes"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"wormsink/internal/evidencetest"
)

// refListed is the policy decided from miekg/dns's reading of a name, by
// labels as miekg splits them (a '.' inside a label stays escaped, so it
// never meets a listed label): the reference the shim's byte-level
// matching is held against.
func refListed(name string) bool {
	labels := dns.SplitDomainName(strings.ToLower(name))
	if len(labels) == 0 {
		return false
	}
	exact := map[string]bool{"worm.example": true, "nx.example": true, "nodata.example": true, "target.example": true}
	if exact[strings.Join(labels, ".")] {
		return true
	}
	for k := 1; k < len(labels); k++ {
		if strings.Join(labels[k:], ".") == "wild.example" {
			return true
		}
	}
	return false
}

// FuzzDifferential holds the shim's own wire parsing against miekg/dns
// unpacking. Hostile queries: whatever miekg reads as the question, the
// shim must answer by policy exactly when that name is listed. Hostile
// upstream answers (after a question that matches): an answer the shim
// relays unchanged must, as miekg reads it, name no listed owner or CNAME
// target in its answer section; whatever else it sends must unpack.
func FuzzDifferential(f *testing.F) {
	for _, q := range [][]byte{
		packQuery(f, `x\.y.wild.example.`, dns.TypeA, true),
		packQuery(f, `WORM.example.`, dns.TypeA, false),
		packQuery(f, `a\000b.wild.example.`, dns.TypeAAAA, false),
		packQuery(f, `x\.y.worm.example.`, dns.TypeA, false),
		packQuery(f, `worm\.example.`, dns.TypeA, false),
	} {
		f.Add(q, []byte{})
	}
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			f.Fatal(err)
		}
		return r
	}
	for _, recs := range [][]string{
		{`alias.example. 60 IN CNAME a\.b.example.`, `a\.b.example. 60 IN CNAME worm.example.`, "worm.example. 60 IN A 198.51.100.1"},
		{"worm.example. 60 IN A 198.51.100.1", `alias.example. 60 IN CNAME X.wild.example.`},
		{"alias.example. 60 IN A 192.0.2.1"},
	} {
		m := new(dns.Msg)
		m.SetQuestion("alias.example.", dns.TypeA)
		m.Response = true
		for _, s := range recs {
			m.Answer = append(m.Answer, rr(s))
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(nil), b)
	}
	hq := newTestHandler(f, "", 0, &evidencetest.Recorder{}) // no cache: every answer is decided afresh
	h := newTestHandler(f, "", 100, &evidencetest.Recorder{})
	sc := newScratch()
	aliasQ := packQuery(f, "alias.example.", dns.TypeA, false)
	f.Fuzz(func(t *testing.T, query, answer []byte) {
		if len(query) > 0 {
			m := new(dns.Msg)
			resp, fwd := hq.answer(sc, query, benchClient, true)
			if m.Unpack(query) != nil || len(m.Question) != 1 || m.Response || m.Opcode != 0 {
				return
			}
			if o := m.IsEdns0(); o != nil && o.Version() != 0 {
				return
			}
			if resp != nil && resp[3]&0xf == rcodeFormErr {
				return // the shim is stricter than miekg about some records after the question
			}
			// The client is allowed and the query is well formed: an
			// answer the shim makes itself is a policy answer.
			policy := !fwd && resp != nil
			if listed := refListed(m.Question[0].Name); listed != policy {
				t.Fatalf("%q (class %d): listed %v, shim policy answer %v", m.Question[0].Name, m.Question[0].Qclass, listed, policy)
			}
			return
		}
		if len(answer) < len(aliasQ) {
			return
		}
		resp := append([]byte(nil), answer...)
		copy(resp, aliasQ[:headerLen])
		resp[2] |= 0x80
		copy(resp[4:6], []byte{0, 1})
		copy(resp[headerLen:], aliasQ[headerLen:])
		if err := parseQuery(aliasQ, &sc.q, sc.name[:]); err != nil {
			t.Fatal(err)
		}
		in := append([]byte(nil), resp...)
		out := h.relay(sc, aliasQ, resp, h.src.Current(), benchClient, true)
		got := new(dns.Msg)
		if bytes.Equal(out, in) {
			if got.Unpack(out) != nil {
				return // no client can read it either
			}
			for _, r := range got.Answer {
				if refListed(r.Header().Name) {
					t.Fatalf("relayed with listed owner %v\n%x", r, out)
				}
				if c, ok := r.(*dns.CNAME); ok && refListed(c.Target) {
					t.Fatalf("relayed with listed CNAME target %v\n%x", r, out)
				}
			}
			return
		}
		if err := got.Unpack(out); err != nil {
			t.Fatalf("shim's own answer does not unpack: %v\n%x", err, out)
		}
		for _, r := range got.Answer {
			if a, ok := r.(*dns.A); ok && a.A.String() != "192.0.2.66" {
				t.Fatalf("rewritten answer carries %v", r)
			}
		}
	})
}
