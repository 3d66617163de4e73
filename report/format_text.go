package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"
	"wormsink/evidence"
)

// CSVHeader is the report's CSV header row: the columns of docs/contract.md
// §4 exactly, and "proof" and "subscribers" appended after "sensors"
// (readers of the agreed header by position keep working).
var CSVHeader = []string{"host", "first_seen", "last_seen", "events", "evidence", "families", "signatures", "sources", "sensors", "proof", "subscribers"}

// listSep joins the names in one CSV or table cell.
const listSep = ";"

// String renders sources as "dns=N;tftp=N;wire=N".
func (s Sources) String() string {
	return "dns=" + strconv.FormatUint(s.DNS, 10) + listSep +
		"tftp=" + strconv.FormatUint(s.TFTP, 10) + listSep +
		"wire=" + strconv.FormatUint(s.Wire, 10)
}

func (h *HostSummary) cells() []string {
	return []string{
		h.Host.String(),
		h.FirstSeen.Format(evidence.TimeFormat),
		h.LastSeen.Format(evidence.TimeFormat),
		strconv.FormatUint(h.Events, 10),
		h.Evidence.String(),
		strings.Join(h.Families, listSep),
		strings.Join(h.Signatures, listSep),
		h.Sources.String(),
		strings.Join(h.Sensors, listSep),
		h.Proof.String(),
		strings.Join(h.Subscribers, listSep),
	}
}

// WriteCSV writes the rows under CSVHeader; lists inside a cell are joined
// with ";". The bytes are those of encoding/csv writing the neutralised
// cells (FuzzCSVCell checks), made without a string per cell: a report
// can have millions of rows.
func WriteCSV(w io.Writer, rows []HostSummary) error {
	return WriteCSVSeq(w, func(yield func(*HostSummary) bool) {
		for i := range rows {
			if !yield(&rows[i]) {
				return
			}
		}
	})
}

// WriteCSVSeq is WriteCSV for rows yielded one at a time (as
// Aggregator.EachHost yields them).
func WriteCSVSeq(w io.Writer, rows iter.Seq[*HostSummary]) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	row, cell := csvHeaderLine(), []byte(nil)
	if _, err := bw.Write(row); err != nil {
		return err
	}
	for h := range rows {
		row, cell = appendCSVRow(row[:0], cell, h)
		if _, err := bw.Write(row); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// writeCSVRows is WriteCSVSeq of an aggregator's rows, formatted on its
// workers.
func writeCSVRows(w io.Writer, a *Aggregator) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	if _, err := bw.Write(csvHeaderLine()); err != nil {
		return err
	}
	if err := a.writeRows(bw, func(dst []byte, h *HostSummary) []byte {
		var cell [256]byte
		dst, _ = appendCSVRow(dst, cell[:0], h)
		return dst
	}); err != nil {
		return err
	}
	return bw.Flush()
}

func csvHeaderLine() []byte {
	var row []byte
	for i, h := range CSVHeader {
		if i > 0 {
			row = append(row, ',')
		}
		row = appendCSVCell(row, []byte(h))
	}
	return append(row, '\n')
}

// appendCSVRow appends h's CSV row to row; cell is scratch space.
func appendCSVRow(row, cell []byte, h *HostSummary) ([]byte, []byte) {
	row = h.Host.AppendTo(row)
	row = append(row, ',')
	row = appendTime(row, h.FirstSeen)
	row = append(row, ',')
	row = appendTime(row, h.LastSeen)
	row = append(row, ',')
	row = strconv.AppendUint(row, h.Events, 10)
	row = append(row, ',')
	row = appendCSVCell(row, []byte(h.Evidence.String()))
	for _, names := range [...][]string{h.Families, h.Signatures} {
		row = append(row, ',')
		cell = appendJoined(cell[:0], names)
		row = appendCSVCell(row, cell)
	}
	row = append(row, ",dns="...)
	row = strconv.AppendUint(row, h.Sources.DNS, 10)
	row = append(row, listSep+"tftp="...)
	row = strconv.AppendUint(row, h.Sources.TFTP, 10)
	row = append(row, listSep+"wire="...)
	row = strconv.AppendUint(row, h.Sources.Wire, 10)
	row = append(row, ',')
	cell = appendJoined(cell[:0], h.Sensors)
	row = appendCSVCell(row, cell)
	row = append(row, ',')
	row = appendCSVCell(row, []byte(h.Proof.String()))
	row = append(row, ',')
	cell = appendJoined(cell[:0], h.Subscribers)
	row = appendCSVCell(row, cell)
	row = append(row, '\n')
	return row, cell
}

func appendJoined(dst []byte, names []string) []byte {
	for i, n := range names {
		if i > 0 {
			dst = append(dst, listSep...)
		}
		dst = append(dst, n...)
	}
	return dst
}

