package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Run as nobody without capabilities, serve says what is missing, in one
// line with status 1: CAP_NET_BIND_SERVICE for port 53, CAP_NET_RAW for a
// capture, and "no such interface" for an interface that does not exist
// (instead of "permission denied" or "socket 0: operation not permitted"
// for all three).
func TestPermissionErrorsNameWhatIsMissing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: it runs serve as nobody through setpriv")
	}
	bin := wormsinkBinary(t)
	setpriv := needTool(t, "setpriv")
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"port 53", []string{"--dns-listen", "127.0.0.1:53", "--upstream", "192.0.2.53", "--sinkhole-ip", "192.0.2.1"},
			[]string{"wormsink: serve: dns: listen udp 127.0.0.1:53: bind: permission denied", "CAP_NET_BIND_SERVICE", "1024"}},
		{"tftp port 69", []string{"--dns-listen", "", "--tftp-listen", "127.0.0.1:69"},
			[]string{"wormsink: serve: ", "permission denied", "CAP_NET_BIND_SERVICE"}},
		{"capture", []string{"--dns-listen", "", "--capture", "lo"},
			[]string{"wormsink: serve: capture: lo: ", "operation not permitted", "needs CAP_NET_RAW"}},
		{"missing interface", []string{"--dns-listen", "", "--capture", "wsnone0"},
			[]string{"wormsink: serve: capture: wsnone0: no such interface"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
				bin, "serve", "--tftp-listen", "", "--log", "/dev/null", "--user", ""}, tc.args...)
			out, err := exec.Command(setpriv, args...).CombinedOutput()
			msg := strings.TrimSpace(string(out))
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitFailure || strings.Contains(msg, "\n") {
				t.Fatalf("exit %v, output %q; want status 1 and one line", err, msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q does not say %q", msg, w)
				}
			}
		})
	}
}

// A listen address whose port is not a number is a usage error (status 2)
// at once, not a failure to bind later (status 1).
func TestListenPortIsUsage(t *testing.T) {
	for _, flag := range []string{"--metrics-listen", "--dns-listen", "--tftp-listen", "--rpz-listen"} {
		code, _, errs := runCmd(t, "", "serve", "--dns-listen", "", "--tftp-listen", "127.0.0.1:0", "--log", os.DevNull, "--user", "",
			flag, "127.0.0.1:9153x")
		if code != exitUsage || !strings.HasPrefix(errs, "wormsink: serve: "+flag+`: "127.0.0.1:9153x": port "9153x" is not a number`) {
			t.Errorf("%s 127.0.0.1:9153x: status %d, %q; want 2 and the port named", flag, code, errs)
		}
	}
}
