package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSigsCheckCutsLongValues: sigs check on a file with a 30 MB value
// says what is wrong in one short line (it used to print the value whole).
func TestSigsCheckCutsLongValues(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.yaml")
	src := "serial: 1\nsignatures:\n  - id: " + strings.Repeat("A", 30<<20) + "\n    family: X\n    tftp_files: [x.exe]\n"
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd(t, "", "sigs", "check", p)
	if code != exitFailure || out != "" || len(errs) > 400 || strings.Count(errs, "\n") != 1 ||
		!strings.Contains(errs, p+":3: ") || !strings.Contains(errs, "(31457280 bytes)") {
		t.Errorf("exit %d, %d bytes on stderr: %.400q", code, len(errs), errs)
	}
}
