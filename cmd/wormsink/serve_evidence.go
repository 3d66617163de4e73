package main

// hostLines is evidence.Config.HostLines: folding a host's names is part
// of the line budget, so --evidence-line-rate 0 turns it off too.
func (c *serveConfig) hostLines() int {
	if c.evidenceLineRate <= 0 {
		return -1
	}
	return max(c.evidenceHostLines, 1)
}
