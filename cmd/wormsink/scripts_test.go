package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// No build or run artefact is tracked: nothing the .gitignore names (the
// binary, msblast.exe), no executable binary, no empty file.
func TestNoTrackedArtefacts(t *testing.T) {
	needTool(t, "git")
	out, err := exec.Command("git", "-C", "../..", "ls-files", "-ci", "--exclude-standard").CombinedOutput()
	if err != nil {
		t.Fatalf("git ls-files: %v %s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("tracked files the .gitignore excludes: %s", s)
	}
	out, err = exec.Command("git", "-C", "../..", "ls-files", "-z").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		data, err := os.ReadFile(filepath.Join("../..", f))
		if err != nil {
			continue // deleted in the work tree
		}
		if len(data) == 0 || strings.HasPrefix(string(data), "\x7fELF") {
			t.Errorf("tracked artefact %s (%d bytes)", f, len(data))
		}
	}
}

// The repository stands alone: every Markdown file and every path into
// scripts/, deploy/, docs/ or testdata/ that a tracked file mentions exists.
func TestNoDanglingReferences(t *testing.T) {
	out, err := exec.Command("git", "-C", "../..", "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	ref := regexp.MustCompile("(?:^|[\\s(`\"'\\[])((?:[A-Za-z0-9_.-]+/)*[A-Za-z0-9_-]+\\.md|(?:scripts|deploy|docs|testdata)/[A-Za-z0-9_./-]*[A-Za-z0-9_-])")
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if strings.HasPrefix(f, "testdata/pcap/") || strings.HasSuffix(f, ".pcap") {
			continue
		}
		data, err := os.ReadFile(filepath.Join("../..", f))
		if err != nil || bytes.IndexByte(data, 0) >= 0 {
			continue
		}
		for _, m := range ref.FindAllStringSubmatch(string(data), -1) {
			r := strings.TrimSuffix(m[1], ".")
			if strings.ContainsAny(r, "*") {
				continue
			}
			_, e1 := os.Stat(filepath.Join("../..", r))
			_, e2 := os.Stat(filepath.Join("../..", filepath.Dir(f), r))
			if e1 != nil && e2 != nil && exec.Command("git", "-C", "../..", "check-ignore", r, r+"/").Run() != nil {
				// (a path git ignores is one a script makes)
				t.Errorf("%s names %s, which the repository lacks", f, r)
			}
		}
	}
}

// deps.sh disables the services of the packages it installs: for the
// real unbound (a systemd unit) and tftpd-hpa (a SysV init script) it
// plans the commands that keep them off after a reboot, and nothing for a
// package without services. DEPS_DRY_RUN prints instead of running, so
// the machine's own services stay as they are.
func TestDepsDisablesServices(t *testing.T) {
	needTool(t, "dpkg")
	for _, pkg := range []string{"unbound", "tftpd-hpa", "dnsutils"} {
		if err := exec.Command("dpkg", "-s", pkg).Run(); err != nil {
			t.Fatalf("%s is not installed: run `make deps`", pkg)
		}
	}
	cmd := exec.Command("../../scripts/deps.sh", "--disable-services", "unbound", "tftpd-hpa", "dnsutils")
	cmd.Env = append(os.Environ(), "DEPS_DRY_RUN=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("deps.sh: %v\n%s", err, out)
	}
	got := string(out)
	for _, want := range []string{"disable unbound.service", "update-rc.d tftpd-hpa disable"} {
		if !strings.Contains(got, want) {
			t.Errorf("deps.sh does not plan %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "dnsutils") || strings.Contains(got, "dig") {
		t.Errorf("deps.sh plans to touch a package without services:\n%s", got)
	}
}
