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
// command lines and the forms forks and HTTP exploits send them in) as
// strong evidence, and nothing of it fires on the legitimate boot,
// provisioning, firmware and web traffic, where an administrator's typed
// "tftp -g -r firmware.bin" is only the weak generic rule.
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
	// The command lines: each packet evidence for one signature, strong
	// where the fetched name is a loader's, weak where nobody lists it.
	cmds := scanAll(t, "../testdata/pcap/crafted/loader-commands.pcap")
	const mirai, gafgyt, generic = "mirai.tftp-loader", "gafgyt.tftp-loader", "iot.tftp-dropper.generic"
	want := map[int]string{1: mirai, 2: mirai, 3: gafgyt, 4: gafgyt, 5: gafgyt, 6: gafgyt,
		7: mirai, 8: mirai, 9: mirai, 10: mirai, 11: gafgyt, 12: gafgyt, 13: mirai, 14: mirai, 15: mirai,
		16: generic, 17: gafgyt, 18: generic}
	got := map[int]string{}
	for _, ev := range cmds {
		n := int(ev.Packet)
		if _, dup := got[n]; dup {
			t.Errorf("loader-commands #%d: more than one event: %s", n, short(ev))
		}
		got[n] = ev.Sig
		strength := signatures.Strong
		if ev.Sig == generic {
			strength = signatures.Weak
		}
		if want[n] != ev.Sig || ev.Evidence != strength || ev.Role != "source" || ev.Host.String() != "10.0.0.9" {
			t.Errorf("loader-commands #%d: %s (%s), want %s", n, short(ev), ev.Evidence, want[n])
		}
	}
	for n, sig := range want {
		if got[n] == "" {
			t.Errorf("loader-commands #%d: missed, want %s", n, sig)
		}
	}

	// Web and telnet traffic that names loader files or the tftp client
	// outside a fetch command: no evidence at all.
	for _, ev := range scanAll(t, "../testdata/pcap/crafted/legit-web.pcap") {
		t.Errorf("legit-web: %s (%s)", short(ev), ev.Evidence)
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
