// Package attribution names the subscriber behind a sighting: RADIUS
// accounting sessions, carrier-grade NAT bindings (conntrack logs, port-block
// syslog, IPFIX, deterministic NAT) and a static subscribers file, kept in the
// store and in an in-memory interval index that answers one look-up without
// allocating.
package attribution
