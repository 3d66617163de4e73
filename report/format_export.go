package report

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"wormsink/evidence"
	"wormsink/signatures"
)

// ShadowserverHeader is the column row of Shadowserver's "Sinkhole Events"
// reports, event4_sinkhole (IPv4 hosts) and event6_sinkhole (IPv6 hosts),
// exactly as their published schema lists it (both have the same columns),
// so that positional readers, IntelMQ's and AbuseIO's Shadowserver parsers
// take the file as theirs. Columns wormsink has no data for (geo, ASN,
// NAICS, device, TLS) stay empty, as they do in Shadowserver's own files
// when unknown.
var ShadowserverHeader = []string{
	"timestamp", "protocol", "src_ip", "src_port", "src_asn", "src_geo", "src_region", "src_city",
	"src_hostname", "src_naics", "src_sector", "device_vendor", "device_type", "device_model",
	"severity", "dst_ip", "dst_port", "dst_asn", "dst_geo", "dst_region", "dst_city", "dst_hostname",
	"dst_naics", "dst_sector", "public_source", "infection", "family", "tag", "application",
	"version", "event_id", "ssl_cipher", "ssl_servername",
}

// The report types of the two files: Shadowserver splits its sinkhole
// events by the host's address family.
const (
	ShadowserverReport4 = "event4_sinkhole"
	ShadowserverReport6 = "event6_sinkhole"
)

// Column positions, found by name so the mapping cannot drift from the
// header.
var (
	ssTimestamp    = ssCol("timestamp")
	ssProtocol     = ssCol("protocol")
	ssSrcIP        = ssCol("src_ip")
	ssSrcPort      = ssCol("src_port")
	ssSeverity     = ssCol("severity")
	ssDstIP        = ssCol("dst_ip")
	ssDstPort      = ssCol("dst_port")
	ssPublicSource = ssCol("public_source")
	ssInfection    = ssCol("infection")
	ssFamily       = ssCol("family")
	ssTag          = ssCol("tag")
	ssApplication  = ssCol("application")
)

func ssCol(name string) int {
	for i, h := range ShadowserverHeader {
		if h == name {
			return i
		}
	}
	panic("report: no Shadowserver column " + name)
}

// Severity values, from Shadowserver's scale: its own sinkhole events are
// "critical"; a weak sighting is only worth an analyst's look.
const (
	severityStrong = "critical"
	severityWeak   = "medium"
)

// shadowserverTime is how Shadowserver writes timestamps (UTC, no zone).
const shadowserverTime = "2006-01-02 15:04:05"

// ShadowserverWriter writes one Sinkhole Events row per evidence line of
// one address family, as the lines stream by; its memory does not grow. A
// folded line (count > 1) stays one row; its count is in the tag column.
type ShadowserverWriter struct {
	cw      *csv.Writer
	row     []string
	header  bool
	ipv6    bool
	skipped uint64
}

// NewShadowserverWriter writes the event4_sinkhole rows (IPv4 hosts) to w;
// the header goes out with the first row (or at Flush when there is none).
func NewShadowserverWriter(w io.Writer) *ShadowserverWriter {
	return &ShadowserverWriter{cw: csv.NewWriter(w), row: make([]string, len(ShadowserverHeader))}
}

// NewShadowserverWriter6 writes the event6_sinkhole rows (IPv6 hosts).
func NewShadowserverWriter6(w io.Writer) *ShadowserverWriter {
	s := NewShadowserverWriter(w)
	s.ipv6 = true
	return s
}

// Report is the Shadowserver report type the writer's rows belong to.
func (s *ShadowserverWriter) Report() string {
	if s.ipv6 {
		return ShadowserverReport6
	}
	return ShadowserverReport4
}

// family reports whether host's rows belong in this writer's report.
func (s *ShadowserverWriter) family(host netip.Addr) bool { return host.Unmap().Is6() == s.ipv6 }

// Skipped counts the rows left out because their host is of the other
// address family (they belong in the other report).
func (s *ShadowserverWriter) Skipped() uint64 { return s.skipped }

