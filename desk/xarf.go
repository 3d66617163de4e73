package desk

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"wormsink/report"
)

// Limits of a notice's X-ARF reports.
const (
	// xarfMaxLines is how many of a case's newest evidence lines its X-ARF
	// reports are made from: enough for any real case, bounded for a
	// flooded one.
	xarfMaxLines = 100000
	// xarfMaxReports is how many reports (one per address) a notice
	// carries at most.
	xarfMaxReports = 20
)

// XARF returns case id's X-ARF v4 reports, one JSON document per address,
// made by the report package's xarf format from the case's evidence lines.
// The format's complaint rules apply: only an address with strong evidence
// and proof beyond a lone datagram is reported (anyone can forge a
// datagram's source), so a case with none gets no report.
func (s *Store) XARF(ctx context.Context, id int64, rep report.Reporter) ([][]byte, error) {
	f, err := report.LookupFormat("xarf")
	if err != nil {
		return nil, fmt.Errorf("desk: x-arf: %w", err)
	}
	var out bytes.Buffer
	r, err := f.New(&out, report.Options{Reporter: rep})
	if err != nil {
		return nil, fmt.Errorf("desk: x-arf: %w", err)
	}
	agg := report.NewAggregator(r.Filter(), f.Timeline)
	rows, err := s.db.Query(ctx, `SELECT line FROM desk_evidence WHERE case_id = ? ORDER BY id DESC LIMIT ?`, id, xarfMaxLines)
	if err != nil {
		return nil, fmt.Errorf("desk: x-arf of case %d: %w", id, err)
	}
	var p report.Parser
	var st report.ReadStats
	for rows.Next() {
		var line []byte
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return nil, fmt.Errorf("desk: x-arf of case %d: %w", id, err)
		}
		var rec report.Sighting
		st.Lines++
		if kind, _ := p.Parse(line, &rec); kind == report.LineEvidence {
			agg.Add(&rec)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("desk: x-arf of case %d: %w", id, err)
	}
	if _, err := r.Finish(agg, st); err != nil {
		return nil, fmt.Errorf("desk: x-arf of case %d: %w", id, err)
	}
	var docs [][]byte
	for doc := range strings.SplitSeq(strings.TrimSpace(out.String()), "\n") {
		if doc != "" && len(docs) < xarfMaxReports {
			docs = append(docs, []byte(doc))
		}
	}
	return docs, nil
}
