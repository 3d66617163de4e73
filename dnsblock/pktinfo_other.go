//go:build !linux

package dnsblock

import (
	"errors"
	"net"
	"net/netip"
	"time"
)

const oobSize = 0

func enablePktInfo(*net.UDPConn) error { return errors.New("dnsblock: no packet info on this system") }

func replyOOB(dst, _ []byte) []byte { return dst }

// udpBatch is the Linux recvmmsg/sendmmsg reader; elsewhere the plain one serves.
type udpBatch struct{ parked bool }

func newUDPBatch(*net.UDPConn) *udpBatch { return nil }

func (*udpBatch) read() (int, error) { return 0, errors.New("no batch") }
func (*udpBatch) packet(int) ([]byte, netip.AddrPort, []byte, bool) {
	return nil, netip.AddrPort{}, nil, false
}
func (*udpBatch) slot() []byte              { return nil }
func (*udpBatch) queue(int, []byte, []byte) {}
func (*udpBatch) flush()                    {}
func (*udpBatch) wait(time.Duration)        {}

const coalesceBelow = 0
