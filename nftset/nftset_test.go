package nftset

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"wormsink/internal/testutil"
)

func TestSyncSet(t *testing.T) {
	testutil.Need(t, "nft")
	ns := testutil.NewNetns(t, "wsnft")
	ns.Run(t, "nft", "add table inet bng; add set inet bng q4 { type ipv4_addr; }; add set inet bng q6 { type ipv6_addr; }; add set inet bng ports { type inet_service; }")
	fd, err := unix.Open("/run/netns/"+string(ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	in := nftables.WithNetNSFd(fd)
	s4, err := New(Target{nftables.TableFamilyINet, "bng", "q4"}, in)
	if err != nil {
		t.Fatal(err)
	}
	s6, err := New(Target{nftables.TableFamilyINet, "bng", "q6"}, in)
	if err != nil {
		t.Fatal(err)
	}
	list := func(set string) string { return ns.Run(t, "nft", "list", "set", "inet", "bng", set) }
	ns.Run(t, "nft", "add element inet bng q4 { 10.7.7.7 }") // by hand: not quarantined
	addrs := []netip.Addr{netip.MustParseAddr("100.64.1.1"), netip.MustParseAddr("::ffff:100.64.1.2"), netip.MustParseAddr("2001:db8::1")}
	for _, s := range []*Syncer{s4, s6} {
		if err := s.Sync(addrs); err != nil {
			t.Fatal(err)
		}
	}
	if l := list("q4"); !strings.Contains(l, "100.64.1.1") || !strings.Contains(l, "100.64.1.2") || strings.Contains(l, "10.7.7.7") || strings.Contains(l, "2001:db8") {
		t.Fatalf("q4 after sync:\n%s", l)
	}
	if l := list("q6"); !strings.Contains(l, "2001:db8::1") || strings.Contains(l, "100.64") {
		t.Fatalf("q6 after sync:\n%s", l)
	}
	// Released: gone.
	if err := s4.Sync(addrs[1:2]); err != nil {
		t.Fatal(err)
	}
	if l := list("q4"); strings.Contains(l, "100.64.1.1") || !strings.Contains(l, "100.64.1.2") {
		t.Fatalf("q4 after a release:\n%s", l)
	}
	if _, err := New(Target{nftables.TableFamilyINet, "bng", "ports"}, in); err == nil || !strings.Contains(err.Error(), "want ipv4_addr") {
		t.Fatalf("a set of ports: %v", err)
	}
	if _, err := New(Target{nftables.TableFamilyINet, "bng", "nope"}, in); err == nil || !strings.Contains(err.Error(), "create it first") {
		t.Fatalf("a missing set: %v", err)
	}
}

func TestParseTarget(t *testing.T) {
	if tg, err := ParseTarget("inet:bng:quarantine"); err != nil || tg.String() != "inet:bng:quarantine" {
		t.Fatalf("%v %v", tg, err)
	}
	for _, bad := range []string{"inet:bng", "arp:t:s", "ip::s", "ip:t:", "ip:t:s;flush ruleset", "ip:t:s:x"} {
		if _, err := ParseTarget(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseTarget(f *testing.F) {
	f.Add("inet:bng:q")
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseTarget(s)
		if err == nil {
			if again, err := ParseTarget(tg.String()); err != nil || again != tg {
				t.Fatalf("%q does not round-trip", s)
			}
		}
	})
}
