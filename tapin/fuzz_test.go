package tapin

import (
	"bytes"
	"strings"
	"testing"

	dnstap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"
	"google.golang.org/protobuf/proto"
)

// FuzzDecodeFrame checks the hand-written dnstap decoder against the
// generated protobuf code, and the question reader against miekg/dns: what
// both accept must read the same; nothing may panic.
func FuzzDecodeFrame(f *testing.F) {
	f.Add(tapFrame(f, dnstap.Message_CLIENT_QUERY, "unbound-1", "listed.example", dns.TypeA, "192.0.2.10", 40001, dnstap.SocketProtocol_UDP))
	f.Add(tapFrame(f, dnstap.Message_CLIENT_RESPONSE, "", "a.b.wild.example", dns.TypeAAAA, "2001:db8::1", 1, dnstap.SocketProtocol_TCP))
	f.Add(tapFrame(f, dnstap.Message_RESOLVER_QUERY, "bind", "x.example", dns.TypeMX, "10.0.0.1", 53, dnstap.SocketProtocol_DOT))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr frame
		err := decodeFrame(b, &fr)
		var ref dnstap.Dnstap
		refErr := proto.Unmarshal(b, &ref)
		if err == nil && refErr == nil {
			m := ref.GetMessage()
			if !bytes.Equal(fr.identity, ref.Identity) || int32(fr.msgType) != int32(m.GetType()) ||
				!bytes.Equal(fr.queryAddr, m.QueryAddress) || fr.queryPort != uint64(m.GetQueryPort()) ||
				!bytes.Equal(fr.queryMsg, m.QueryMessage) || !bytes.Equal(fr.respMsg, m.ResponseMessage) ||
				fr.timeSec != m.GetQueryTimeSec() || fr.timeNsec != m.GetQueryTimeNsec() {
				t.Fatalf("decoders disagree: %+v vs %v", fr, &ref)
			}
		}
		// The question reader, on the raw input as a DNS message.
		var buf [256]byte
		name, qtype, ok := question(b, &buf)
		var msg dns.Msg
		if ok && msg.Unpack(b) == nil && len(msg.Question) > 0 {
			q := msg.Question[0]
			want := strings.TrimSuffix(strings.ToLower(q.Name), ".")
			if !strings.Contains(want, `\`) && (string(name) != want || qtype != q.Qtype) {
				t.Fatalf("question %q/%d, miekg %q/%d", name, qtype, want, q.Qtype)
			}
		}
	})
}
