package yamlline

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestLocate(t *testing.T) {
	tests := []struct {
		name string
		text string
		line int
	}{
		{"bad indent in a mapping", "serial: 1\nsignatures:\n  - id: blaster\n    family: Blaster\n    tftp_files: [msblast.exe]\n   domains: [a.example]\n", 6},
		{"bad indent in a list", "serial: 1\nsignatures:\n  - id: blaster\n    family: Blaster\n    domains:\n      - a.example\n     - b.example\n", 7},
		{"key under a scalar", "dns-listen: 127.0.0.1:53\nallow:\n  10.0.0.0/8\n   ttl: 30s\n", 4},
		{"list item dedented", "dns-listen: 127.0.0.1:53\nupstream:\n  - 192.0.2.1\n - 192.0.2.2\nttl: 30s\n", 4},
		{"unclosed flow list", "a: 1\nttl: [1\n", 2},
		{"tab indent", "a:\n  b: 1\n\tc: 2\n", 3},
		{"deep in a long list", "serial: 1\nsignatures:\n  - id: x\n    family: X\n    domains:\n" + strings.Repeat("      - a.example\n", 5000) + "     - b.example\n", 6 + 5000},
	}
	for _, tc := range tests {
		var n yaml.Node
		err := yaml.Unmarshal([]byte(tc.text), &n)
		if err == nil {
			t.Fatalf("%s: no YAML error", tc.name)
		}
		line, msg := Locate([]byte(tc.text), err)
		if line != tc.line || msg == "" || strings.HasPrefix(msg, "yaml:") || strings.HasPrefix(msg, "line ") {
			t.Errorf("%s: line %d, %q (library: %v); want line %d", tc.name, line, msg, err, tc.line)
		}
	}
}

func TestLocateWithoutLine(t *testing.T) {
	line, msg := Locate([]byte("x"), errString("yaml: something odd"))
	if line != 0 || msg != "something odd" {
		t.Errorf("got %d %q", line, msg)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// FuzzLocate: any text, any error from the library: no panic, a line
// within the text.
func FuzzLocate(f *testing.F) {
	f.Add("a:\n  b: 1\n c: 2\n")
	f.Add("- [a,\n")
	f.Add("a: 'x\n")
	f.Fuzz(func(t *testing.T, text string) {
		var n yaml.Node
		err := yaml.Unmarshal([]byte(text), &n)
		if err == nil {
			return
		}
		line, _ := Locate([]byte(text), err)
		if line < 0 || line > strings.Count(text, "\n")+1 {
			t.Fatalf("line %d of a %d-line text (%v)", line, strings.Count(text, "\n")+1, err)
		}
	})
}
