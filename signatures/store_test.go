package signatures

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func sigFile(serial int, name string) []byte {
	return fmt.Appendf(nil, "serial: %d\nsignatures:\n  - id: s\n    family: S\n    domains: [%s]\n", serial, name)
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	// Replace by rename, as operators and config managers do.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestStoreReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sigs.yaml")
	writeFile(t, path, sigFile(10, "a.example"))
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	has := func(name string) bool { _, ok := st.Current().MatchName(name); return ok }
	if !has("a.example") {
		t.Fatal("a.example not served")
	}
	if _, err := st.Reload(); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("reload of the same file: %v, want ErrUnchanged", err)
	}

	writeFile(t, path, sigFile(11, "b.example"))
	r, err := st.Reload()
	if err != nil || r.OldSerial != 10 || r.NewSerial != 11 || !has("b.example") || has("a.example") {
		t.Fatalf("reload to 11: %+v %v", r, err)
	}

	// A broken file keeps the set in service and says where it broke.
	writeFile(t, path, []byte("serial: 12\nsignatures:\n  - id: s\n    family: S\n    domains: [bad..name]\n"))
	r, err = st.Reload()
	var se *Error
	if !errors.As(err, &se) || se.Line != 5 || st.Current().Serial() != 11 || !has("b.example") {
		t.Fatalf("broken reload: %+v %v, serving %d", r, err, st.Current().Serial())
	}

	// A lower serial never replaces a higher one; an equal one does.
	writeFile(t, path, sigFile(9, "c.example"))
	if _, err := st.Reload(); !errors.Is(err, ErrSerialDecreased) || !has("b.example") || has("c.example") {
		t.Fatalf("lower serial: %v", err)
	}
	writeFile(t, path, sigFile(11, "d.example"))
	if _, err := st.Reload(); err != nil || !has("d.example") {
		t.Fatalf("equal serial: %v", err)
	}

	// A missing file keeps the set too.
	os.Remove(path)
	if _, err := st.Reload(); !errors.Is(err, os.ErrNotExist) || !has("d.example") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestStoreWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sigs.yaml")
	writeFile(t, path, sigFile(1, "a.example"))
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		r   Reload
		err error
	}
	got := make(chan result, 10)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		st.Watch(ctx, 10*time.Millisecond, func(r Reload, err error) { got <- result{r, err} })
	}()
	defer func() { cancel(); wg.Wait() }()

	writeFile(t, path, sigFile(2, "b.example"))
	select {
	case res := <-got:
		if res.err != nil || res.r.NewSerial != 2 {
			t.Fatalf("watch reload: %+v", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not notice the new file")
	}
	if _, ok := st.Current().MatchName("b.example"); !ok {
		t.Fatal("b.example not served after watch reload")
	}

	writeFile(t, path, []byte("serial: 3\nsignatures: nope\n"))
	select {
	case res := <-got:
		if res.err == nil || st.Current().Serial() != 2 {
			t.Fatalf("broken file taken: %+v", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not report the broken file")
	}
}

// Readers on other goroutines always see a whole set while reloads run.
func TestStoreConcurrentReaders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sigs.yaml")
	writeFile(t, path, sigFile(1, "x.example"))
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, ok := st.Current().MatchName("x.example"); !ok {
					t.Error("x.example missing during reload")
					return
				}
			}
		}()
	}
	for i := 2; i < 50; i++ {
		writeFile(t, path, sigFile(i, "x.example"))
		if _, err := st.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	if st.Current().Serial() != 49 {
		t.Fatalf("serial %d", st.Current().Serial())
	}
}

func TestOpenBuiltin(t *testing.T) {
	st, err := Open("")
	if err != nil || st.Current().Serial() != Default().Serial() {
		t.Fatalf("Open(\"\"): %v", err)
	}
	if _, err := st.Reload(); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("reload of the built-in set: %v", err)
	}
}

// An unreadable file is reported once, not on every poll.
func TestStoreWatchUnreadableOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sigs")
	writeFile(t, path, sigFile(1, "a.example"))
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	if err := os.Mkdir(path, 0o755); err != nil { // now a directory: stat works, reading fails
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	reports := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.Watch(ctx, 5*time.Millisecond, func(Reload, error) { mu.Lock(); reports++; mu.Unlock() })
	}()
	waitReports := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := reports
		mu.Unlock()
		if n > 0 || time.Now().After(waitReports) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Forty more polls: none may report again.
	time.Sleep(200 * time.Millisecond)
	cancel()
	<-done
	if reports != 1 {
		t.Fatalf("%d reports for one unreadable file, want 1", reports)
	}
	if _, ok := st.Current().MatchName("a.example"); !ok {
		t.Fatal("set in service lost")
	}
}

// TestStoreSubscribe: subscribers hear of a swapped-in set, not of failed
// or unchanged reloads, and stop hearing after cancel.
func TestStoreSubscribe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sigs.yaml")
	writeFile(t, path, sigFile(10, "a.example"))
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ch, cancel := st.Subscribe()
	pending := func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	if _, err := st.Reload(); !errors.Is(err, ErrUnchanged) || pending() {
		t.Fatalf("unchanged reload announced (err %v)", err)
	}
	writeFile(t, path, sigFile(9, "b.example"))
	if _, err := st.Reload(); err == nil || pending() {
		t.Fatalf("refused reload announced (err %v)", err)
	}
	writeFile(t, path, sigFile(11, "c.example"))
	if _, err := st.Reload(); err != nil || !pending() {
		t.Fatalf("reload to 11 not announced (err %v)", err)
	}
	// Two reloads before the reader looks are one value: it reads Current.
	writeFile(t, path, sigFile(12, "d.example"))
	st.Reload()
	writeFile(t, path, sigFile(13, "e.example"))
	st.Reload()
	if !pending() || pending() || st.Current().Serial() != 13 {
		t.Fatal("burst of reloads not coalesced into one value")
	}
	cancel()
	writeFile(t, path, sigFile(14, "f.example"))
	st.Reload()
	if pending() {
		t.Fatal("announced after cancel")
	}
}
