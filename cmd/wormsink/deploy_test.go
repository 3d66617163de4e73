package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

// The deploy files as `make install` stages them (DESTDIR) start a service
// on a fresh machine: every file the unit names is installed, and its
// command line, with that configuration, starts serving (the built-in
// signature set, the resolvers of /etc/resolv.conf). Only the ports are
// moved to loopback ones of the test's own (flags on the command line
// win over the configuration).
func TestDeployInstall(t *testing.T) {
	needTool(t, "make")
	root := t.TempDir()
	bin := filepath.Join(t.TempDir(), "wormsink")
	out, err := exec.Command("make", "-s", "-C", "../..", "install", "DESTDIR="+root, "BIN="+bin).CombinedOutput()
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	unit, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/wormsink.service"))
	if err != nil {
		t.Fatal(err)
	}
	var exec0 string
	// LoadCredential=ID:PATH: systemd hands the service a copy of PATH as
	// $CREDENTIALS_DIRECTORY/ID; here, a directory of the test's own.
	creds := t.TempDir()
	for _, line := range strings.Split(string(unit), "\n") {
		if cred, ok := strings.CutPrefix(line, "LoadCredential="); ok {
			id, path, _ := strings.Cut(cred, ":")
			data, err := os.ReadFile(filepath.Join(root, path))
			if err != nil {
				t.Errorf("LoadCredential=%s: not installed: %v", cred, err)
				continue
			}
			os.WriteFile(filepath.Join(creds, id), data, 0o400)
		}
		if docs, ok := strings.CutPrefix(line, "Documentation="); ok {
			for _, d := range strings.Fields(docs) {
				path, ok := strings.CutPrefix(d, "file://")
				if !ok {
					t.Errorf("Documentation=%s is not a file installed here", d)
					continue
				}
				if _, err := os.Stat(filepath.Join(root, path)); err != nil {
					t.Errorf("Documentation=%s: not installed: %v", d, err)
				}
			}
		}
		if cmd, ok := strings.CutPrefix(line, "ExecStart="); ok {
			exec0 = cmd
		}
	}
	// Every absolute path on the command line is installed, except the
	// log, which systemd's LogsDirectory= makes.
	args := regexp.MustCompile(`"[^"]*"|\S+`).FindAllString(exec0, -1)
	for i, a := range args {
		a = strings.ReplaceAll(strings.Trim(a, `"`), "${CREDENTIALS_DIRECTORY}", creds)
		args[i] = a
		if strings.HasPrefix(a, "/") && !strings.HasPrefix(a, "/var/log/wormsink/") && !strings.HasPrefix(a, creds) {
			if _, err := os.Stat(filepath.Join(root, a)); err != nil {
				t.Errorf("ExecStart names %s, which make install does not install", a)
			}
			args[i] = filepath.Join(root, a)
		}
		if strings.HasPrefix(a, "/var/log/wormsink/") {
			args[i] = filepath.Join(t.TempDir(), filepath.Base(a))
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	p := &serveProc{dns: freePort(t), tftp: freePort(t), metrics: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	args = append(args, "--dns-listen", fmt.Sprintf("127.0.0.1:%d", p.dns), "--tftp-listen", fmt.Sprintf("127.0.0.1:%d", p.tftp),
		"--metrics-listen", p.metrics, "--sinkhole-ip", "127.0.0.1")
	cmd := exec.Command(args[0], args[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() { cmd.Process.Kill(); <-done }()
	waitFor(t, "the installed service to serve", 30*1e9, func() bool {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("the installed service did not start: %v\n%s", err, stderr.String())
		default:
		}
		if st, _ := p.digQuiet("windowsupdate.com"); st == "NXDOMAIN" {
			return true
		}
		return false
	})
}

// digQuiet asks the shim once and returns the status, or "" when it does
// not answer (yet).
func (p *serveProc) digQuiet(name string) (string, error) {
	out, err := exec.Command("dig", "-p", fmt.Sprint(p.dns), "@127.0.0.1", "+time=1", "+tries=1", name, "A").CombinedOutput()
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`status: (\w+)`).FindSubmatch(out)
	if m == nil {
		return "", nil
	}
	return string(m[1]), nil
}

// stageInstall runs `make install` into a directory of the test's own.
func stageInstall(t *testing.T) (root string) {
	t.Helper()
	needTool(t, "make")
	root = t.TempDir()
	bin := filepath.Join(t.TempDir(), "wormsink")
	out, err := exec.Command("make", "-s", "-C", "../..", "install", "DESTDIR="+root, "BIN="+bin).CombinedOutput()
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	return root
}

// What an installed service needs besides the binary: the configuration
// only root reads (it may hold secrets); /run/wormsink for the dnstap
// socket under ProtectSystem=strict; the signature file and resolver
// snippets the configuration points at; a version that names the build.
func TestDeployInstallFiles(t *testing.T) {
	root := stageInstall(t)
	st, err := os.Stat(filepath.Join(root, "etc/wormsink/wormsink.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if m := st.Mode().Perm(); m != 0o640 {
		t.Errorf("/etc/wormsink/wormsink.yaml installed %04o, want 0640", m)
	}
	unit, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/wormsink.service"))
	if err != nil {
		t.Fatal(err)
	}
	directives := map[string][]string{}
	for _, l := range strings.Split(string(unit), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			directives[k] = append(directives[k], v)
		}
	}
	if !slices.Contains(directives["RuntimeDirectory"], "wormsink") || !slices.Contains(directives["ProtectSystem"], "strict") {
		t.Errorf("unit: RuntimeDirectory %q, ProtectSystem %q: want wormsink under strict, for /run/wormsink/dnstap.sock", directives["RuntimeDirectory"], directives["ProtectSystem"])
	}
	if strings.Contains(strings.Join(directives["ExecStart"], " "), "--rpz-tsig ") {
		t.Error("the unit puts the TSIG secret on the command line")
	}
	// systemd itself reads the unit: no unknown or malformed directive.
	// (The programs it names are under the staging root, not installed.)
	verify, _ := exec.Command(needTool(t, "systemd-analyze"), "verify", filepath.Join(root, "etc/systemd/system/wormsink.service")).CombinedOutput()
	for _, l := range strings.Split(strings.TrimSpace(string(verify)), "\n") {
		if l != "" && !strings.Contains(l, "is not executable") {
			t.Errorf("systemd-analyze verify: %s", l)
		}
	}

	// Every file the installed configurations and snippets name is
	// installed, except what the operator makes (TSIG and feed keys), what systemd
	// makes (/run, credentials) and the resolvers' own files.
	paths := regexp.MustCompile(`(/(?:etc/wormsink|usr/share/doc/wormsink|usr/local)/[A-Za-z0-9._/-]*[A-Za-z0-9])`)
	var named []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(p, filepath.Join(root, "etc/wormsink")) && !strings.Contains(p, "usr/share/doc/wormsink/resolvers") &&
			!strings.HasSuffix(p, ".service") && !strings.HasSuffix(p, "wormsink-resolvers.yaml") {
			return nil
		}
		data, _ := os.ReadFile(p)
		for _, m := range paths.FindAllString(string(data), -1) {
			if strings.HasSuffix(m, ".key") || strings.HasSuffix(m, ".pub") { // keys the operator makes
				continue
			}
			named = append(named, m)
			if _, err := os.Stat(filepath.Join(root, m)); err != nil {
				t.Errorf("%s names %s, which make install does not install", strings.TrimPrefix(p, root), m)
			}
		}
		return nil
	})
	for _, want := range []string{"/etc/wormsink/signatures.yaml", "/usr/share/doc/wormsink/wormsink-resolvers.yaml", "/usr/share/doc/wormsink/resolvers"} {
		if !slices.ContainsFunc(named, func(s string) bool { return strings.HasPrefix(s, want) }) {
			t.Errorf("no installed configuration points at %s", want)
		}
	}
	for _, f := range []string{"resolvers/unbound.conf", "resolvers/named.conf", "signatures/default.yaml"} {
		if _, err := os.Stat(filepath.Join(root, "usr/share/doc/wormsink", f)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	sigs, err := exec.Command(filepath.Join(root, "usr/local/bin/wormsink"), "sigs", "check", filepath.Join(root, "etc/wormsink/signatures.yaml")).CombinedOutput()
	if err != nil {
		t.Errorf("the installed signature file: %v\n%s", err, sigs)
	}

	// The installed binary names the commit it was built from.
	git := needTool(t, "git")
	head, err := exec.Command(git, "-C", "../..", "rev-parse", "--short=7", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(root, "usr/local/bin/wormsink"), "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if v := string(out); strings.HasPrefix(v, "wormsink dev ") || !strings.Contains(v, strings.TrimSpace(string(head))) {
		t.Errorf("installed binary: %q; want the commit %s", strings.TrimSpace(v), strings.TrimSpace(string(head)))
	}
}

// Without a stamp at link time the version comes from what Go recorded.
func TestVersionString(t *testing.T) {
	vcs := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-12-06T20:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	for _, tc := range []struct {
		stamped string
		bi      *debug.BuildInfo
		want    string
	}{
		{"v1.2.3-4-gabc", vcs, "v1.2.3-4-gabc"},
		{"dev", vcs, "dev-0123456789ab-dirty 2026-12-06T20:00:00Z"},
		{"dev", &debug.BuildInfo{Main: debug.Module{Version: "v0.9.0"}}, "v0.9.0"},
		{"dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
		{"dev", nil, "dev"},
	} {
		if got := versionString(tc.stamped, tc.bi); got != tc.want {
			t.Errorf("versionString(%q, …) = %q, want %q", tc.stamped, got, tc.want)
		}
	}
}
