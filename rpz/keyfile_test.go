package rpz

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func writeKey(t *testing.T, text string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "xfr.key")
	if err := os.WriteFile(p, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadKeyFile(t *testing.T) {
	clause := "key \"xfr-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"" + testSecret + "\";\n};\n"
	for _, tc := range []struct {
		name, text string
		mode       os.FileMode
		want       string // error substring; "" means accepted
	}{
		{"line", "xfr-key:hmac-sha256:" + testSecret + "\n", 0o600, ""},
		{"line with comments", "# the transfer key\n\nxfr-key:hmac-sha256:" + testSecret + "\n", 0o640, ""},
		{"key clause", "// made by tsig-keygen\n" + clause, 0o400, ""},
		{"one-line clause", `key xfr-key { algorithm "hmac-sha256"; secret "` + testSecret + `"; };`, 0o600, ""},
		{"world readable", "xfr-key:hmac-sha256:" + testSecret, 0o644, "readable by every user"},
		{"empty", "# nothing\n", 0o600, "no key in it"},
		{"two lines", "xfr-key:hmac-sha256:" + testSecret + "\nother:hmac-sha256:" + testSecret + "\n", 0o600, ":2: more than one line"},
		{"weak algorithm", strings.Replace(clause, "hmac-sha256", "hmac-md5", 1), 0o600, ":1: algorithm"},
		{"two clauses", clause + clause, 0o600, "2 key clauses"},
		{"no secret", "key \"k\" { algorithm hmac-sha256; };", 0o600, "without algorithm"},
		{"bad base64", "k:hmac-sha256:!!!!", 0o600, ":1: secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeKey(t, tc.text, tc.mode)
			k, err := ReadKeyFile(p)
			if tc.want == "" {
				if err != nil || k.Name != "xfr-key." || k.Algorithm != "hmac-sha256." || len(k.Secret) < 16 {
					t.Fatalf("%+v, %v", k, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), p) {
				t.Fatalf("error %v; want one starting with the file and containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Fatalf("error shows the secret: %v", err)
			}
		})
	}
}

// What tsig-keygen (BIND's tool) prints is read as it is.
func TestReadKeyFileFromTSIGKeygen(t *testing.T) {
	path, err := exec.LookPath("tsig-keygen")
	if err != nil {
		if path, err = exec.LookPath("/usr/sbin/tsig-keygen"); err != nil {
			t.Fatalf("tsig-keygen is not installed: run `make deps` (%v)", err)
		}
	}
	out, err := exec.Command(path, "-a", "hmac-sha256", "xfr-key").Output()
	if err != nil {
		t.Fatal(err)
	}
	k, err := ReadKeyFile(writeKey(t, string(out), 0o600))
	if err != nil || k.Name != "xfr-key." || len(k.Secret) < 16 {
		t.Fatalf("%+v, %v\n%s", k, err, out)
	}
}

// FuzzParseKeyFile: no panic, and an accepted file gives a usable key.
func FuzzParseKeyFile(f *testing.F) {
	f.Add([]byte("xfr-key:hmac-sha256:" + testSecret))
	f.Add([]byte("key \"xfr-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"" + testSecret + "\";\n};\n"))
	f.Add([]byte("# c\n// d\nkey k {"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, line, err := parseKeyFile(data)
		if err != nil {
			if line < 0 || line > strings.Count(string(data), "\n")+1 {
				t.Fatalf("line %d out of the file", line)
			}
			return
		}
		if _, ok := strongAlgorithms[k.Algorithm]; !ok || len(k.Secret) < 16 || k.Name == "" {
			t.Fatalf("accepted %+v", k)
		}
	})
}
