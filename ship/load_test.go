package ship

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"wormsink/desk"
	"wormsink/internal/testutil"
	"wormsink/store"
	"wormsink/store/storetest"
)

// The load run's size: make perf-desk sets them (20 sensors × 500 lines/s
// for 10 minutes); the defaults are the short run make test does.
var (
	loadSensors  = flag.Int("desk-load.sensors", 4, "sensors (each a log and a wormsink ship process)")
	loadRate     = flag.Int("desk-load.rate", 200, "lines per second each sensor writes")
	loadDuration = flag.Duration("desk-load.duration", 20*time.Second, "how long the sensors write")
)

var wormsinkBin = testutil.Binary{Pkg: "wormsink/cmd/wormsink"}

// deskProc is one `wormsink desk` process.
type deskProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startDeskProc(t *testing.T, dbURL, addr string) *deskProc {
	t.Helper()
	var p *deskProc
	// The port may still be held by the process before it for a moment.
	testutil.WaitFor(t, 30*time.Second, "a desk process serving /healthz", func() bool {
		cmd := exec.Command(wormsinkBin.Path(t), "desk", "--db", dbURL, "--listen", addr)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			select {
			case <-done:
				return false
			default:
			}
			if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					p = &deskProc{cmd: cmd, done: done}
					return true
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		cmd.Process.Kill()
		<-done
		return false
	})
	return p
}

// cpu is the CPU time the process has used so far (from /proc: its own,
// not its children's).
func (p *deskProc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// stop ends the desk with sig and returns the CPU it used.
func (p *deskProc) stop(sig syscall.Signal) time.Duration {
	c := p.cpu()
	p.cmd.Process.Signal(sig)
	<-p.done
	return c
}

// loadSensor writes one sensor's log at a fixed rate, rotating it
// (rename to LOG.1) when told, and remembers when it wrote each line.
type loadSensor struct {
	name    string
	path    string
	written atomic.Int64
	// rotatedAt is the number of the first line written after the last
	// rotation.
	rotatedAt atomic.Int64
	mu        sync.Mutex
	at        []time.Time // when line i was written
}

var seqRe = regexp.MustCompile(`"signature":"load-(\d+)"`)

func (s *loadSensor) line(i int, now time.Time, idx int) []byte {
	// Neighbouring sensors see half of each other's hosts: their batches
	// meet on the same cases.
	h := idx*1000 + i%2000
	return fmt.Appendf(nil, `{"time":%q,"event":"dns_sinkhole","host":"10.%d.%d.%d","port":%d,"signature":"load-%d","family":"blaster","evidence":"strong","proof":"tcp","count":1,"sensor":%q}`+"\n",
		now.UTC().Format("2006-01-02T15:04:05.000Z"), h/62500%250, h/250%250, h%250+1, 1024+i%60000, i, s.name)
}

func (s *loadSensor) write(t *testing.T, idx, rate int, until time.Time, rotate <-chan struct{}) {
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Error(err)
		return
	}
	w := bufio.NewWriterSize(f, 64<<10)
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	n := 0
	for now := start; now.Before(until); now = <-tick.C {
		select {
		case <-rotate:
			w.Flush()
			f.Close()
			if err := os.Rename(s.path, s.path+".1"); err != nil {
				t.Error(err)
				return
			}
			if f, err = os.OpenFile(s.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
				t.Error(err)
				return
			}
			w.Reset(f)
			s.rotatedAt.Store(int64(n))
		default:
		}
		target := int(now.Sub(start).Seconds() * float64(rate))
		s.mu.Lock()
		for ; n < target; n++ {
			w.Write(s.line(n, now, idx))
			s.at = append(s.at, now)
		}
		s.mu.Unlock()
		w.Flush()
		s.written.Store(int64(n))
	}
	f.Close()
}

// next is the number of the line after the newest the desk has stored of
// the sensor; a shipper sends a log's lines in order, a rotated file's
// rest before the new file.
func (s *loadSensor) next(ctx context.Context, db *store.DB) (int, bool) {
	var line string
	err := db.QueryRow(ctx, "SELECT line FROM desk_evidence WHERE sensor = ? ORDER BY id DESC LIMIT 1", s.name).Scan(&line)
	switch {
	case err == nil:
		m := seqRe.FindStringSubmatch(line)
		if m == nil {
			return 0, false
		}
		n, _ := strconv.Atoi(m[1])
		return n + 1, true
	case strings.Contains(err.Error(), "no rows"):
		return 0, true
	}
	return 0, false // the database is restarting
}

