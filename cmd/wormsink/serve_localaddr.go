package main

import (
	"context"
	"fmt"

	"wormsink/internal/localaddr"
)

// newOwn starts following the machine's addresses before anything is
// recorded: the evidence writer never names one of them as a host, for
// every part (the TFTP sinkhole, the interceptor, the capture, dnstap),
// including addresses added after the start.
func (s *server) newOwn() (*localaddr.Set, error) {
	own, err := localaddr.New(localaddr.Config{})
	if err != nil {
		return nil, fmt.Errorf("own addresses: %w", err)
	}
	s.closers = append(s.closers, func() { own.Shutdown(context.Background()) })
	return own, nil
}

// addOwn appends the part that follows the address events; the set logs
// each address that comes or goes.
func (s *server) addOwn(own *localaddr.Set) {
	own.SetLog(s.log)
	s.add("own addresses", newLoop(own.Serve))
}
