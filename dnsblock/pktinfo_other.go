//go:build !linux

package dnsblock

import (
	"errors"
	"net"
)

const oobSize = 0

func enablePktInfo(*net.UDPConn) error { return errors.New("dnsblock: no packet info on this system") }

func replyOOB(dst, _ []byte) []byte { return dst }