// lag is how long ago the oldest line not at the desk yet was written, as
// far as the newest stored line of the sensor tells (0: all there).
func (s *loadSensor) lag(ctx context.Context, db *store.DB, now time.Time) (time.Duration, bool) {
	next, ok := s.next(ctx, db)
	if !ok {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if next >= len(s.at) {
		return 0, true
	}
	return now.Sub(s.at[next]), true
}

// missing names the lines of the sensor the desk does not hold, for a
// failure's message.
func (s *loadSensor) missing(ctx context.Context, t *testing.T, db *store.DB) string {
	rows, err := db.Query(ctx, "SELECT log, off, line FROM desk_evidence WHERE sensor = ?", s.name)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	have := map[int]bool{}
	logs := map[string]int{}
	for rows.Next() {
		var log, line string
		var off int64
		rows.Scan(&log, &off, &line)
		logs[log]++
		if m := seqRe.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			have[n] = true
		}
	}
	var gaps []string
	for i, n := 0, int(s.written.Load()); i < n; i++ {
		if have[i] {
			continue
		}
		j := i
		for j+1 < n && !have[j+1] {
			j++
		}
		gaps = append(gaps, fmt.Sprintf("%d-%d", i, j))
		i = j
	}
	return fmt.Sprintf("%d of %d lines, logs %v, missing %v", len(have), s.written.Load(), logs, gaps)
}

