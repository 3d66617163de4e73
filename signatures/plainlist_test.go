package signatures

import (
	"bytes"
	"reflect"
	"testing"
)

// decodeSlow decodes without the plain-list shortcut.
func decodeSlow(name string, data []byte) (*File, error) {
	d := decoder{name: name, open: bytesSource(data)}
	return d.decode(bytes.NewReader(data))
}

// sameDecode checks that the shortcut changes nothing: the same file, or
// the same error.
func sameDecode(t *testing.T, data []byte) {
	t.Helper()
	fast, ferr := Decode("f.yaml", data)
	slow, serr := decodeSlow("f.yaml", data)
	if (ferr == nil) != (serr == nil) || ferr != nil && ferr.Error() != serr.Error() {
		t.Fatalf("errors differ:\nfast %v\nslow %v\n%s", ferr, serr, data)
	}
	if ferr != nil {
		return
	}
	fast.namesPacked, slow.namesPacked = false, false
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("files differ:\nfast %+v\nslow %+v\n%s", fast.Signatures, slow.Signatures, data)
	}
}

func TestPlainListShortcut(t *testing.T) {
	for _, doc := range []string{
		string(DefaultYAML()),
		"serial: 1\nsignatures:\n  - id: a\n    family: A\n    domains:\n      - a.example\n      - B.Example. # comment\n\n      - name: c.example\n        action: nodata\n      - d.example\n    tftp_files: [x.exe]\n",
		"serial: 1\nsignatures:\n  - id: a\n    family: A\n    domains:\n    - same.indent\n    - also.same\n  - id: b\n    family: B\n    domains:\n      - b.example\n",
		// A multi-line plain scalar: the continuation joins the entry.
		"serial: 1\nsignatures:\n  - id: a\n    family: A\n    domains:\n      - a.example\n        b\n",
		// Entries YAML reads as other things.
		"serial: 1\nsignatures:\n  - id: a\n    family: A\n    domains:\n      - null\n",
		"serial: 1\nsignatures:\n  - id: a\n    family: A\n    domains:\n      - *alias\n",
		"serial: 1\nsignatures:\n  - id: a\n    family: A\n    domains:\n      - 'quoted.example'\n      - plain.example#glued\n",
		// Invalid names stay for YAML to report with their line.
		"serial: 1\nsignatures:\n  - id: a\n    family: A\n    domains:\n      - ok.example\n      - bad..example\n",
		// "domains:" inside a block scalar is not a key.
		"serial: 1\nsignatures:\n  - id: a\n    family: |\n      domains:\n      - x.example\n    tftp_files: [a.exe]\n",
		// Inside a quoted string spanning lines.
		"serial: 1\nsignatures:\n  - id: a\n    family: \"A\n    domains:\n      - x.example\"\n    tftp_files: [a.exe]\n",
		"serial: 1\r\nsignatures:\r\n  - id: a\r\n    family: A\r\n    domains:\r\n      - crlf.example\r\n",
		"serial: 1\nsignatures:\n  - id: a\n    family: A\n    domains:\n      - dup.example\n      - DUP.example\n",
		"serial: 1\nsignatures:\n  - id: a\n    family: A\n    domains:   # trailing comment\n      - x.example\n    domains:\n      - y.example\n",
	} {
		sameDecode(t, []byte(doc))
	}
	f, err := Decode("big", bigFile(5000))
	if err != nil || !f.namesPacked || len(f.Signatures[0].Domains) != 5000 {
		t.Fatalf("big plain list not taken by the shortcut: %v", err)
	}
}
