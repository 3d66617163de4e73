package main

import (
	"context"
	"net/netip"
	"time"
)

// movedTimeout bounds how long a RADIUS Start waits for the quarantine to
// follow its subscriber (the NAS waits for the answer meanwhile).
const movedTimeout = 5 * time.Second

// subscriberStarted is attribution's OnStart: a quarantined subscriber's
// quarantine follows them to the addresses of their new session. It runs
// before the RADIUS answer, so when the NAS hears back the walled garden is
// on the new address. The quarantine is set up after attribution, before
// anything runs.
func (s *server) subscriberStarted(subscriber string, addrs []netip.Addr) {
	if s.quarantine == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), movedTimeout)
	defer cancel()
	if err := s.quarantine.Moved(ctx, subscriber, addrs); err != nil {
		s.log.Error().Str("event", "quarantine_error").Str("subscriber", subscriber).Err(err).Msg("quarantine: not moved to the new session's addresses")
	}
}
