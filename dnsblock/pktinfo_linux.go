package dnsblock

import (
	"errors"
	"net"

	"wormsink/internal/pktinfo"
)

// A socket bound to a wildcard address must answer from the address the
// query was sent to, or the client drops the answer: the kernel tells the
// destination in IP_PKTINFO / IPV6_PKTINFO and takes it back on send
// (internal/pktinfo reads and writes them).

var oobSize = pktinfo.Space

func enablePktInfo(c *net.UDPConn) error {
	if ok, _ := pktinfo.Enable(c); !ok {
		return errors.New("dnsblock: IP_PKTINFO refused")
	}
	return nil
}

// replyOOB turns the control messages of a received packet into the one
// that sends the answer from the address the query was sent to.
func replyOOB(dst, oob []byte) []byte { return pktinfo.Reply(dst, oob) }
