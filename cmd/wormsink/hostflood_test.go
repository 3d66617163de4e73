package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestServeOneRealHostFlood: one real client (it completes TCP handshakes,
// or echoes its DNS server cookie, so every sighting is tcp or exchange)
// asks the real shim for distinct names under a listed wildcard as fast as
// it can for 10 s. Its sightings fold: a handful of detailed lines, then a
// summary line a second; the log stays far under 50 MB, the host has its
// line with its proof, and the counts add up to the sightings.
func TestServeOneRealHostFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood test skipped in -short mode")
	}
	const sendFor = 10 * time.Second
	for _, tc := range []struct {
		name, proof string
		flood       func(t *testing.T, addr string, stop time.Time) int64
	}{
		{"tcp", "tcp", floodTCP},
		{"cookie", "exchange", floodCookie},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := wormsinkBinary(t)
			sigs := t.TempDir() + "/sigs.yaml"
			if err := os.WriteFile(sigs, fmt.Appendf(nil, storySigs, 1, "'*.flood.worm.example'"), 0o644); err != nil {
				t.Fatal(err)
			}
			p := startServe(t, bin, "--signatures", sigs, "--upstream", "127.0.0.1:9", "--sinkhole-ip", "127.0.0.200")
			addr := fmt.Sprintf("127.0.0.1:%d", p.dns)
			start := time.Now()
			answered := tc.flood(t, addr, start.Add(sendFor))
			took := time.Since(start)
			// Every answered query was recorded before it was answered; wait
			// until the count stops moving (late queries of a closed client).
			var sightings float64
			t.Logf("%d answered in %v", answered, took)
			waitFor(t, "the sightings to settle", 30*time.Second, func() bool {
				prev := sightings
				sightings = p.metric(t, "wormsink_evidence_sightings_total")
				return sightings >= float64(answered) && sightings == prev
			})
			p.stop(t)
			fi, err := os.Stat(p.log)
			if err != nil {
				t.Fatal(err)
			}
			var sum float64
			var hostLines, summary int
			var proofs = map[string]bool{}
			f, _ := os.Open(p.log)
			defer f.Close()
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				var l map[string]any
				if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
					t.Fatalf("log line %q: %v", sc.Text(), err)
				}
				if l["event"] != "dns_sinkhole" {
					continue
				}
				sum += l["count"].(float64)
				if l["host"] == floodClient {
					hostLines++
					proofs[l["proof"].(string)] = true
					if _, ok := l["names"]; ok {
						summary++
					}
				}
			}
			t.Logf("%d queries answered in %v; %d sightings; log %d bytes, %d host lines (%d summaries)", answered, took, int64(sightings), fi.Size(), hostLines, summary)
			if answered < 10_000 {
				t.Fatalf("only %d queries answered: no flood", answered)
			}
			if fi.Size() > 50<<20 {
				t.Errorf("log grew %d bytes", fi.Size())
			}
			if sum != sightings {
				t.Errorf("counts add up to %v, sightings %v", sum, sightings)
			}
			// 32 detailed lines a minute, a summary line a second.
			if max := 2*32 + 2*int(took/time.Second) + 4; hostLines > max || summary == 0 {
				t.Errorf("%d host lines (%d summaries), want at most %d and a summary", hostLines, summary, max)
			}
			if !proofs[tc.proof] {
				t.Errorf("host proofs %v, want %s", proofs, tc.proof)
			}
		})
	}
}

// floodClient is the real host's address: not the listeners' own
// 127.0.0.1, which is never a host.
const floodClient = "127.0.0.7"

// floodTCP runs two pipelined TCP connections until stop and returns the
// answers read.
func floodTCP(t *testing.T, addr string, stop time.Time) int64 {
	var answered atomic.Int64
	var wg sync.WaitGroup
	for c := 0; c < 2; c++ {
		conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(floodClient)}}).Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var sent atomic.Int64
		done := make(chan struct{})
		wg.Add(2)
		go func() { // writer: a window of 512 queries in flight
			defer wg.Done()
			defer close(done)
			// Half-close when done: the shim answers what it has read,
			// then closes, so the reader sees every answer and then EOF.
			defer conn.(*net.TCPConn).CloseWrite()
			w := bufio.NewWriterSize(conn, 64<<10)
			m := new(dns.Msg)
			buf := make([]byte, 0, 512)
			for i := 0; time.Now().Before(stop); i++ {
				for sent.Load()-answered.Load() > 512 && time.Now().Before(stop) {
					time.Sleep(100 * time.Microsecond)
				}
				m.SetQuestion(fmt.Sprintf("c%dn%d.flood.worm.example.", c, i), dns.TypeA)
				m.Id = uint16(i)
				b, err := m.PackBuffer(buf)
				if err != nil {
					t.Error(err)
					return
				}
				var l [2]byte
				binary.BigEndian.PutUint16(l[:], uint16(len(b)))
				w.Write(l[:])
				w.Write(b)
				sent.Add(1)
				if i%64 == 63 {
					w.Flush()
				}
			}
			w.Flush()
		}()
		go func() { // reader: every answer
			defer wg.Done()
			r := bufio.NewReaderSize(conn, 64<<10)
			var got int64
			for {
				// Every answer, then EOF once the writer is done: no clock
				// decides when the answers are over.
				conn.SetReadDeadline(time.Now().Add(time.Minute))
				var l [2]byte
				if _, err := io.ReadFull(r, l[:]); err != nil {
					<-done
					if err != io.EOF || got != sent.Load() {
						t.Errorf("tcp read after %d answers of %d: %v", got, sent.Load(), err)
					}
					return
				}
				if _, err := r.Discard(int(binary.BigEndian.Uint16(l[:]))); err != nil {
					t.Error(err)
					return
				}
				got++
				answered.Add(1)
			}
		}()
	}
	wg.Wait()
	return answered.Load()
}

// floodCookie runs eight UDP clients that each learn a server cookie and
// then send every query with it, until stop.
func floodCookie(t *testing.T, addr string, stop time.Time) int64 {
	var answered atomic.Int64
	var wg sync.WaitGroup
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := (&net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(floodClient)}}).Dial("udp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			cookie := fmt.Sprintf("%016x", 0x1122334455667700+c)
			ask := func(name string) (*dns.Msg, error) {
				m := new(dns.Msg)
				m.SetQuestion(name, dns.TypeA)
				o := m.IsEdns0()
				if o == nil {
					m.SetEdns0(1232, false)
					o = m.IsEdns0()
				}
				o.Option = append(o.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: cookie})
				b, _ := m.Pack()
				if _, err := conn.Write(b); err != nil {
					return nil, err
				}
				conn.SetReadDeadline(time.Now().Add(2 * time.Second))
				buf := make([]byte, 2048)
				n, err := conn.Read(buf)
				if err != nil {
					return nil, err
				}
				r := new(dns.Msg)
				return r, r.Unpack(buf[:n])
			}
			r, err := ask("first.flood.worm.example.")
			if err != nil {
				t.Error(err)
				return
			}
			answered.Add(1)
			for _, o := range r.IsEdns0().Option {
				if ck, ok := o.(*dns.EDNS0_COOKIE); ok {
					cookie = ck.Cookie // client and server cookie, echoed from now on
				}
			}
			if len(cookie) <= 16 {
				t.Error("no server cookie")
				return
			}
			for i := 0; time.Now().Before(stop); i++ {
				if _, err := ask("u" + strconv.Itoa(c) + "n" + strconv.Itoa(i) + ".flood.worm.example."); err == nil {
					answered.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return answered.Load()
}