// appendCSVCell appends a cell as encoding/csv's Writer (comma, no CRLF)
// writes neutraliseCell(c).
func appendCSVCell(dst, c []byte) []byte {
	if hasControl(c) {
		c = []byte(csvPrintable(string(c)))
	}
	neutral := len(c) > 0 && (c[0] == '=' || c[0] == '+' || c[0] == '-' || c[0] == '@' || c[0] == '\t' || c[0] == '\r')
	if !csvNeedsQuotes(c, neutral) {
		if neutral {
			dst = append(dst, '\'')
		}
		return append(dst, c...)
	}
	dst = append(dst, '"')
	if neutral {
		dst = append(dst, '\'')
	}
	for len(c) > 0 {
		i := bytes.IndexByte(c, '"')
		if i < 0 {
			dst = append(dst, c...)
			break
		}
		dst = append(append(dst, c[:i]...), '"', '"')
		c = c[i+1:]
	}
	return append(dst, '"')
}

// csvNeedsQuotes is encoding/csv's rule for the cell c, with a leading
// quote when neutral.
func csvNeedsQuotes(c []byte, neutral bool) bool {
	if len(c) == 0 {
		return false
	}
	if !neutral && string(c) == `\.` {
		return true
	}
	for _, b := range c {
		if b == '\n' || b == '\r' || b == '"' || b == ',' {
			return true
		}
	}
	if neutral {
		return false // the cell starts with the quote, no space
	}
	r, _ := utf8.DecodeRune(c)
	return unicode.IsSpace(r)
}

// neutralise defuses spreadsheet formulas in CSV cells, following OWASP's
// advice on CSV injection: a cell that starts with =, +, -, @, a tab or a
// carriage return gets a leading single quote, so a spreadsheet shows it as
// text instead of evaluating it. Family, signature, sensor and file names
// come from signature files and command lines, which an operator may not
// control; addresses, times and counts never start with these characters.
func neutralise(cells []string) []string {
	for i, c := range cells {
		cells[i] = neutraliseCell(c)
	}
	return cells
}

func neutraliseCell(c string) string {
	if c == "" {
		return c
	}
	c = csvPrintable(c)
	switch c[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + c
	}
	return c
}

// WriteTable writes the rows as aligned columns for a terminal. Names from
// the log are printed with control characters escaped, so a hostile log
// cannot move the cursor.
func WriteTable(w io.Writer, rows []HostSummary) error {
	bw := bufio.NewWriter(w)
	return writeAligned(bw, "HOST\tFIRST SEEN\tLAST SEEN\tEVENTS\tEVIDENCE\tFAMILIES\tSIGNATURES\tSOURCES\tSENSORS\tPROOF\tSUBSCRIBERS",
		len(rows), func(i int) []string { return rows[i].cells() })
}

