package wire

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestDepsLeaf: the packet matcher parses TFTP with the small codec in
// internal/tftp; it pulls in neither the fake server (sinkhole) nor the
// TFTP library behind it, so a capture-only build stays small.
func TestDepsLeaf(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goBin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	found := false
	for _, d := range deps {
		switch {
		case d == "wormsink/sinkhole", strings.HasPrefix(d, "github.com/pin/tftp"):
			t.Errorf("wire depends on %s", d)
		case d == "wormsink/internal/tftp":
			found = true
		}
	}
	if !found {
		t.Errorf("wire does not use wormsink/internal/tftp; deps: %v", deps)
	}
}
