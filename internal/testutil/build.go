package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Binary is a command of this module built once per test binary, for the
// tests that run it as a process of its own (its own file descriptors,
// memory, signals). A test package keeps one in a package variable and
// calls Remove from TestMain.
type Binary struct {
	Pkg string // the import path, e.g. wormsink/cmd/wormsink

	once sync.Once
	path string
	err  error
}

// Path builds the command on first use and returns the binary's path.
func (b *Binary) Path(t testing.TB) string {
	t.Helper()
	b.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		}
		dir, err := os.MkdirTemp("", "wormsink-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, filepath.Base(b.Pkg))
		if out, err := exec.Command(goBin, "build", "-o", b.path, b.Pkg).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", b.Pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// Remove deletes the built binary (TestMain calls it after m.Run).
func (b *Binary) Remove() {
	if b.path != "" {
		os.RemoveAll(filepath.Dir(b.path))
	}
}

// Main runs a package's tests (from its TestMain), then removes the
// binaries they built.
func Main(m *testing.M, built ...*Binary) {
	code := m.Run()
	for _, b := range built {
		b.Remove()
	}
	os.Exit(code)
}
