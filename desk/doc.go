// Package desk is the abuse team's working place: every sensor's evidence
// stored once, one case per subscriber, a web UI and a JSON API to work them.
package desk