// writeAligned writes a header and n rows as aligned columns through bw,
// with control characters escaped, and flushes bw.
func writeAligned(bw *bufio.Writer, header string, n int, row func(int) []string) error {
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for i := range n {
		c := row(i)
		for j := range c {
			c[j] = printable(c[j])
		}
		fmt.Fprintln(tw, strings.Join(c, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return bw.Flush()
}

// WriteNetworkTable writes the networks of network lines as a second
// table under its own heading, so nobody takes them for hosts. It writes
// nothing when there are none.
func WriteNetworkTable(w io.Writer, nets []NetworkSummary) error {
	if len(nets) == 0 {
		return nil
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "\nNetworks: %d sightings the evidence line budget folded per network (not hosts: no host in them is named)\n", sumEvents(nets))
	return writeAligned(bw, "NETWORK\tFIRST SEEN\tLAST SEEN\tEVENTS\tEVIDENCE\tFAMILIES\tSIGNATURES\tSOURCES\tSENSORS",
		len(nets), func(i int) []string { return nets[i].cells() })
}

func sumEvents(nets []NetworkSummary) uint64 {
	var n uint64
	for i := range nets {
		n = addSat(n, nets[i].Events)
	}
	return n
}

func (n *NetworkSummary) cells() []string {
	return []string{
		n.Network.String(),
		n.FirstSeen.Format(evidence.TimeFormat),
		n.LastSeen.Format(evidence.TimeFormat),
		strconv.FormatUint(n.Events, 10),
		n.Evidence.String(),
		strings.Join(n.Families, listSep),
		strings.Join(n.Signatures, listSep),
		n.Sources.String(),
		strings.Join(n.Sensors, listSep),
	}
}

// hasControl reports whether c holds a character csvPrintable escapes:
// a C0 control other than tab, CR and LF, DEL, or a C1 control (U+0080 to
// U+009F, 0xC2 0x80-0x9F).
func hasControl(c []byte) bool {
	for i, b := range c {
		if b < 0x20 && b != '\t' && b != '\r' && b != '\n' || b == 0x7f || b == 0xc2 && i+1 < len(c) && c[i+1] >= 0x80 && c[i+1] < 0xa0 {
			return true
		}
	}
	return false
}

// csvPrintable escapes the control characters of s as the table does
// (\x00, \x1b, \u0085): a NUL or a terminal escape sequence is no text
// for a spreadsheet or a ticket system. Tab, CR and LF stay: a CSV cell
// holds them, quoted, and neutraliseCell defuses a cell they start.
func csvPrintable(s string) string {
	if !hasControl([]byte(s)) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r < 0x20 && r != '\t' && r != '\r' && r != '\n' || r == 0x7f || r >= 0x80 && r < 0xa0 {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		} else {
			b.WriteString(s[i : i+size]) // a byte that is not UTF-8 stays itself
		}
		i += size
	}
	return b.String()
}

// printable escapes control characters and tabs (which would break the
// columns) the way Go quotes them.
func printable(s string) string {
	clean := true
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// jsonHost is the JSON shape of a row.
type jsonHost struct {
	Host       string   `json:"host"`
	FirstSeen  string   `json:"first_seen"`
	LastSeen   string   `json:"last_seen"`
	Events     uint64   `json:"events"`
	Evidence   string   `json:"evidence"`
	Families   []string `json:"families"`
	Signatures []string `json:"signatures"`
	Sources    Sources  `json:"sources"`
	Sensors    []string `json:"sensors"`
	Proof      string   `json:"proof"`
	// Subscribers the lines named (attribution); empty when none did.
	Subscribers []string `json:"subscribers"`
}

func (h *HostSummary) jsonRow() jsonHost {
	return jsonHost{
		Host: h.Host.String(), FirstSeen: h.FirstSeen.Format(evidence.TimeFormat), LastSeen: h.LastSeen.Format(evidence.TimeFormat),
		Events: h.Events, Evidence: h.Evidence.String(),
		Families: nonNil(h.Families), Signatures: nonNil(h.Signatures), Sources: h.Sources, Sensors: nonNil(h.Sensors),
		Proof: h.Proof.String(), Subscribers: nonNil(h.Subscribers),
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// JSONReport is the document --format json writes.
type JSONReport struct {
	Hosts    []jsonHost    `json:"hosts"`
	Summary  Summary       `json:"summary"`
	Networks []jsonNetwork `json:"networks"`
}

// jsonNetwork is the JSON shape of a network line's network: a host row
// with "network" in place of "host".
type jsonNetwork struct {
	Network    string   `json:"network"`
	FirstSeen  string   `json:"first_seen"`
	LastSeen   string   `json:"last_seen"`
	Events     uint64   `json:"events"`
	Evidence   string   `json:"evidence"`
	Families   []string `json:"families"`
	Signatures []string `json:"signatures"`
	Sources    Sources  `json:"sources"`
	Sensors    []string `json:"sensors"`
}

// Summary describes what a report was made from.
type Summary struct {
	Hosts     int    `json:"hosts"`
	Sightings uint64 `json:"sightings"` // kept by the filter, over all hosts before the evidence filter
	Lines     uint64 `json:"lines"`
	Malformed uint64 `json:"malformed"`
	Service   uint64 `json:"service"`

	// Networks counts the networks of network lines, and NetworkSightings
	// the sightings in them (part of Sightings, in no host's row).
	Networks         int              `json:"networks"`
	NetworkSightings uint64           `json:"network_sightings"`
	NetworkRows      []NetworkSummary `json:"-"` // listed by json and html

	// Saturated says the sums reached MaxCount and were held there: the
	// true counts are larger.
	Saturated bool `json:"saturated,omitempty"`
}

// WriteJSON writes {"hosts":[...],"summary":{...},"networks":[...]}: one
// object per row with the CSV's columns as keys (families, signatures and
// sensors as arrays, sources as an object); networks are the network lines'
// networks, in the same shape with "network" in place of "host".
func WriteJSON(w io.Writer, rows []HostSummary, sum Summary) error {
	doc := JSONReport{Hosts: make([]jsonHost, len(rows)), Summary: sum, Networks: make([]jsonNetwork, len(sum.NetworkRows))}
	for i := range rows {
		doc.Hosts[i] = rows[i].jsonRow()
	}
	for i, n := range sum.NetworkRows {
		doc.Networks[i] = jsonNetwork{
			Network: n.Network.String(), FirstSeen: n.FirstSeen.Format(evidence.TimeFormat), LastSeen: n.LastSeen.Format(evidence.TimeFormat),
			Events: n.Events, Evidence: n.Evidence.String(),
			Families: nonNil(n.Families), Signatures: nonNil(n.Signatures), Sources: n.Sources, Sensors: nonNil(n.Sensors),
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}
