package testutil

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Router is a BGP router (BIRD 2 or FRR) a test started in a namespace of
// its own, linked to the test's namespace by a veth: Local is our address
// on the link, Addr the router's, Local6 our IPv6 address (a next hop).
type Router struct {
	NS     Netns
	Local  netip.Addr
	Local6 netip.Addr
	Addr   netip.Addr
	ASN    uint32
	// Show is the router's view of its BGP routes, as text.
	Show func() string
}

// routerLink makes the namespace and the veth: 10.201.N.1 (us) and .2,
// fd00:201:N::1 and ::2.
func routerLink(t testing.TB, prefix string) (Netns, int) {
	n := 1 + (os.Getpid()+len(prefix)*37)%250
	ns := NewNetns(t, prefix)
	host := fmt.Sprintf("%s%d", prefix, os.Getpid()%100000)
	if len(host) > 15 {
		host = host[:15]
	}
	Veth(t, ns, host, "r0",
		[]string{fmt.Sprintf("10.201.%d.1/30", n), fmt.Sprintf("fd00:201:%d::1/64", n)},
		[]string{fmt.Sprintf("10.201.%d.2/30", n), fmt.Sprintf("fd00:201:%d::2/64", n)})
	return ns, n
}

// StartBIRD runs BIRD 2 in a namespace of its own (name prefix), peering
// as AS 65001 with AS peerASN at our end of the link.
func StartBIRD(t testing.TB, prefix string, peerASN uint32) *Router {
	t.Helper()
	bird := Need(t, "bird")
	birdc := Need(t, "birdc")
	ns, n := routerLink(t, prefix)
	r := &Router{NS: ns, ASN: 65001, Local: ip(fmt.Sprintf("10.201.%d.1", n)), Local6: ip(fmt.Sprintf("fd00:201:%d::1", n)), Addr: ip(fmt.Sprintf("10.201.%d.2", n))}
	dir := t.TempDir()
	sock := filepath.Join(dir, "bird.ctl")
	conf := filepath.Join(dir, "bird.conf")
	// BIRD needs the device protocol to know its interfaces, and explicit
	// import and export filters on eBGP channels (RFC 8212).
	os.WriteFile(conf, []byte(fmt.Sprintf(`log "%s/bird.log" all;
router id %s;
protocol device {}
protocol bgp wormsink {
	local %s as %d;
	neighbor %s as %d;
	ipv4 { import all; export none; };
	ipv6 { import all; export none; };
}
`, dir, r.Addr, r.Addr, r.ASN, r.Local, peerASN)), 0o644)
	cmd := ns.Command(bird, "-f", "-c", conf, "-s", sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	r.Show = func() string {
		out, _ := ns.Command(birdc, "-s", sock, "show", "route", "all").CombinedOutput()
		return string(out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := ns.Command(birdc, "-s", sock, "show", "protocols", "all", "wormsink").CombinedOutput()
			log, _ := os.ReadFile(filepath.Join(dir, "bird.log"))
			t.Logf("BIRD protocol:\n%s\nBIRD log:\n%s", out, log)
		}
	})
	// birdc's exit status does not tell a missing socket from an answer:
	// its "ready." greeting does.
	WaitFor(t, 20*time.Second, "BIRD's control socket", func() bool {
		out, _ := ns.Command(birdc, "-s", sock, "show", "status").CombinedOutput()
		return strings.Contains(string(out), "ready.")
	})
	return r
}

// StartFRR runs FRR's bgpd (without zebra) in a namespace of its own, as
// AS 65002 peering with AS peerASN; Show lists its IPv4 and IPv6 routes and
// the details of the prefixes named in detail.
func StartFRR(t testing.TB, prefix string, peerASN uint32, detail ...string) *Router {
	t.Helper()
	bgpd := "/usr/lib/frr/bgpd"
	if _, err := os.Stat(bgpd); err != nil {
		t.Fatal("FRR is not installed: run `make deps` (scripts/deps.sh)")
	}
	vtysh := Need(t, "vtysh")
	ns, n := routerLink(t, prefix)
	r := &Router{NS: ns, ASN: 65002, Local: ip(fmt.Sprintf("10.201.%d.1", n)), Local6: ip(fmt.Sprintf("fd00:201:%d::1", n)), Addr: ip(fmt.Sprintf("10.201.%d.2", n))}
	// bgpd drops to the frr user (root is not in its vty group): its
	// directory must be reachable by that user, which t.TempDir is not.
	dir, err := os.MkdirTemp("", "wsfrr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	conf := filepath.Join(dir, "bgpd.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`frr defaults traditional
hostname wsfrr
router bgp %d
 bgp router-id %s
 no bgp ebgp-requires-policy
 neighbor %s remote-as %d
 address-family ipv6 unicast
  neighbor %s activate
 exit-address-family
`, r.ASN, r.Addr, r.Local, peerASN, r.Local)), 0o644)
	cmd := ns.Command(bgpd, "-f", conf, "-i", filepath.Join(dir, "bgpd.pid"), "--vty_socket", dir, "-Z", "-u", "frr", "-g", "frr", "-l", r.Addr.String(), "-z", filepath.Join(dir, "zserv.api"))
	out := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bgpd output:\n%s", out.String())
		}
	})
	r.Show = func() string {
		var all []byte
		cmds := []string{"show bgp ipv4 unicast", "show bgp ipv6 unicast"}
		for _, d := range detail {
			fam := "ipv4"
			if strings.Contains(d, ":") {
				fam = "ipv6"
			}
			cmds = append(cmds, "show bgp "+fam+" unicast "+d)
		}
		for _, c := range cmds {
			o, _ := ns.Command(vtysh, "--vty_socket", dir, "-c", c).CombinedOutput()
			all = append(all, o...)
		}
		return string(all)
	}
	WaitFor(t, 20*time.Second, "FRR's bgpd vty", func() bool {
		o, _ := ns.Command(vtysh, "--vty_socket", dir, "-c", "show bgp summary").CombinedOutput()
		return strings.Contains(string(o), "BGP router identifier")
	})
	return r
}

// WaitRoutes waits until the router shows every prefix (or, with gone, none
// of them), and shows what it has when it does not.
func (r *Router) WaitRoutes(t testing.TB, gone bool, prefixes ...string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for {
		out := r.Show()
		bad := ""
		for _, pfx := range prefixes {
			if strings.Contains(out, pfx) == gone {
				bad = pfx
			}
		}
		if bad == "" {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("router: %s still %s after 30s; it has:\n%s", bad, map[bool]string{false: "missing", true: "there"}[gone], out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }
