// Package report reads evidence logs back and turns them into what an abuse
// team acts on: a streaming reader that parses each line without allocating,
// an aggregator that sums sightings per host, and the output formats (table,
// CSV, JSON, HTML, Shadowserver CSV, X-ARF).
package report
