package signatures

import (
	"errors"
	"strings"
	"testing"
)

// TestSingleStringListEntryChecked: a list field written as one YAML
// string is held to the rules of a list entry: it used to skip the
// control-character check (a line break there would become an injected
// record in the exports).
func TestSingleStringListEntryChecked(t *testing.T) {
	for _, field := range []string{"tftp_files", "aliases", "references"} {
		for _, v := range []string{`"a\nb.exe"`, `"a\x01b"`, `"a\x7fb"`} {
			src := "serial: 1\nsignatures:\n  - id: x\n    family: X\n    tftp_files: [x.exe]\n"
			if field == "tftp_files" {
				src = "serial: 1\nsignatures:\n  - id: x\n    family: X\n"
			}
			src += "    " + field + ": " + v + "\n"
			_, err := Parse("f.yaml", []byte(src))
			var se *Error
			if err == nil || !errors.As(err, &se) || se.Line != 5 && se.Line != 6 || !strings.Contains(err.Error(), "control character") {
				t.Errorf("%s: %s: %v, want a control-character error at its line", field, v, err)
			}
		}
		// The list form says the same.
		src := "serial: 1\nsignatures:\n  - id: x\n    family: X\n    " + field + ": [\"a\\x01b\"]\n"
		if field != "tftp_files" {
			src += "    tftp_files: [x.exe]\n"
		}
		if _, err := Parse("f.yaml", []byte(src)); err == nil || !strings.Contains(err.Error(), "control character") {
			t.Errorf("%s as a list: %v", field, err)
		}
	}
	if set, err := Parse("f.yaml", []byte("serial: 1\nsignatures:\n  - id: x\n    family: X\n    tftp_files: x.exe\n")); err != nil || set.Stats().Signatures != 1 {
		t.Errorf("a plain single string: %v", err)
	}
}

// TestErrorsCutLongValues: an error quotes at most MaxShown bytes of a
// value from the file, with the value's length; it used to echo a 30 MB
// value whole.
func TestErrorsCutLongValues(t *testing.T) {
	huge := strings.Repeat("A", 30<<20)
	big := huge[:1<<20]
	for _, src := range []string{
		"serial: 1\nsignatures:\n  - id: " + huge + "\n    family: X\n    tftp_files: [x.exe]\n",
		"serial: 1\nsignatures:\n  - id: x\n    family: X\n    domains: [\"" + big + "\"]\n",
		"serial: 1\nsignatures:\n  - id: x\n    family: X\n    tftp_files: [\"a/" + big + "\"]\n",
		"serial: 1\nsignatures:\n  - id: x\n    family: X\n    " + strings.ToLower(huge[:1000]) + ": 1\n",
		"serial: 1\nsignatures:\n  - id: x\n    family: X\n    payloads: [{proto: udp, contains: \"|" + strings.Repeat("4", 1<<20) + "zz|\"}]\n",
	} {
		_, err := Parse("big.yaml", []byte(src))
		if err == nil {
			t.Fatal("no error")
		}
		msg := err.Error()
		if len(msg) > maxErrorMsg+100 || !strings.HasPrefix(msg, "big.yaml:") {
			t.Errorf("error of %d bytes: %.300s", len(msg), msg)
		}
		if len(msg) < 200 && !strings.Contains(msg, " bytes)") {
			t.Errorf("error %q does not give the value's length", msg)
		}
	}
	if got := (&Error{File: "f", Line: 3, Msg: strings.Repeat("é", 1000)}).Error(); len(got) > maxErrorMsg+60 || !strings.Contains(got, "message cut, 2000 bytes") {
		t.Errorf("long message: %d bytes: %.100s", len(got), got)
	}
}
