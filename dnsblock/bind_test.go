package dnsblock

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"wormsink/internal/testutil"
)

// hostileZone is an authoritative zone a hostile party could publish: names
// with a '.' byte inside a label, CNAME chains through them into listed
// names, and a chain longer than the shim follows.
const hostileZone = `$TTL 300
@            IN SOA ns hostmaster 1 3600 600 86400 60
@            IN NS  ns
ns           IN A   127.0.0.1
worm         IN A   198.51.100.1
worm         IN AAAA 2001:db8:bad::1
x\.y.wild    IN A   198.51.100.2
\000.wild    IN A   198.51.100.3
x\.y.worm    IN A   198.51.100.4
a            IN CNAME a\.b
a\.b         IN CNAME worm
d            IN CNAME e\.f.wild
e\.f.wild    IN A   198.51.100.5
safe         IN A   198.51.100.6
long0        IN CNAME long1
long1        IN CNAME long2
long2        IN CNAME long3
long3        IN CNAME long4
long4        IN CNAME long5
long5        IN CNAME long6
long6        IN CNAME long7
long7        IN CNAME long8
long8        IN CNAME long9
long9        IN CNAME long10
long10       IN CNAME long11
long11       IN CNAME long12
long12       IN CNAME long13
long13       IN CNAME long14
long14       IN CNAME long15
long15       IN CNAME long16
long16       IN CNAME long17
long17       IN CNAME long18
long18       IN CNAME safe
`

// startBIND runs a real BIND 9 (named, unprivileged options, foreground)
// on a loopback port, authoritative for "example" with zone, and waits
// until it answers.
func startBIND(t *testing.T, zone string) string {
	t.Helper()
	bin := testutil.Need(t, "named")
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil { // named may drop to its own user
		t.Fatal(err)
	}
	zoneFile := filepath.Join(dir, "example.zone")
	if err := os.WriteFile(zoneFile, []byte(zone), 0o644); err != nil {
		t.Fatal(err)
	}
	return testutil.Daemon{Name: "named", Ready: testutil.AnswersA("safe.example."), Command: func(port int) (string, []string, error) {
		conf := testutil.NamedConf(port, dir, `	recursion no;
	minimal-responses yes;
	notify no;
	check-names primary ignore;
`, fmt.Sprintf("zone \"example\" { type primary; file %q; };\n", zoneFile))
		path := filepath.Join(dir, "named.conf")
		return bin, testutil.NamedArgs(path), os.WriteFile(path, []byte(conf), 0o644)
	}}.StartT(t).Addr
}
