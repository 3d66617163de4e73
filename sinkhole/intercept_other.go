//go:build !linux

package sinkhole

import (
	"errors"
	"net/netip"
)

var errNoTransparent = errors.New("transparent interception needs Linux (IP_TRANSPARENT, nftables tproxy)")

type loop struct{ local netip.AddrPort }

func (in *Interceptor) newLoop(netip.AddrPort) (*loop, error) { return nil, errNoTransparent }
func (lp *loop) run(chan<- error)                             {}
func (lp *loop) stop()                                        {}
