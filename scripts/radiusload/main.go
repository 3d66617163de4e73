// Command radiusload sends RADIUS Accounting-Requests at a fixed rate and
// counts the answers: the load generator of scripts/perf-radius-dns.sh.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"
)

// radclient has no rate control, and a file of requests sent as fast as it
// can is a burst, not a rate:
//
//	go run ./scripts/radiusload -addr 127.0.0.1:1813 -secret-file FILE -rate 1000 -duration 10s
//
// Each of -conc conversations (one UDP socket, as a NAS or proxy keeps)
// sends a Start and later the Stop of a session of its own, one request at
// a time, paced so that all of them together send -rate requests a second;
// a request without an answer after -timeout is sent again, at most 3
// times. The secret is read from a file, never from the command line. It
// prints one line: sent, answered, lost and the rate answered.
//
// With -answer LISTEN it is instead the far end for a control run: it
// answers every Accounting-Request on LISTEN at once, storing nothing (the
// answers carry the request's identifier but no valid authenticator, which
// the generator does not check), so that the same RADIUS traffic runs on
// the generator's CPU with none of it in serve.
func main() {
	addr := flag.String("addr", "", "the accounting server, HOST:PORT")
	secretFile := flag.String("secret-file", "", "file holding the shared secret (first line)")
	rate := flag.Float64("rate", 1000, "requests a second, all conversations together")
	conc := flag.Int("conc", 32, "conversations (sockets) at once")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	timeout := flag.Duration("timeout", time.Second, "wait this long for an answer before sending again")
	answer := flag.String("answer", "", "answer requests on this UDP address instead of sending (a control run)")
	flag.Parse()
	if *answer != "" {
		if err := answerAll(*answer); err != nil {
			fmt.Fprintln(os.Stderr, "radiusload:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*addr, *secretFile, *rate, *conc, *duration, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "radiusload:", err)
		os.Exit(1)
	}
}

func run(addr, secretFile string, rate float64, conc int, duration, timeout time.Duration) error {
	if addr == "" || secretFile == "" || rate <= 0 || conc <= 0 {
		return errors.New("need -addr, -secret-file, a positive -rate and -conc")
	}
	b, err := os.ReadFile(secretFile)
	if err != nil {
		return err
	}
	secret := []byte(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if len(secret) == 0 {
		return fmt.Errorf("%s: no secret", secretFile)
	}
	var sent, answered, lost atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	interval := time.Duration(float64(conc) / rate * float64(time.Second))
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("udp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			buf := make([]byte, 4096)
			// Spread the conversations over one interval.
			next := start.Add(interval * time.Duration(w) / time.Duration(conc))
			for n := 0; ; n++ {
				if d := time.Until(next); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return
					}
				}
				if ctx.Err() != nil {
					return
				}
				next = next.Add(interval)
				if late := time.Since(next); late > interval {
					next = time.Now() // behind: do not burst to catch up
				}
				p := radius.New(radius.CodeAccountingRequest, secret)
				p.Identifier = byte(n)
				sess := fmt.Sprintf("load-%d-%d", w, n/2)
				rfc2865.UserName_SetString(p, "user-"+sess)
				rfc2866.AcctSessionID_SetString(p, sess)
				st := rfc2866.AcctStatusType_Value_Start
				if n%2 == 1 {
					st = rfc2866.AcctStatusType_Value_Stop
				}
				rfc2866.AcctStatusType_Set(p, st)
				rfc2865.NASIPAddress_Set(p, net.IPv4(192, 0, 2, 1))
				rfc2865.FramedIPAddress_Set(p, net.IPv4(100, 64+byte(w>>8), byte(w), byte(n/2)))
				req, err := p.Encode()
				if err != nil {
					errs <- err
					return
				}
				sent.Add(1)
				ok := false
				for try := 0; try < 3 && !ok; try++ {
					if _, err := c.Write(req); err != nil {
						break
					}
					c.SetReadDeadline(time.Now().Add(timeout))
					for {
						m, err := c.Read(buf)
						if err != nil {
							break // timed out: send again
						}
						if m >= 20 && radius.Code(buf[0]) == radius.CodeAccountingResponse && buf[1] == req[1] {
							ok = true
							break
						}
					}
				}
				if ok {
					answered.Add(1)
				} else {
					lost.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	fmt.Printf("sent %d answered %d lost %d rate %.0f/s\n", sent.Load(), answered.Load(), lost.Load(), float64(answered.Load())/secs)
	return nil
}

// answerAll answers every Accounting-Request on listen with an
// Accounting-Response of the same identifier, until killed.
func answerAll(listen string) error {
	c, err := net.ListenPacket("udp", listen)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, radius.MaxPacketLength)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		if n < 20 || radius.Code(buf[0]) != radius.CodeAccountingRequest {
			continue
		}
		buf[0], buf[2], buf[3] = byte(radius.CodeAccountingResponse), 0, 20
		c.WriteTo(buf[:20], from)
	}
}
