// Command loadgen measures how fast a TFTP server refuses read requests and
// what each refusal costs it in CPU. With -compare it runs wormsink's
// sinkserver, tftpd-hpa (in.tftpd) and a bare pin/tftp server side by side
// on loopback ports, one after the other under the same load, and prints
// one table.
//
//	go build -o /tmp/sinkserver ./testdata/tftp/sinkserver
//	go run ./testdata/tftp/loadgen -compare -sinkserver /tmp/sinkserver
//
// The load is closed-loop: -conc sockets each send a read request for a
// file the server does not have (msblast.exe), wait for the reply, and send
// the next. Replies are accepted from any port of the server's address,
// since tftpd-hpa and a default pin/tftp answer from a new port per
// request. CPU is the server process's user+system time, its reaped
// children included (tftpd-hpa forks one per request), from /proc.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pin/tftp/v3"
)

func main() {
	target := flag.String("target", "", "server address to load (with -pid for CPU)")
	pid := flag.Int("pid", 0, "server process to measure CPU of")
	duration := flag.Duration("duration", 5*time.Second, "how long to load each server")
	conc := flag.Int("conc", 32, "requests in flight (one socket each)")
	file := flag.String("file", "msblast.exe", "file to ask for")
	compare := flag.Bool("compare", false, "run sinkserver, in.tftpd and bare pin/tftp side by side")
	sinkserver := flag.String("sinkserver", "", "sinkserver binary for -compare")
	tftpd := flag.String("tftpd", "/usr/sbin/in.tftpd", "tftpd-hpa binary for -compare")
	barePin := flag.String("bare-pin", "", "internal: serve a bare pin/tftp server on this address")
	flag.Parse()

	switch {
	case *barePin != "":
		serveBarePin(*barePin)
	case *compare:
		if err := runCompare(*sinkserver, *tftpd, *duration, *conc, *file); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
	case *target != "":
		r, err := load(netip.MustParseAddrPort(*target), *pid, *duration, *conc, *file)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
		printTable([]result{r})
	default:
		flag.Usage()
		os.Exit(2)
	}
}

type result struct {
	name      string
	replies   uint64
	timeouts  uint64
	dur       time.Duration
	cpu       time.Duration
	largest   int // largest reply
	data      uint64
	reqLen    int
	rssMaxKB  int64
	fdsMax    int
	otherPort uint64 // replies from a port other than the one asked
}

func printTable(rs []result) {
	fmt.Printf("%-44s %10s %10s %12s %8s %9s %7s %6s %6s\n", "server", "refused/s", "timeouts", "cpu/request", "cpu%", "reply(B)", "DATA", "maxfd", "rssMB")
	for _, r := range rs {
		per := time.Duration(0)
		if r.replies > 0 {
			per = r.cpu / time.Duration(r.replies)
		}
		fmt.Printf("%-44s %10.0f %10d %12v %8.0f %5d/%-3d %7d %6d %6.1f\n", r.name, float64(r.replies)/r.dur.Seconds(), r.timeouts, per,
			100*r.cpu.Seconds()/r.dur.Seconds(), r.largest, r.reqLen, r.data, r.fdsMax, float64(r.rssMaxKB)/1024)
	}
}

func request(file string) []byte {
	b := []byte{0, 1}
	b = append(b, file...)
	b = append(b, 0)
	b = append(b, "octet"...)
	return append(b, 0)
}

