package testutil

import (
	"fmt"
	"time"

	"github.com/miekg/dns"
)

// The configurations below run each resolver unprivileged in the
// foreground on one 127.0.0.1 port, IPv4 only, with its files in one
// directory and no control channel; the test adds what it is about
// (forwarders, an RPZ zone, dnstap, local data).

// UnboundConf is an unbound.conf: the common server: lines, then server
// (more server: lines, each indented by two spaces and ending in a
// newline), then rest (further clauses: rpz:, forward-zone:, dnstap:).
func UnboundConf(port int, dir, server, rest string) string {
	return fmt.Sprintf(`server:
  interface: 127.0.0.1
  port: %d
  do-ip6: no
  do-daemonize: no
  chroot: ""
  username: ""
  directory: %q
  pidfile: ""
  use-syslog: no
  logfile: ""
  access-control: 127.0.0.0/8 allow
%s%sremote-control:
  control-enable: no
`, port, dir, server, rest)
}

// UnboundArgs are unbound's arguments for the configuration file conf.
func UnboundArgs(conf string) []string { return []string{"-d", "-c", conf} }

// NamedConf is a named.conf: the common options, then options (more
// statements inside options { }, each ending in ';'), then rest (zones,
// keys). SERVFAILs are not cached (servfail-ttl 0), for the reason
// PDNSRecursorConf gives.
func NamedConf(port int, dir, options, rest string) string {
	return fmt.Sprintf(`options {
	directory %[1]q;
	pid-file none;
	session-keyfile none;
	managed-keys-directory %[1]q;
	listen-on port %[2]d { 127.0.0.1; };
	listen-on-v6 { none; };
	dnssec-validation no;
	servfail-ttl 0;
%[3]s};
controls { };
%[4]s`, dir, port, options, rest)
}

// NamedArgs are named's arguments for conf: foreground, IPv4, one worker,
// logging to stderr.
func NamedArgs(conf string) []string { return []string{"-g", "-4", "-n", "1", "-c", conf} }

// KresdConf is a Knot Resolver configuration: the listener and a cache in
// dir, no DNSSEC trust anchor, then body (Lua: policies, forwarding).
func KresdConf(port int, dir, body string) string {
	return fmt.Sprintf(`net.listen('127.0.0.1', %d, { kind = 'dns' })
trust_anchors.remove('.')
cache.open(10 * MB, 'lmdb://%s/cache')
%s`, port, dir, body)
}

// KresdArgs are kresd's arguments for conf, with dir as its run directory.
func KresdArgs(conf, dir string) []string { return []string{"-n", "-c", conf, dir} }

// PDNSRecursorConf is a PowerDNS Recursor recursor.conf (old-style
// settings) for a config directory dir, then extra settings (one a line).
// SERVFAILs are not kept in the packet cache (the default keeps them 60 s):
// a test that asks again after a resolver gave up on a slow authority on a
// loaded machine must get a fresh try, not the cached failure.
func PDNSRecursorConf(port int, dir, extra string) string {
	return fmt.Sprintf(`local-address=127.0.0.1
local-port=%d
allow-from=127.0.0.0/8
dont-query=
dnssec=off
socket-dir=%s
daemon=no
write-pid=no
threads=1
pdns-distributes-queries=no
security-poll-suffix=
disable-syslog=yes
packetcache-servfail-ttl=0
%s`, port, dir, extra)
}

// PDNSRecursorArgs are pdns_recursor's arguments for a config directory
// holding recursor.conf.
func PDNSRecursorArgs(dir string) []string { return []string{"--config-dir=" + dir} }

// Exchange asks server (host:port) one question over UDP.
func Exchange(server, name string, qtype uint16) (*dns.Msg, error) {
	c := &dns.Client{Timeout: 500 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := c.Exchange(m, server)
	return r, err
}

// AnswersA is a Daemon.Ready: the server answers an A question for name
// with at least one record.
func AnswersA(name string) func(addr string) error {
	return func(addr string) error {
		r, err := Exchange(addr, name, dns.TypeA)
		if err != nil {
			return err
		}
		if len(r.Answer) == 0 {
			return fmt.Errorf("%s A: %s, no answer", name, dns.RcodeToString[r.Rcode])
		}
		return nil
	}
}

// AnswersRcode is a Daemon.Ready: the server answers an A question for
// name with rcode (a policy zone loaded answers NXDOMAIN for its names).
func AnswersRcode(name string, rcode int) func(addr string) error {
	return func(addr string) error {
		r, err := Exchange(addr, name, dns.TypeA)
		if err != nil {
			return err
		}
		if r.Rcode != rcode {
			return fmt.Errorf("%s A: %s, want %s", name, dns.RcodeToString[r.Rcode], dns.RcodeToString[rcode])
		}
		return nil
	}
}
