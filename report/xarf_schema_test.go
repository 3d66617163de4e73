package report

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// validateXARF runs the official X-ARF v4 schema (testdata/report/xarf-v4,
// source: testdata/report/xarf-v4/SOURCE.md) over JSON lines with Debian's python3-jsonschema.
func validateXARF(t *testing.T, lines []byte) (string, error) {
	t.Helper()
	py := "/usr/bin/python3" // Debian's, which has python3-jsonschema (scripts/deps.sh)
	if _, err := exec.LookPath(py); err != nil {
		t.Fatalf("%s is missing: run `make deps` (python3-jsonschema)", py)
	}
	cmd := exec.Command(py, "../testdata/report/xarf-v4/validate.py")
	cmd.Stdin = bytes.NewReader(lines)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
		return string(out), err // invalid reports
	} else if err != nil {
		t.Fatalf("validator did not run: %v\n%s", err, out)
	}
	return string(out), nil
}

// TestXARFOfficialSchema validates every report, including hosts whose
// families and sensors carry dots, spaces, slashes and non-ASCII, against
// the official schema with a real JSON Schema validator.
func TestXARFOfficialSchema(t *testing.T) {
	rows, _, _ := scenarioRows(t)
	rows[0].Families = append(rows[0].Families, "W32.Blaster.Worm", "Ünïcode worm/2", ".leading", "c++", "---")
	rows[0].Sensors = []string{"ns1.isp.example", "Sensor A", "_x"}
	rows[1].Families = []string{strings.Repeat("Long.Family ", 30)}
	var buf bytes.Buffer
	if err := WriteXARF(&buf, rows, Reporter{Org: "Example ISP", Contact: "abuse@isp.example", Domain: "isp.example"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"sensor:ns1-isp-example"`) || !strings.Contains(buf.String(), `"malware:w32-blaster-worm"`) {
		t.Errorf("dotted names not mapped into the tag alphabet:\n%s", buf.String())
	}
	if out, err := validateXARF(t, buf.Bytes()); err != nil {
		t.Fatalf("reports fail the official X-ARF v4 schema:\n%s\n%s", out, buf.String())
	}
	// The validator is not a rubber stamp: the old dotted tags fail it.
	bad := strings.Replace(buf.String(), `"sensor:ns1-isp-example"`, `"sensor:ns1.isp.example"`, 1)
	if out, err := validateXARF(t, []byte(bad)); err == nil || !strings.Contains(out, "sensor:ns1.isp.example") {
		t.Fatalf("a dotted tag passed the schema: %v\n%s", err, out)
	}
}

func TestTagValue(t *testing.T) {
	for in, want := range map[string]string{
		"W32.Blaster": "w32-blaster", "ns1.isp.example": "ns1-isp-example", "Sensor A": "sensor-a",
		".x": "x", "a..b": "a-b", "c++": "c++", "Ünï": "n", "---": "", "a_b-c": "a_b-c",
	} {
		if got := tagValue(in); got != want {
			t.Errorf("tagValue(%q) = %q, want %q", in, got, want)
		}
		if got := tagValue(in); got != "" && !xarfTag.MatchString("x:"+got) {
			t.Errorf("tagValue(%q) = %q breaks the pattern", in, got)
		}
	}
}
