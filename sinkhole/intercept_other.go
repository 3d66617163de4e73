//go:build !linux

package sinkhole

import (
	"errors"
	"net"
	"net/netip"
)

var errNoTransparent = errors.New("transparent interception needs Linux (IP_TRANSPARENT, nftables tproxy)")

func listenTransparent(network, addr string) (*net.UDPConn, error) { return nil, errNoTransparent }

func parseOrigDst(oob []byte) (netip.AddrPort, bool) { return netip.AddrPort{}, false }

type sender struct{}

func newSender(int, *interceptCounters) (*sender, error) { return nil, errNoTransparent }
func (s *sender) queue(*sendJob) bool                    { return false }
func (s *sender) stop()                                  {}
func (s *sender) settle()                                {}
