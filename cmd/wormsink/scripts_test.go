package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// make perf-wire runs tcpdump as root. It must not change /dev/null (tcpdump
// hands a file named by -w to its own user). The script runs in a private
// mount namespace whose /dev/null is a fresh node, so the check cannot
// harm the machine's.
func TestPerfWireLeavesDevNull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (mount namespace, tcpdump as root)")
	}
	needTool(t, "tcpdump")
	needTool(t, "unshare")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := `set -e
mount --make-rprivate /
mount -t tmpfs ws16 "$DIR/dev"
mknod -m 666 "$DIR/dev/null" c 1 3
mount --bind "$DIR/dev/null" /dev/null
PACKETS=50000 PCAP="$DIR/mixed.pcap" "$ROOT/scripts/perf-wire.sh" >&2
stat -c %U:%G:%a /dev/null`
	if err := os.Mkdir(filepath.Join(dir, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--mount", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "DIR="+dir, "ROOT="+root)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("perf-wire: %v\n%s", err, stderr.String())
	}
	if got := strings.TrimSpace(string(out)); got != "root:root:666" {
		t.Errorf("/dev/null after make perf-wire: %s, want root:root:666\n%s", got, stderr.String())
	}
}
