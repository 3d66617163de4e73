package dnsblock

import (
	"net/netip"
	"time"

	"wormsink/signatures"
)

// Garden is the walled garden: the quarantine as the shim enforces it. A
// quarantined client's lookups are answered with the notice page's
// address, except the names it may still resolve (updates, antivirus, the
// ISP's support site), which are forwarded as usual. Both methods are
// called on the query path: they must answer from memory, without
// allocating.
type Garden interface {
	// Quarantined says whether client is quarantined now.
	Quarantined(client netip.Addr) bool
	// Allowed says whether a quarantined client may resolve name (lower
	// case, no trailing dot) normally.
	Allowed(name string) bool
}

// DefaultGardenTTL is the TTL of walled-garden answers: short, so that a
// released client's cache forgets the notice address within a minute.
const DefaultGardenTTL = 30 * time.Second

// ProbeNames are the names operating systems and browsers ask to find out
// whether they are behind a captive portal. A quarantined client always
// gets the notice address for them, allowlist or not, so that the
// operating system itself opens the notice page.
var ProbeNames = []string{
	"www.msftconnecttest.com", "ipv6.msftconnecttest.com", "www.msftncsi.com", "dns.msftncsi.com", // Windows NCSI
	"captive.apple.com", "www.apple.com", "gsp1.apple.com", // Apple
	"connectivitycheck.gstatic.com", "connectivitycheck.android.com", "clients3.google.com", "www.google.com", // Android, ChromeOS
	"detectportal.firefox.com",                                                      // Firefox
	"nmcheck.gnome.org", "network-test.debian.org", "connectivity-check.ubuntu.com", // Linux desktops
}

// gardenMatch is the policy answer of the walled garden: a sinkhole to
// the notice addresses, its Extended DNS Error naming the quarantine.
var gardenMatch = signatures.NameMatch{
	Domain:    &signatures.Domain{Action: signatures.Sinkhole},
	Signature: &signatures.Signature{ID: "quarantine"},
}

// isProbe reports whether name is a captive-portal probe name.
func isProbe(name []byte) bool {
	for _, p := range ProbeNames {
		if string(name) == p { // no allocation: compared, not converted
			return true
		}
	}
	return false
}

// garden decides a query of a quarantined client; it reports false when
// the query goes on as any other (no garden, client not quarantined, name
// allowed).
func (h *handler) garden(s *scratch, msg []byte, client netip.Addr, tcp bool) ([]byte, bool) {
	g := h.cfg.Garden
	if g == nil || !g.Quarantined(client.Unmap()) {
		return nil, false
	}
	q := &s.q
	if !isProbe(q.text) && g.Allowed(bstr(q.text)) {
		h.stats.gardenPassed.Add(1)
		return nil, false
	}
	h.stats.gardened.Add(1)
	if q.qclass != classIN && q.qclass != classANY {
		return errorAnswer(s.out, msg, q, rcodeRefused), true
	}
	return h.fit(h.synthAnswer(s.out, msg, q, signatures.Sinkhole, edeBlocked, gardenMatch.Signature.ID, &h.gv4, &h.gv6, 0, nil, nil), q, msg, tcp), true
}
