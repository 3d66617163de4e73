package ship

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"wormsink/desk"
	"wormsink/internal/testutil"
	"wormsink/quarantine"
	"wormsink/store"
	"wormsink/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// runningDesk is one desk process's worth: its own database handle and
// server on a fixed address, so it can be restarted where shippers send.
type runningDesk struct {
	cancel context.CancelFunc
	done   chan struct{}
	db     *store.DB
}

func startDesk(t *testing.T, url, addr string) *runningDesk {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	st, err := desk.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := quarantine.New(ctx, quarantine.Config{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	var srv *desk.Server
	testutil.WaitFor(t, 10*time.Second, "the desk's port to be free again", func() bool {
		srv, err = desk.New(desk.Config{Store: st, Quarantine: eng, Addr: addr})
		return err == nil
	})
	d := &runningDesk{cancel: cancel, done: make(chan struct{}), db: db}
	go func() { srv.Serve(ctx); close(d.done) }()
	return d
}

func (d *runningDesk) stop() {
	d.cancel()
	<-d.done
	d.db.Close()
}

// sensorLog writes evidence lines, each unique, rotating the log (rename
// to .1, new file) every rotateEvery lines when it is not 0.
type sensorLog struct {
	path        string
	name        string
	rotateEvery int
}

func (s sensorLog) write(t *testing.T, from, n int, pause func(i int)) {
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Error(err)
		return
	}
	defer func() { f.Close() }()
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := from; i < from+n; i++ {
		if s.rotateEvery > 0 && i > from && i%s.rotateEvery == 0 {
			f.Close()
			os.Rename(s.path, s.path+".1")
			if f, err = os.OpenFile(s.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
				t.Error(err)
				return
			}
		}
		host := fmt.Sprintf("10.%d.%d.%d", len(s.name), i/250%250, i%250+1)
		fmt.Fprintf(f, `{"time":%q,"event":"dns_sinkhole","host":%q,"port":%d,"signature":"blaster-dns","family":"blaster","evidence":"strong","proof":"tcp","count":1,"sensor":%q}`+"\n",
			base.Add(time.Duration(i)*time.Second).Format("2006-01-02T15:04:05.000Z"), host, 1024+i, s.name)
		if pause != nil {
			pause(i)
		}
	}
}

func countLines(t *testing.T, url string) (total, distinct int) {
	t.Helper()
	db := storetest.Open(t, url)
	if err := db.QueryRow(context.Background(), "SELECT COUNT(*), COUNT(DISTINCT line) FROM desk_evidence").Scan(&total, &distinct); err != nil {
		return -1, -1
	}
	db.Close()
	return total, distinct
}

// TestTwoSensorsShipEveryLineOnceThroughRestarts: two sensors write and
// rotate their logs while the desk is restarted twice and PostgreSQL once;
// every line reaches the desk exactly once.
func TestTwoSensorsShipEveryLineOnceThroughRestarts(t *testing.T) {
	pg := storetest.Cluster(t)
	url, err := pg.NewDatabase()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	d := startDesk(t, url, addr)
	ctx := context.Background()
	{
		db := storetest.Open(t, url)
		st, _ := desk.Open(ctx, db)
		for _, name := range []string{"sensor-a", "sensor-bb"} {
			tok, err := st.AddToken(ctx, name, desk.RoleSensor)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(t.TempDir(), name), []byte(tok), 0o600)
			t.Setenv("TOKEN_"+name, tok)
		}
	}
	dir := t.TempDir()
	sensors := []sensorLog{
		{path: filepath.Join(dir, "a.jsonl"), name: "sensor-a", rotateEvery: 700},
		{path: filepath.Join(dir, "b.jsonl"), name: "sensor-bb"},
	}
	const perSensor = 2000
	sctx, stopShip := context.WithCancel(ctx)
	var shipWG sync.WaitGroup
	shippers := make([]*Shipper, len(sensors))
	for i, s := range sensors {
		sh, err := New(Config{To: "http://" + addr, Token: os.Getenv("TOKEN_" + s.name), Logs: []string{s.path},
			State: filepath.Join(dir, s.name+".state"), BatchBytes: 16 << 10, Poll: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		shippers[i] = sh
		shipWG.Add(1)
		go func() { defer shipWG.Done(); sh.Serve(sctx) }()
	}
	// Writers take a breath every 50 lines so that shipping, rotation and
	// the restarts interleave.
	var writeWG sync.WaitGroup
	progress := make([]chan int, len(sensors))
	for i, s := range sensors {
		progress[i] = make(chan int, perSensor)
		writeWG.Add(1)
		go func() {
			defer writeWG.Done()
			s.write(t, 0, perSensor, func(n int) {
				progress[i] <- n
				if n%50 == 0 {
					time.Sleep(5 * time.Millisecond)
				}
			})
		}()
	}
	waitWritten := func(n int) {
		for i := range sensors {
			for v := range progress[i] {
				if v >= n {
					break
				}
			}
		}
	}
	waitWritten(400)
	d.stop()                             // the desk goes away ...
	if err := pg.Restart(); err != nil { // ... and PostgreSQL restarts meanwhile
		t.Fatal(err)
	}
	waitWritten(900)
	d = startDesk(t, url, addr)
	waitWritten(1400)
	d.stop()
	d = startDesk(t, url, addr)
	writeWG.Wait()
	want := 2 * perSensor
	deadline := time.Now().Add(120 * time.Second)
	for total, _ := countLines(t, url); total < want; total, _ = countLines(t, url) {
		if time.Now().After(deadline) {
			db := storetest.Open(t, url)
			rows, _ := db.Query(ctx, "SELECT sensor, log, COUNT(*), MAX(off) FROM desk_evidence GROUP BY sensor, log")
			for rows.Next() {
				var s, l string
				var n, off int64
				rows.Scan(&s, &l, &n, &off)
				t.Logf("%s %s: %d lines up to %d", s, l, n, off)
			}
			rows.Close()
			for _, sh := range shippers {
				t.Logf("shipper %+v state %+v", sh.Stats(), sh.state)
			}
			t.Fatalf("waited for every line at the desk: %d of %d", total, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	total, distinct := countLines(t, url)
	if total != want || distinct != want {
		t.Fatalf("desk holds %d lines (%d distinct), want %d exactly once", total, distinct, want)
	}
	stopShip()
	shipWG.Wait()
	d.stop()
	var failures uint64
	for _, sh := range shippers {
		failures += sh.Stats().Failures
	}
	if failures == 0 {
		t.Error("no batch ever failed: the restarts did not test anything")
	}
	t.Logf("%d lines exactly once; %d batches were sent again", total, failures)
}

// TestShipperResumesAcrossARotationWhileAway: a log rotated while the
// shipper was stopped is finished from its old file before the new one.
func TestShipperResumesAcrossARotationWhileAway(t *testing.T) {
	url := "sqlite:" + filepath.Join(t.TempDir(), "desk.db")
	addr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	d := startDesk(t, url, addr)
	defer d.stop()
	ctx := context.Background()
	st, _ := desk.Open(ctx, d.db)
	tok, err := st.AddToken(ctx, "s1", desk.RoleSensor)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := sensorLog{path: filepath.Join(dir, "ev.jsonl"), name: "s1"}
	cfg := Config{To: "http://" + addr, Token: tok, Logs: []string{s.path}, State: filepath.Join(dir, "state"), Poll: 20 * time.Millisecond}
	run := func(until int) {
		sh, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { sh.Serve(c); close(done) }()
		testutil.WaitFor(t, 30*time.Second, "lines at the desk", func() bool {
			total, _ := countLines(t, url)
			return total >= until
		})
		cancel()
		<-done
	}
	s.write(t, 0, 100, nil)
	run(100)
	s.write(t, 100, 50, nil) // written while the shipper is away ...
	os.Rename(s.path, s.path+".1")
	s.write(t, 150, 50, nil) // ... and after the rotation
	run(200)
	if total, distinct := countLines(t, url); total != 200 || distinct != 200 {
		t.Fatalf("%d lines (%d distinct), want 200", total, distinct)
	}
}
