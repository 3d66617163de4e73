// Package attribution names the subscriber behind a sighting, from RADIUS accounting, NAT
// logs and static lists kept in the store, through an in-memory interval index.
package attribution
