package attribution

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"wormsink/internal/testutil"
)

// TestFollowRotation: lines written before and after a rename rotation
// (logrotate's create), a copytruncate and a partial last line all arrive,
// each once.
func TestFollowRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nat.log")
	var mu sync.Mutex
	var got []string
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Follow(ctx, path, 10*time.Millisecond, func(line []byte, n int) {
			mu.Lock()
			got = append(got, string(line))
			mu.Unlock()
		})
	}()
	defer func() { cancel(); <-done }()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	appendTo := func(p, s string) {
		f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(s)
		f.Close()
	}
	// The file does not exist yet: it is picked up when it appears.
	appendTo(path, "a1\na2\npart")
	testutil.WaitFor(t, 10*time.Second, "two lines", func() bool { return count() == 2 })
	appendTo(path, "ial\n")
	testutil.WaitFor(t, 10*time.Second, "the partial line completed", func() bool { return count() == 3 })
	// Rename rotation: a line written to the old file just before the
	// move is still read, then the new file from its start.
	appendTo(path, "a4\n")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendTo(path+".1", "a5\n")
	appendTo(path, "b1 a line longer than what follows the truncation\n")
	testutil.WaitFor(t, 10*time.Second, "the new file's line", func() bool { return count() == 6 })
	// copytruncate: the file starts over. (A truncated file that has grown
	// past the old end before it is looked at cannot be told from one that
	// grew: that is copytruncate's own race, which renaming avoids.)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendTo(path, "c1\n")
	testutil.WaitFor(t, 10*time.Second, "the line after the truncation", func() bool { return count() == 7 })
	mu.Lock()
	defer mu.Unlock()
	want := []string{"a1", "a2", "partial", "a4", "a5", "b1 a line longer than what follows the truncation", "c1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("lines %q, want %q", got, want)
	}
}