// TestDeskLoad is the load run: sensors write their logs at a fixed rate,
// a `wormsink ship` process each sends them to one `wormsink desk` on
// PostgreSQL; meanwhile the logs rotate twice, the desk is stopped and
// started twice (once SIGTERM, once SIGKILL) and PostgreSQL restarts once.
// Every line must be stored exactly once. It prints lines written and
// stored, duplicates, lost, the shippers' lag and the desk's CPU.
//
// make perf-desk runs it at 20 sensors × 500 lines/s for 10 minutes
// (flags -desk-load.sensors, -desk-load.rate, -desk-load.duration); make
// test at its small defaults.
func TestDeskLoad(t *testing.T) {
	defer wormsinkBin.Remove()
	pg := storetest.Cluster(t)
	url, err := pg.NewDatabase()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	db := storetest.Open(t, url)
	st, err := desk.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	sensors := make([]*loadSensor, *loadSensors)
	for i := range sensors {
		s := &loadSensor{name: fmt.Sprintf("load-sensor-%02d", i), path: filepath.Join(dir, fmt.Sprintf("s%02d.jsonl", i))}
		tok, err := st.AddToken(ctx, s.name, desk.RoleSensor)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.path+".token", []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		sensors[i] = s
	}
	addr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	d := startDeskProc(t, url, addr)
	var deskCPU time.Duration
	defer func() {
		if d != nil {
			d.stop(syscall.SIGKILL)
		}
	}()

	// The shippers: the real command, one process per sensor.
	var ships []*exec.Cmd
	for _, s := range sensors {
		cmd := exec.Command(wormsinkBin.Path(t), "ship", "--to", "http://"+addr, "--token-file", s.path+".token",
			"--state", s.path+".state", s.path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if testing.Verbose() {
			cmd.Stderr = os.Stderr
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ships = append(ships, cmd)
	}
	defer func() {
		for _, c := range ships {
			c.Process.Signal(syscall.SIGTERM)
			c.Wait()
		}
	}()

	dur := *loadDuration
	begin := time.Now()
	until := begin.Add(dur)
	var writers sync.WaitGroup
	rotates := make([]chan struct{}, len(sensors))
	for i, s := range sensors {
		rotates[i] = make(chan struct{}, 2)
		writers.Add(1)
		go func() { defer writers.Done(); s.write(t, i, *loadRate, until, rotates[i]) }()
	}

	// The lag, sampled every second until every line is stored.
	var lagMu sync.Mutex
	var lags []time.Duration
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case now := <-tick.C:
				worst, ok := time.Duration(0), true
				for _, s := range sensors {
					l, good := s.lag(ctx, db, now)
					ok = ok && good
					worst = max(worst, l)
				}
				if ok {
					lagMu.Lock()
					lags = append(lags, worst)
					lagMu.Unlock()
				}
			}
		}
	}()

	// The disruptions, at fixed points of the run.
	at := func(frac float64) { time.Sleep(time.Until(begin.Add(time.Duration(frac * float64(dur))))) }
	rotate := func() {
		for _, r := range rotates {
			r <- struct{}{}
		}
	}
	at(0.2)
	deskCPU += d.stop(syscall.SIGTERM)
	d = startDeskProc(t, url, addr)
	t.Logf("%5.1fs: desk restarted (SIGTERM)", time.Since(begin).Seconds())
	at(0.33)
	rotate()
	at(0.45)
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%5.1fs: PostgreSQL restarted", time.Since(begin).Seconds())
	// A second rotation overwrites LOG.1 (one old file is kept, as
	// logrotate's rotate 1 does): on a machine too loaded to have shipped
	// the first one by now, wait for it, or the test would lose lines
	// itself.
	firstRotation := make([]int, len(sensors))
	for i, s := range sensors {
		firstRotation[i] = int(s.rotatedAt.Load())
	}
	at(0.66)
	testutil.WaitFor(t, 5*time.Minute, "the desk to have every line of the first rotated logs", func() bool {
		for i, s := range sensors {
			if n, ok := s.next(ctx, db); !ok || n < firstRotation[i] {
				return false
			}
		}
		return true
	})
	rotate()
	at(0.7)
	deskCPU += d.stop(syscall.SIGKILL)
	d = startDeskProc(t, url, addr)
	t.Logf("%5.1fs: desk restarted (SIGKILL)", time.Since(begin).Seconds())
	writers.Wait()
	wroteAll := time.Now()
	var written int64
	for _, s := range sensors {
		written += s.written.Load()
	}

	// Wait for every line, as long as the desk keeps making progress.
	count := func() (total, distinct int64) {
		if err := db.QueryRow(ctx, "SELECT COUNT(*), COUNT(DISTINCT line) FROM desk_evidence").Scan(&total, &distinct); err != nil {
			return -1, -1
		}
		return total, distinct
	}
	last, lastChange := int64(-1), time.Now()
	for {
		var total int64
		if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM desk_evidence").Scan(&total); err != nil {
			total = -1
		}
		if total >= written {
			break
		}
		if total != last {
			last, lastChange = total, time.Now()
		}
		if time.Since(lastChange) > time.Minute {
			t.Errorf("the desk stopped at %d of %d lines", total, written)
			break
		}
		time.Sleep(time.Second)
	}
	caughtUp := time.Since(wroteAll)
	close(stopSampling)
	<-sampled
	deskCPU += d.stop(syscall.SIGTERM)
	d = nil
	total, distinct := count()

	slices.Sort(lags)
	pct := func(p float64) time.Duration {
		if len(lags) == 0 {
			return 0
		}
		return lags[min(len(lags)-1, int(p*float64(len(lags))))]
	}
	elapsed := wroteAll.Sub(begin) + caughtUp
	t.Logf("%d sensors × %d lines/s for %s, desk on PostgreSQL, restarted twice, PostgreSQL once, logs rotated twice",
		len(sensors), *loadRate, dur)
	t.Logf("lines shipped (written to the logs): %d", written)
	t.Logf("lines stored: %d (distinct %d)", total, distinct)
	t.Logf("duplicates: %d, lost: %d", total-distinct, written-distinct)
	t.Logf("ship lag: median %s, 95th percentile %s, max %s; caught up %s after the last line was written",
		pct(0.5).Round(time.Millisecond), pct(0.95).Round(time.Millisecond), pct(1).Round(time.Millisecond), caughtUp.Round(time.Millisecond))
	t.Logf("desk CPU: %s over %s (%.0f%% of one core), %.0f µs per line",
		deskCPU.Round(time.Millisecond), elapsed.Round(time.Second), 100*deskCPU.Seconds()/elapsed.Seconds(),
		float64(deskCPU.Microseconds())/float64(max(written, 1)))
	if total != written || distinct != written {
		for _, s := range sensors {
			t.Logf("%s: %s", s.name, s.missing(ctx, t, db))
		}
		t.Fatalf("the desk holds %d lines (%d distinct) of %d written: want each exactly once", total, distinct, written)
	}
}