// Write adds the row for one record, or counts it as skipped when its host
// belongs in the other family's report.
//
// Mapping: timestamp ← time (first sighting); protocol ← transport (dns),
// udp (tftp), proto (wire); src_ip/src_port ← host/port; severity ←
// critical (strong) or medium (weak); dst_ip/dst_port ← the sinkhole's TFTP
// server address (tftp) or the peer and its port (wire: the port the
// packet went to, or for the server of a TFTP transfer the requester's
// port), empty for dns; public_source ← sensor; infection ← signature id;
// family ← family; tag ← "EVENT;evidence=strong|weak;count=N"; application
// ← dns or tftp.
//
// A network line names no host, so it has no row: Shadowserver's rows are
// per source address.
func (s *ShadowserverWriter) Write(r *Sighting) error {
	if r.Network.IsValid() {
		return nil
	}
	if !s.family(r.Host) {
		s.skipped++
		return nil
	}
	if !s.header {
		s.header = true
		if err := s.cw.Write(ShadowserverHeader); err != nil {
			return err
		}
	}
	row := s.row
	for i := range row {
		row[i] = ""
	}
	row[ssTimestamp] = r.Time.UTC().Format(shadowserverTime)
	row[ssSrcIP] = r.Host.Unmap().String()
	row[ssSrcPort] = strconv.Itoa(int(r.Port))
	row[ssSeverity] = severityWeak
	if r.Evidence == signatures.Strong {
		row[ssSeverity] = severityStrong
	}
	switch r.Kind {
	case evidence.DNSSinkhole, evidence.DNSLookup:
		row[ssProtocol] = orDefault(string(r.Transport), "udp")
		row[ssApplication] = "dns"
	case evidence.TFTPRefused, evidence.TFTPRequest:
		row[ssProtocol] = "udp"
		row[ssApplication] = "tftp"
		if ap, err := netip.ParseAddrPort(string(r.Server)); err == nil {
			row[ssDstIP], row[ssDstPort] = ap.Addr().Unmap().String(), strconv.Itoa(int(ap.Port()))
		}
		// The interceptor's line for the server a worm was asked from:
		// the host is that server, the other end the client that asked.
		if string(r.Role) == evidence.RoleServer {
			row[ssDstIP], row[ssDstPort] = "", ""
			if a, err := netip.ParseAddr(string(r.Peer)); err == nil {
				row[ssDstIP] = a.Unmap().String()
			}
		}
	case evidence.WireMatch:
		row[ssProtocol] = string(r.Proto)
		if a, err := netip.ParseAddr(string(r.Peer)); err == nil {
			row[ssDstIP] = a.Unmap().String()
		}
		if r.DstPort != 0 {
			row[ssDstPort] = strconv.Itoa(int(r.DstPort))
		}
		if len(r.File) > 0 {
			row[ssApplication] = "tftp"
		}
	}
	row[ssPublicSource] = string(r.Sensor)
	row[ssInfection] = string(r.Sig)
	row[ssFamily] = string(r.Family)
	row[ssTag] = string(r.Kind) + ";evidence=" + r.Evidence.String() + ";count=" + strconv.FormatUint(r.Count, 10) + ";proof=" + r.Proof.String()
	return s.cw.Write(neutralise(row))
}

