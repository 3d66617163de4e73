// Package attribution names the subscriber behind a sighting from RADIUS sessions,
// NAT bindings (conntrack, port blocks, IPFIX, deterministic NAT) and static lines.
package attribution
