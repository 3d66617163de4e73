package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wormsink/internal/evidencetest"
)

func evidenceLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	lines, err := evidencetest.Lines([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

func TestScanCommand(t *testing.T) {
	code, out, errOut := runCmd(t, "", "scan", "--sensor", "s1", "../../testdata/pcap/real/tftp-hpa-msblast.pcap", "../../testdata/pcap/crafted/legit-tftp.pcap")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := evidenceLines(t, out)
	if len(lines) != 3 {
		t.Fatalf("%d lines: %s", len(lines), out)
	}
	// The third line is the server's own: its first DATA (packet 2) to the
	// requester's port, from the port it serves from. That packet makes it
	// strong; the request's line for it is weak.
	if l := lines[2]; l["role"] != "server" || l["evidence"] != "strong" || l["packet"] != 2.0 || l["port"] == 69.0 || l["dst_port"] != lines[0]["port"] {
		t.Errorf("server's own line: %v", l)
	}
	lines = lines[:2]
	roles := map[string]bool{}
	for _, l := range lines {
		roles[l["role"].(string)] = true
		evidence := "strong"
		if l["role"] == "server" {
			evidence = "weak"
		}
		for k, want := range map[string]any{"event": "wire_match", "signature": "blaster", "family": "Blaster", "evidence": evidence,
			"file": "msblast.exe", "mode": "octet", "op": "read", "proto": "udp", "packet": 1.0,
			"pcap": "../../testdata/pcap/real/tftp-hpa-msblast.pcap", "sensor": "s1", "host": "127.0.0.1", "peer": "127.0.0.1"} {
			if l[k] != want {
				t.Errorf("%s = %v, want %v", k, l[k], want)
			}
		}
	}
	// dst_port is the port at the peer: 69 for the requester, the
	// requester's own port for the server.
	for _, l := range lines {
		want := 69.0
		if l["role"] == "server" {
			want = lines[0]["port"].(float64) + lines[1]["port"].(float64) - 69
		}
		if l["dst_port"] != want {
			t.Errorf("%s dst_port = %v, want %v", l["role"], l["dst_port"], want)
		}
	}
	// The packet's capture time, not the scan's: the file is older than now.
	for _, l := range lines {
		ts, err := time.Parse("2006-01-02T15:04:05.000Z", l["time"].(string))
		if err != nil || time.Since(ts) < time.Minute {
			t.Errorf("time %v (%v): not the capture time", l["time"], err)
		}
	}
	if !roles["requester"] || !roles["server"] {
		t.Errorf("roles %v", roles)
	}
	for _, want := range []string{"2 files", "33 packets", "1 matches", "3 events", "1 hosts", "packets/s"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("summary %q lacks %q", errOut, want)
		}
	}
}

func TestScanAnyPortAndSignatures(t *testing.T) {
	sig := filepath.Join(t.TempDir(), "s.yaml")
	if err := os.WriteFile(sig, []byte("serial: 3\nsignatures:\n  - id: pxe\n    family: PXE\n    tftp_files: [pxelinux.0]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, "", "scan", "--signatures", sig, "../../testdata/pcap/crafted/legit-tftp.pcap")
	if code != exitOK || len(evidenceLines(t, out)) != 2 || !strings.Contains(out, `"signature":"pxe"`) {
		t.Fatalf("exit %d out %s err %s", code, out, errOut)
	}
	_, out, _ = runCmd(t, "", "scan", "../../testdata/pcap/crafted/any-port.pcap")
	if out != "" {
		t.Fatalf("without --any-port: %s", out)
	}
	_, out, _ = runCmd(t, "", "scan", "--any-port", "../../testdata/pcap/crafted/any-port.pcap")
	if len(evidenceLines(t, out)) != 2 || !strings.Contains(out, `"dst_port":6969`) {
		t.Fatalf("with --any-port: %s", out)
	}
}

func TestScanErrors(t *testing.T) {
	data, err := os.ReadFile("../../testdata/pcap/real/tftp-hpa-msblast.pcap")
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.pcap")
	if err := os.WriteFile(cut, data[:len(data)-10], 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, "", "scan", cut)
	if code != exitFailure {
		t.Fatalf("exit %d", code)
	}
	// What was read before the cut is still reported: the request's two
	// lines and the server's own, from its first DATA.
	if len(evidenceLines(t, out)) != 3 || !strings.Contains(errOut, cut+": packet 27: truncated") || !strings.Contains(errOut, "26 packets") {
		t.Fatalf("out %s err %s", out, errOut)
	}
	if code, _, errOut := runCmd(t, "", "scan", "/nonexistent.pcap"); code != exitFailure || !strings.Contains(errOut, "/nonexistent.pcap") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if code, _, _ := runCmd(t, "", "scan"); code != exitUsage {
		t.Fatalf("no file: exit %d", code)
	}
	if code, _, _ := runCmd(t, "", "scan", "--bogus", "x"); code != exitUsage {
		t.Fatalf("bad flag: exit %d", code)
	}
	if code, out, _ := runCmd(t, "", "scan", "--help"); code != exitOK || !strings.Contains(out, "-any-port") {
		t.Fatalf("help: exit %d %s", code, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("serial: x\n"), 0o644)
	if code, _, errOut := runCmd(t, "", "scan", "--signatures", bad, cut); code != exitFailure || !strings.Contains(errOut, "bad.yaml") {
		t.Fatalf("bad signatures: exit %d %s", code, errOut)
	}
}

// A TFTP request on the wire is one UDP datagram: proof datagram, unless
// its sender is inside --trusted-sources. A bad network is a usage error.
func TestScanTrustedSources(t *testing.T) {
	pcap := "../../testdata/pcap/crafted/vlan-msblast.pcap"
	_, out, _ := runCmd(t, "", "scan", pcap)
	plain := evidenceLines(t, out)
	_, out, _ = runCmd(t, "", "scan", "--trusted-sources", "10.0.0.0/29, 2001:db8::/64", pcap)
	trusted := evidenceLines(t, out)
	if len(plain) == 0 || len(plain) != len(trusted) {
		t.Fatalf("%d and %d lines", len(plain), len(trusted))
	}
	for i := range plain {
		if plain[i]["proof"] != "datagram" {
			t.Errorf("without --trusted-sources: %v", plain[i])
		}
		want := "datagram"
		if h := plain[i]["host"].(string); h == "10.0.0.5" {
			want = "trusted-source"
		}
		if trusted[i]["proof"] != want {
			t.Errorf("host %v: proof %v, want %s", trusted[i]["host"], trusted[i]["proof"], want)
		}
	}
	if code, _, errOut := runCmd(t, "", "scan", "--trusted-sources", "10.0.0.0/33", pcap); code != exitUsage || !strings.Contains(errOut, "10.0.0.0/33") {
		t.Errorf("bad network: exit %d, %q", code, errOut)
	}
}

// `scan -` reads the capture from standard input, as `report -` reads a log.
func TestScanStdin(t *testing.T) {
	data, err := os.ReadFile("../../testdata/pcap/real/tftp-hpa-msblast.pcap")
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, string(data), "scan", "-")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := evidenceLines(t, out)
	if len(lines) != 3 || lines[0]["pcap"] != "stdin" || lines[0]["signature"] != "blaster" {
		t.Fatalf("scan -: %s", out)
	}
}

// TestScanWorkersSameOutput: scan on several workers writes byte for byte
// what one worker writes, and the same summary but for the timing, over
// every capture in testdata at once (pcap, pcapng, gzip, fragments,
// malformed, a truncated one).
func TestScanWorkersSameOutput(t *testing.T) {
	var files []string
	for _, dir := range []string{"crafted", "real", "public"} {
		paths, _ := filepath.Glob(filepath.Join("../../testdata/pcap", dir, "*.pcap*"))
		files = append(files, paths...)
	}
	// A cut-off copy: the error and what came before it must agree too.
	data, err := os.ReadFile("../../testdata/pcap/real/legit-pxe-router.pcap")
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.pcap")
	if err := os.WriteFile(cut, data[:len(data)*2/3], 0o644); err != nil {
		t.Fatal(err)
	}
	files = append(files, cut)
	summary := func(s string) string { s, _, _ = strings.Cut(s, " in "); return s }
	code1, out1, err1 := runCmd(t, "", append([]string{"scan", "--sensor", "s", "--workers", "1"}, files...)...)
	if code1 != exitFailure || !strings.Contains(err1, "truncated") || len(evidenceLines(t, out1)) < 20 {
		t.Fatalf("one worker: exit %d, %d lines, %s", code1, len(evidenceLines(t, out1)), err1)
	}
	for _, n := range []string{"2", "4"} {
		code, out, errOut := runCmd(t, "", append([]string{"scan", "--sensor", "s", "--workers", n}, files...)...)
		if code != code1 || out != out1 || summary(errOut) != summary(err1) {
			t.Errorf("%s workers: exit %d (want %d), output equal: %v\nsummary %q\nwant    %q", n, code, code1, out == out1, errOut, err1)
		}
	}
}

// TestScanLoaderSplitAcrossSegments: scan reads loader lines cut into TCP
// segments (a byte a segment and seen twice, cut inside a name, inside
// "tftp -i", inside %20) as the whole lines: one line per command, the
// listed ones strong, the unlisted fetch weak; one worker and three agree.
func TestScanLoaderSplitAcrossSegments(t *testing.T) {
	const pcap = "../../testdata/pcap/crafted/loader-split.pcap"
	want := map[string]int{
		"10.0.0.9 mirai.tftp-loader strong":       2,
		"10.0.0.9 gafgyt.tftp-loader strong":      1,
		"10.0.0.9 blaster strong":                 1,
		"192.0.2.7 iot.tftp-dropper.generic weak": 1,
	}
	var first string
	for _, workers := range []string{"1", "3"} {
		code, out, errOut := runCmd(t, "", "scan", "--sensor", "s", "--workers", workers, pcap)
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		got := map[string]int{}
		for _, l := range evidenceLines(t, out) {
			got[fmt.Sprintf("%v %v %v", l["host"], l["signature"], l["evidence"])]++
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s workers: %v, want %v", workers, got, want)
		}
		if !strings.Contains(errOut, "joined to their stream") {
			t.Errorf("summary without the stream counters: %s", errOut)
		}
		if first == "" {
			first = out
		} else if out != first {
			t.Errorf("%s workers: output differs from one worker's", workers)
		}
	}
}
