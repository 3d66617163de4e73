// Package report reads evidence logs back: it sums the sightings per host and
// writes them as a table, CSV, JSON, HTML, Shadowserver CSV or X-ARF.
package report
