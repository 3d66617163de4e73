package wire

import (
	"context"
	"strings"
	"testing"

	"wormsink/evidence"
	"wormsink/internal/evidencetest"
	"wormsink/signatures"
)

// loaderFamilies are the built-in set's TFTP loader signatures.
var loaderFamilies = map[string]bool{"mirai.tftp-loader": true, "gafgyt.tftp-loader": true}

func scanAll(t *testing.T, path string) []evidence.Event {
	t.Helper()
	var rec evidencetest.Recorder
	m := NewMatcher(StaticSet{signatures.Default()}, &rec, Options{})
	if _, err := m.ScanFile(context.Background(), path); err != nil {
		t.Fatalf("scan %s: %v", path, err)
	}
	return rec.Events()
}

// TestLoaderFamily: the built-in loader family finds every request and
// command line of the loader captures (crafted after the published
// command lines) as strong evidence, and nothing of it fires on the
// legitimate boot, provisioning and firmware traffic, where an
// administrator's typed "tftp -g -r" is only the weak generic rule.
func TestLoaderFamily(t *testing.T) {
	tftp := scanAll(t, "../testdata/pcap/crafted/loader-tftp.pcap")
	// Two lines (requester, server) per request, every request matched.
	if len(tftp) != 16 {
		t.Errorf("loader-tftp: %d events, want 16:\n%v", len(tftp), tftp)
	}
	for _, ev := range tftp {
		// The server a request names is weak: the request is not its packet.
		if !loaderFamilies[ev.Sig] || (ev.Evidence != signatures.Strong) != ev.Named {
			t.Errorf("loader-tftp: %s (%s)", short(ev), ev.Evidence)
		}
	}
	// Real clients: busybox 1.35 and tftp-hpa running the loaders' lines.
	real := scanAll(t, "../testdata/pcap/real/busybox-mirai-gafgyt-loader.pcap")
	var sigs []string
	for _, ev := range real {
		if (ev.Evidence != signatures.Strong) != ev.Named {
			t.Errorf("real loader: %s (%s)", short(ev), ev.Evidence)
		}
		role := ev.Role
		if ev.Role == evidence.RoleServer && !ev.Named {
			role = "serving" // the server's own DATA
		}
		sigs = append(sigs, ev.Sig+"/"+role+"/"+ev.File)
	}
	if want := "mirai.tftp-loader/requester/mirai.arm7 mirai.tftp-loader/server/mirai.arm7 mirai.tftp-loader/serving/mirai.arm7 " +
		"gafgyt.tftp-loader/requester/tftp1.sh gafgyt.tftp-loader/server/tftp1.sh gafgyt.tftp-loader/serving/tftp1.sh " +
		"gafgyt.tftp-loader/requester/tftp2.sh gafgyt.tftp-loader/server/tftp2.sh gafgyt.tftp-loader/serving/tftp2.sh"; strings.Join(sigs, " ") != want {
		t.Errorf("real loader capture: %s\nwant %s", strings.Join(sigs, " "), want)
	}
	cmds := scanAll(t, "../testdata/pcap/crafted/loader-commands.pcap")
	want := map[int]string{1: "mirai.tftp-loader", 2: "mirai.tftp-loader", 3: "gafgyt.tftp-loader", 4: "gafgyt.tftp-loader", 5: "gafgyt.tftp-loader", 6: "gafgyt.tftp-loader"}
	if len(cmds) != len(want) {
		t.Errorf("loader-commands: %d events, want %d:\n%v", len(cmds), len(want), cmds)
	}
	for _, ev := range cmds {
		if want[int(ev.Packet)] != ev.Sig || ev.Evidence != signatures.Strong || ev.Role != "source" || ev.Host.String() != "10.0.0.9" {
			t.Errorf("loader-commands: %s (%s)", short(ev), ev.Evidence)
		}
	}

	legit := scanAll(t, "../testdata/pcap/crafted/legit-boot.pcap")
	var weak []string
	for _, ev := range legit {
		switch {
		case ev.Sig == "iot.tftp-dropper.generic" && ev.Evidence == signatures.Weak:
			weak = append(weak, short(ev))
		default:
			t.Errorf("legit-boot: %s (%s)", short(ev), ev.Evidence)
		}
	}
	if len(weak) != 1 || !strings.Contains(weak[0], "tcp/23") {
		t.Errorf("legit-boot: weak generic events %v, want the one typed tftp -g -r", weak)
	}
	for _, f := range []string{"real/legit-pxe-router.pcap", "crafted/legit-tftp.pcap", "public/spicy-tftp-tftp_rrq.pcap", "public/spicy-tftp-tftp_wrq.pcap"} {
		for _, ev := range scanAll(t, "../testdata/pcap/"+f) {
			if loaderFamilies[ev.Sig] {
				t.Errorf("%s: %s", f, short(ev))
			}
		}
	}
}