// load runs the closed loop against target for d.
func load(target netip.AddrPort, pid int, d time.Duration, conc int, file string) (result, error) {
	req := request(file)
	r := result{name: target.String(), reqLen: len(req)}
	var replies, timeouts, data, other atomic.Uint64
	var largest atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	conns := make([]*net.UDPConn, conc)
	for i := range conns {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return r, err
		}
		defer c.Close()
		conns[i] = c
	}
	cpu0, _ := procCPU(pid)
	var peakFDs atomic.Int64
	var peakRSS atomic.Int64
	sampling := make(chan struct{})
	go func() {
		defer close(sampling)
		for !stop.Load() {
			if pid > 0 {
				fds, rss := procMem(pid)
				if int64(fds) > peakFDs.Load() {
					peakFDs.Store(int64(fds))
				}
				if rss > peakRSS.Load() {
					peakRSS.Store(rss)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	start := time.Now()
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for !stop.Load() {
				if _, err := c.WriteToUDPAddrPort(req, target); err != nil {
					return
				}
				c.SetReadDeadline(time.Now().Add(time.Second))
				for {
					n, from, err := c.ReadFromUDPAddrPort(buf)
					if err != nil {
						timeouts.Add(1)
						break
					}
					if from.Addr() != target.Addr() {
						continue
					}
					if from.Port() != target.Port() {
						other.Add(1)
					}
					if int64(n) > largest.Load() {
						largest.Store(int64(n))
					}
					if n >= 2 && buf[0] == 0 && buf[1] == 3 {
						data.Add(1)
					}
					replies.Add(1)
					break
				}
			}
		}()
	}
	time.Sleep(d)
	stop.Store(true)
	r.dur = time.Since(start)
	wg.Wait()
	<-sampling
	cpu1, _ := procCPU(pid)
	r.replies, r.timeouts, r.data, r.otherPort = replies.Load(), timeouts.Load(), data.Load(), other.Load()
	r.largest = int(largest.Load())
	r.cpu = cpu1 - cpu0
	r.fdsMax, r.rssMaxKB = int(peakFDs.Load()), peakRSS.Load()
	return r, nil
}

func procCPU(pid int) (time.Duration, error) {
	if pid <= 0 {
		return 0, nil
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[i+2:]))
	var ticks int64
	for _, k := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		v, _ := strconv.ParseInt(f[k], 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

func procMem(pid int) (fds int, rssKB int64) {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			rssKB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return len(ents), rssKB
}

// freePort finds a free UDP port on 127.0.0.1 for a server that cannot be
// given port 0.
func freePort() (int, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

type server struct {
	name string
	cmd  *exec.Cmd
	addr netip.AddrPort
}

// start runs a server and waits until it answers a request.
func start(name string, addr netip.AddrPort, args ...string) (*server, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout = io.Discard
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{name: name, cmd: cmd, addr: addr}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	buf := make([]byte, 600)
	for i := 0; i < 100; i++ {
		c.WriteToUDPAddrPort(request("ready.check"), addr)
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, _, err := c.ReadFromUDPAddrPort(buf); err == nil {
			return s, nil
		}
	}
	_ = s.stop()
	return nil, fmt.Errorf("%s did not answer on %v", name, addr)
}

// stop ends the server and says whether it had died under the load
// rather than by the SIGTERM it was sent.
func (s *server) stop() (crashed string) {
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-done
		return "did not stop on SIGTERM"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			return ""
		}
		return "crashed: " + err.Error()
	}
	return ""
}

func runCompare(sinkserver, tftpd string, d time.Duration, conc int, file string) error {
	if sinkserver == "" {
		return errors.New("-compare needs -sinkserver BIN (go build -o BIN ./testdata/tftp/sinkserver)")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	empty, err := os.MkdirTemp("", "tftp-empty")
	if err != nil {
		return err
	}
	defer os.RemoveAll(empty)
	logFile, err := os.CreateTemp("", "sinkserver-evidence")
	if err != nil {
		return err
	}
	logFile.Close()
	defer os.Remove(logFile.Name())

	type spec struct {
		name string
		args func(port int) []string
	}
	specs := []spec{
		{"tftpd-hpa (in.tftpd -L)", func(p int) []string {
			return []string{tftpd, "-L", "-s", empty, "-a", fmt.Sprintf("127.0.0.1:%d", p)}
		}},
		{"bare pin/tftp (default)", func(p int) []string {
			return []string{self, "-bare-pin", fmt.Sprintf("127.0.0.1:%d", p)}
		}},
		{"bare pin/tftp (single port)", func(p int) []string {
			return []string{self, "-bare-pin", fmt.Sprintf("127.0.0.1:%d/single", p)}
		}},
		{"wormsink sinkhole", func(p int) []string {
			// Limits on but out of reach: one host is the whole load here.
			return []string{sinkserver, "-listen", fmt.Sprintf("127.0.0.1:%d", p), "-log", logFile.Name(),
				"-source-rate", "1e9", "-source-burst", "1000000", "-total-rate", "1e9", "-total-burst", "1000000"}
		}},
	}
	var rs []result
	for _, sp := range specs {
		port, err := freePort()
		if err != nil {
			return err
		}
		addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
		s, err := start(sp.name, addr, sp.args(port)...)
		if err != nil {
			return err
		}
		r, err := load(addr, s.cmd.Process.Pid, d, conc, file)
		crashed := s.stop()
		if err != nil {
			return err
		}
		r.name = sp.name
		if crashed != "" {
			r.name += " [" + crashed + "]"
		}
		rs = append(rs, r)
	}
	printTable(rs)
	if lines, err := countLines(logFile.Name()); err == nil {
		fmt.Printf("\nwormsink evidence log: %d lines (repeats folded into counts)\n", lines)
	}
	return nil
}

func countLines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
	}
	return n, sc.Err()
}

// serveBarePin is pin/tftp as its README shows it, refusing every read:
// the baseline the sinkhole is compared with.
func serveBarePin(addr string) {
	single := strings.HasSuffix(addr, "/single")
	addr = strings.TrimSuffix(addr, "/single")
	s := tftp.NewServer(func(string, io.ReaderFrom) error { return errors.New("file not found") }, nil)
	if single {
		s.EnableSinglePort()
	}
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
		<-ch
		os.Exit(0)
	}()
	if err := s.ListenAndServe(addr); err != nil {
		fmt.Fprintln(os.Stderr, "bare pin:", err)
		os.Exit(1)
	}
}