// Flush writes what is buffered (and the header if no row came).
func (s *ShadowserverWriter) Flush() error {
	if !s.header {
		s.header = true
		if err := s.cw.Write(ShadowserverHeader); err != nil {
			return err
		}
	}
	s.cw.Flush()
	return s.cw.Error()
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Reporter is who files X-ARF reports: X-ARF v4 requires an organisation,
// a contact e-mail address and a domain for both reporter and sender.
type Reporter struct {
	Org     string `json:"org"`
	Contact string `json:"contact"`
	Domain  string `json:"domain"`
}

// XARFVersion is the X-ARF schema version the reports follow.
const XARFVersion = "4.0.0"

// XARFReport is one X-ARF v4 report, category infrastructure, type botnet:
// v4's name for what X-ARF 0.2 called abuse / bot-infection.
type XARFReport struct {
	XARFVersion        string         `json:"xarf_version"`
	ReportID           string         `json:"report_id"`
	Timestamp          string         `json:"timestamp"`
	Reporter           Reporter       `json:"reporter"`
	Sender             Reporter       `json:"sender"`
	SourceIdentifier   string         `json:"source_identifier"`
	SourcePort         uint16         `json:"source_port,omitempty"`
	Category           string         `json:"category"`
	Type               string         `json:"type"`
	EvidenceSource     string         `json:"evidence_source"`
	Confidence         float64        `json:"confidence"`
	Description        string         `json:"description"`
	MalwareFamily      string         `json:"malware_family,omitempty"`
	CompromiseEvidence string         `json:"compromise_evidence"`
	InfectionVector    string         `json:"infection_vector"`
	FirstSeen          string         `json:"first_seen"`
	LastSeen           string         `json:"last_seen"`
	Tags               []string       `json:"tags"`
	Evidence           []XARFEvidence `json:"evidence"`
}

// XARFEvidence is one evidence item: the host's report row as JSON.
type XARFEvidence struct {
	ContentType string `json:"content_type"`
	Description string `json:"description"`
	Payload     string `json:"payload"` // base64
	Hash        string `json:"hash"`
	Size        int    `json:"size"`
}

// Confidence wormsink states per evidence strength and proof. A host seen
// only in lone datagrams may be a forged source address, whatever the
// datagrams asked for, so its confidence is well below a verified host's
// (such hosts are filed only with --include-unverified).
const (
	confidenceStrong           = 0.9
	confidenceWeak             = 0.5
	confidenceStrongUnverified = 0.3
	confidenceWeakUnverified   = 0.1
)

// confidence is the X-ARF confidence for a row.
func confidence(h *HostSummary) float64 {
	strong := h.Evidence == EvidenceStrong
	switch {
	case strong && h.Proof.Verified():
		return confidenceStrong
	case strong:
		return confidenceStrongUnverified
	case h.Proof.Verified():
		return confidenceWeak
	}
	return confidenceWeakUnverified
}

// XARF builds the report for one host.
//
// Mapping: source_identifier ← host; timestamp and source_port ← the last
// sighting's time and source port (the pair a CGNAT operator looks up);
// first_seen/last_seen ← the row's; malware_family ← families; confidence
// ← 0.9 strong, 0.5 weak, 0.3 and 0.1 when every sighting was a lone
// datagram (proof datagram); compromise_evidence ← a sentence naming the
// events by source and the signatures; evidence ← the JSON row, base64;
// report_id ← a UUID (version 4 layout) derived from host, first seen and
// sensors, so filing the same report twice gives the same id.
func XARF(h *HostSummary, rep Reporter) XARFReport {
	row, _ := json.Marshal(h.jsonRow())
	sum := sha256.Sum256(row)
	conf := confidence(h)
	fams := strings.Join(h.Families, ", ")
	if len(fams) > 200 {
		fams = fams[:200]
	}
	x := XARFReport{
		XARFVersion:      XARFVersion,
		ReportID:         reportID(h),
		Timestamp:        h.LastSeen.Format(evidence.TimeFormat),
		Reporter:         rep,
		Sender:           rep,
		SourceIdentifier: h.Host.String(),
		SourcePort:       h.LastPort,
		Category:         "infrastructure",
		Type:             "botnet",
		EvidenceSource:   "sinkhole",
		Confidence:       conf,
		Description: fmt.Sprintf("%s: %d worm sightings (%s evidence, proof %s) by wormsink sinkhole between %s and %s",
			h.Host, h.Events, h.Evidence, h.Proof, h.FirstSeen.Format(evidence.TimeFormat), h.LastSeen.Format(evidence.TimeFormat)),
		MalwareFamily:      fams,
		CompromiseEvidence: compromiseEvidence(h),
		InfectionVector:    "network_worm",
		FirstSeen:          h.FirstSeen.Format(evidence.TimeFormat),
		LastSeen:           h.LastSeen.Format(evidence.TimeFormat),
		Tags:               xarfTags(h),
		Evidence: []XARFEvidence{{
			ContentType: "application/json",
			Description: "wormsink report row: sightings of this host summed over the evidence logs",
			Payload:     base64.StdEncoding.EncodeToString(row),
			Hash:        "sha256:" + hex.EncodeToString(sum[:]),
			Size:        len(row),
		}},
	}
	return x
}

func compromiseEvidence(h *HostSummary) string {
	var parts []string
	if h.Sources.DNS > 0 {
		parts = append(parts, fmt.Sprintf("%d DNS lookups of worm domains answered by the sinkhole", h.Sources.DNS))
	}
	if h.Sources.TFTP > 0 {
		parts = append(parts, fmt.Sprintf("%d TFTP requests for worm files refused by the fake or intercepting TFTP server", h.Sources.TFTP))
	}
	if h.Sources.Wire > 0 {
		parts = append(parts, fmt.Sprintf("%d worm packets seen on the wire", h.Sources.Wire))
	}
	s := strings.Join(parts, "; ")
	if len(h.Signatures) > 0 {
		s += " (signatures: " + strings.Join(h.Signatures, ", ") + ")"
	}
	return s
}

// xarfTags makes "namespace:value" tags within X-ARF v4's pattern
// ^[a-z0-9][a-z0-9_+-]*:[a-z0-9][a-z0-9_+-]*$, at most 20.
func xarfTags(h *HostSummary) []string {
	tags := []string{"evidence:" + h.Evidence.String(), "proof:" + h.Proof.String()}
	for _, f := range h.Families {
		if v := tagValue(f); v != "" {
			tags = append(tags, "malware:"+v)
		}
	}
	for _, s := range h.Sensors {
		if v := tagValue(s); v != "" {
			tags = append(tags, "sensor:"+v)
		}
	}
	if len(tags) > 20 {
		tags = tags[:20]
	}
	return tags
}

// tagValue maps a name into the tag alphabet: letters in lower case, digits,
// '_', '+' and '-' stay; anything else (the dots of "ns1.isp.example" or
// "W32.Blaster", spaces, slashes, non-ASCII) becomes one '-'. The value
// starts with a letter or digit; it is empty when the name has none.
func tagValue(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '+':
			b.WriteRune(r)
			dash = false
		default: // '-' itself and everything outside the alphabet
			if !dash {
				b.WriteByte('-')
				dash = true
			}
		}
	}
	return strings.TrimRight(strings.TrimLeft(b.String(), "_+-"), "-")
}

func reportID(h *HostSummary) string {
	hh := sha256.New()
	fmt.Fprintf(hh, "%s|%d|%s", h.Host, h.FirstSeen.UnixNano(), strings.Join(h.Sensors, ","))
	var u [16]byte
	copy(u[:], hh.Sum(nil))
	u[6] = u[6]&0x0f | 0x40 // version 4 layout
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	x := hex.EncodeToString(u[:])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// WriteXARF writes one X-ARF v4 JSON report per host, one per line.
func WriteXARF(w io.Writer, rows []HostSummary, rep Reporter) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := range rows {
		buf.Reset()
		if err := enc.Encode(XARF(&rows[i], rep)); err != nil {
			return err
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return err
		}
	}
	return nil
}
