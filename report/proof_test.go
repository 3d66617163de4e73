package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"wormsink/evidence"
	"wormsink/signatures"
)

// proofLog is a log through the real writer: a host seen only in lone
// datagrams (a forged source looks exactly like this), one whose TFTP
// request was followed up (exchange) among datagrams, one seen over TCP,
// and one inside the trusted networks.
func proofLog(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := evidence.NewWriter(&buf, evidence.Config{Sensor: "s", TrustedSources: evidence.Networks{netip.MustParsePrefix("10.7.0.0/16")}})
	forged := netip.MustParseAddr("10.0.0.66")
	for i := range 3 {
		w.Record(tftpEv(forged, t0.Add(time.Duration(i)*time.Second), uint16(1000+i)))
	}
	ex := tftpEv(host2, t0, 1069)
	w.Record(ex)
	ex.Proof = evidence.ProofExchange
	w.Record(ex) // same sighting, better proof: a line of its own, not folded with the datagram
	tcp := dnsEv(host3, t0, "blaster", "Blaster", signatures.Strong)
	tcp.Transport, tcp.Proof = "tcp", evidence.ProofTCP
	w.Record(tcp)
	w.Record(tftpEv(netip.MustParseAddr("10.7.1.1"), t0, 1500)) // trusted
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestProofLines(t *testing.T) {
	log := proofLog(t)
	var got []string
	r, _ := NewReader(bytes.NewReader(log), "log")
	for r.Next() {
		s := r.Sighting()
		got = append(got, s.Host.String()+"="+s.Proof.String())
	}
	n := map[string]int{}
	for _, g := range got {
		n[g]++
	}
	want := map[string]int{"10.0.0.66=datagram": 3, "10.0.0.2=datagram": 1, "10.0.0.2=exchange": 1, "10.0.0.3=tcp": 1, "10.7.1.1=trusted-source": 1}
	if len(got) != 7 || len(n) != len(want) {
		t.Fatalf("lines %q", got)
	}
	for k, v := range want {
		if n[k] != v {
			t.Errorf("%d lines %s, want %d (%q)", n[k], k, v, got)
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		if strings.Contains(l, `"host"`) && !strings.Contains(l, `"proof":"`) {
			t.Errorf("evidence line without proof: %s", l)
		}
	}
	// A line of a log written before proof existed reads as a datagram;
	// a proof nobody writes is a malformed line.
	var p Parser
	var s Sighting
	old := `{"time":"2026-11-24T10:00:00Z","event":"tftp_refused","host":"1.2.3.4","evidence":"strong"}`
	if k, err := p.Parse([]byte(old), &s); k != LineEvidence || s.Proof != evidence.ProofDatagram {
		t.Errorf("old line: %v %v proof %v", k, err, s.Proof)
	}
	bad := `{"time":"2026-11-24T10:00:00Z","event":"tftp_refused","host":"1.2.3.4","evidence":"strong","proof":"forged"}`
	if k, _ := p.Parse([]byte(bad), &s); k != LineMalformed {
		t.Errorf("unknown proof read as %v", k)
	}
}

func proofRows(t *testing.T, f Filter) []HostSummary {
	a := NewAggregator(f, false)
	r, _ := NewReader(bytes.NewReader(proofLog(t)), "log")
	for r.Next() {
		a.Add(r.Sighting())
	}
	return a.Hosts()
}

func TestProofBestPerHost(t *testing.T) {
	rows := proofRows(t, Filter{})
	got := map[string]string{}
	for _, h := range rows {
		got[h.Host.String()] = h.Proof.String()
	}
	want := map[string]string{"10.0.0.66": "datagram", "10.0.0.2": "exchange", "10.0.0.3": "tcp", "10.7.1.1": "trusted-source"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: proof %q, want %q (all %v)", k, got[k], v, got)
		}
	}
	var buf bytes.Buffer
	if err := WriteCSV(&buf, rows); err != nil {
		t.Fatal(err)
	}
	recs, _ := csv.NewReader(&buf).ReadAll()
	if recs[0][8] != "sensors" || recs[0][9] != "proof" {
		t.Fatalf("header %q", recs[0])
	}
	for _, rec := range recs[1:] {
		if rec[9] != want[rec[0]] {
			t.Errorf("csv %s proof %q", rec[0], rec[9])
		}
	}
	buf.Reset()
	if err := WriteTable(&buf, rows); err != nil {
		t.Fatal(err)
	}
	if head, _, _ := strings.Cut(buf.String(), "\n"); !strings.HasSuffix(strings.TrimSpace(head), "SENSORS  PROOF           SUBSCRIBERS") {
		t.Errorf("table head %q", head)
	}
	buf.Reset()
	if err := WriteHTML(&buf, rows, HTMLPage{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "<th>sensors</th><th>proof</th>") || !strings.Contains(buf.String(), ">trusted-source</td>") {
		t.Errorf("html lacks the proof column")
	}
}

func TestProofXARF(t *testing.T) {
	rep := Reporter{Org: "x", Contact: "abuse@x.example", Domain: "x.example"}
	conf := func(rows []HostSummary) map[string]float64 {
		var buf bytes.Buffer
		if err := WriteXARF(&buf, rows, rep); err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			var x XARFReport
			if err := json.Unmarshal([]byte(l), &x); err != nil {
				t.Fatal(err)
			}
			out[x.SourceIdentifier] = x.Confidence
			if !strings.Contains(strings.Join(x.Tags, " "), "proof:") {
				t.Errorf("tags %q lack the proof", x.Tags)
			}
		}
		return out
	}
	all := conf(proofRows(t, Filter{}))
	if len(all) != 4 {
		t.Fatalf("all hosts: %v", all)
	}
	for _, verified := range []string{"10.0.0.2", "10.0.0.3", "10.7.1.1"} {
		if all["10.0.0.66"] >= all[verified]-0.3 {
			t.Errorf("datagram-only confidence %v is not clearly below %s's %v", all["10.0.0.66"], verified, all[verified])
		}
	}
	def := conf(proofRows(t, Filter{VerifiedOnly: true}))
	if _, ok := def["10.0.0.66"]; ok || len(def) != 3 {
		t.Errorf("verified-only filed %v", def)
	}
}
