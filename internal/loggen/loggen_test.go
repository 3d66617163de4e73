package loggen

import (
	"bufio"
	"bytes"
	"encoding/json"
	"testing"

	"wormsink/evidence"
)

// TestVariantsAreEvidence: every line of every variant is JSON that the
// field table accepts (evidence.CheckLine), the lengths spread over what
// the variant asks for, and the same Config writes the same bytes.
func TestVariantsAreEvidence(t *testing.T) {
	for _, v := range Variants(3000) {
		t.Run(v.Name, func(t *testing.T) {
			var log bytes.Buffer
			if err := Write(&log, v.Config); err != nil {
				t.Fatal(err)
			}
			var again bytes.Buffer
			if err := Write(&again, v.Config); err != nil || !bytes.Equal(log.Bytes(), again.Bytes()) {
				t.Fatalf("the same Config wrote different logs (%v)", err)
			}
			sc := bufio.NewScanner(&log)
			n, short, long := 0, 0, 0
			hosts := map[string]bool{}
			v6 := 0
			for sc.Scan() {
				n++
				var m map[string]any
				d := json.NewDecoder(bytes.NewReader(sc.Bytes()))
				d.UseNumber()
				if err := d.Decode(&m); err != nil {
					t.Fatalf("line %d: %v: %s", n, err, sc.Bytes())
				}
				if err := evidence.CheckLine(m); err != nil {
					t.Fatalf("line %d: %v: %s", n, err, sc.Bytes())
				}
				if l := len(sc.Bytes()); l < v.MinLen+40 {
					short++
				} else if l > v.MaxLen-40 {
					long++
				}
				if h, ok := m["host"].(string); ok {
					hosts[h] = true
					if bytes.IndexByte([]byte(h), ':') >= 0 {
						v6++
					}
				}
			}
			if n != v.Lines {
				t.Fatalf("%d lines, want %d", n, v.Lines)
			}
			if v.Sparse > 0.5 && short == 0 {
				t.Errorf("no line near the shortest length asked (%d)", v.MinLen)
			}
			if long == 0 {
				t.Errorf("no line near the longest length asked (%d)", v.MaxLen)
			}
			if len(hosts) < min(v.Hosts, v.Lines)/4 {
				t.Errorf("%d distinct hosts in %d lines", len(hosts), n)
			}
			if (v.IPv6 > 0) != (v6 > 0) {
				t.Errorf("%d IPv6 hosts with IPv6 share %v", v6, v.IPv6)
			}
		})
	}
}
