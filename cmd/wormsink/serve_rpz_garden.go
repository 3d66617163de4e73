package main

import (
	"errors"
	"net/netip"

	"wormsink/quarantine"
	"wormsink/rpz"
)

// rpzGarden is what the RPZ primary needs for the walled garden in the
// ISP's resolvers: the notice addresses and the allowlist. Both are empty
// without a quarantine, and then only the signatures' zone is served.
func (s *server) rpzGarden() (notice []netip.Addr, passthru []string, err error) {
	q := &s.cfg.quarantine
	if s.quarantine == nil {
		return nil, nil, nil
	}
	if len(q.noticeIPs) == 0 {
		return nil, nil, errors.New("--quarantine-policy with --rpz-listen needs --notice-ip: the address quarantined clients are sent to")
	}
	return q.noticeIPs, q.policy.Allow, nil
}

// watchRPZGarden keeps the garden zone's client-IP triggers equal to the
// quarantined addresses: each change is a new serial, IXFR and NOTIFY.
func (s *server) watchRPZGarden(srv *rpz.Server) {
	if s.quarantine == nil {
		return
	}
	s.quarantine.Watch(func(snap *quarantine.Snapshot) { srv.SetQuarantined(snapshotAddrs(snap)) })
}
