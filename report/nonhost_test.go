package report

import (
	"fmt"
	"strings"
	"testing"
)

// TestNonHostsNeverReported: a log written by an older wormsink, or by
// hand, may name the unspecified, broadcast or a multicast address as a
// host; no report lists one.
func TestNonHostsNeverReported(t *testing.T) {
	var b strings.Builder
	for _, h := range []string{"0.0.0.0", "::", "255.255.255.255", "224.0.0.1", "ff02::1", "::ffff:239.0.0.1", "198.51.100.7"} {
		fmt.Fprintf(&b, `{"time":"2026-12-01T10:00:00.000Z","event":"tftp_refused","host":%q,"port":1,"signature":"blaster","family":"Blaster","evidence":"strong","proof":"tcp","count":1,"sensor":"s","serial":1,"file":"msblast.exe","mode":"octet","op":"read"}`+"\n", h)
	}
	hosts, st := aggregate(t, Filter{}, []byte(b.String()))
	if len(hosts) != 1 || hosts[0].Host.String() != "198.51.100.7" {
		t.Errorf("hosts %v (stats %+v)", hosts, st)
	}
}
