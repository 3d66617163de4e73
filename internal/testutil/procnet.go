package testutil

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
)

// UDPSocket is one IPv4 UDP socket as /proc/net/udp shows it: what the
// flood tests read to see whether a server keeps up (its receive queue)
// and whether the kernel dropped datagrams for it.
type UDPSocket struct {
	Local, Remote netip.AddrPort // Remote is 0.0.0.0:0 for an unconnected socket
	RxQueue       int64          // bytes waiting to be read
	Drops         int64
}

// UDPSockets reads the machine's IPv4 UDP sockets (of the calling
// thread's network namespace: see Do) from /proc/thread-self/net/udp.
func UDPSockets() ([]UDPSocket, error) {
	f, err := os.Open("/proc/thread-self/net/udp")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var socks []UDPSocket
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 13 {
			continue
		}
		local, ok1 := procAddr(fs[1])
		remote, ok2 := procAddr(fs[2])
		_, rx, _ := strings.Cut(fs[4], ":")
		rxq, err1 := strconv.ParseInt(rx, 16, 64)
		drops, err2 := strconv.ParseInt(fs[12], 10, 64)
		if !ok1 || !ok2 || err1 != nil || err2 != nil {
			continue // the header line
		}
		socks = append(socks, UDPSocket{Local: local, Remote: remote, RxQueue: rxq, Drops: drops})
	}
	return socks, sc.Err()
}

// procAddr parses /proc/net's "0100007F:0045": the address as the kernel
// holds it (little-endian on the machines this runs on), the port in hex.
func procAddr(s string) (netip.AddrPort, bool) {
	a, p, ok := strings.Cut(s, ":")
	raw, err := hex.DecodeString(a)
	port, perr := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil || perr != nil || len(raw) != 4 {
		return netip.AddrPort{}, false
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], binary.LittleEndian.Uint32(raw))
	return netip.AddrPortFrom(netip.AddrFrom4(b), uint16(port)), true
}

// ownsPort reports whether the program (or a process it started) holds
// a TCP or UDP socket bound to its port, read from /proc: a readiness
// check alone cannot tell its server from another test's that took the
// port first (pdns_recursor exits on EADDRINUSE, and the check then asked
// the other server). The tables are the program's own namespace's
// (/proc/PID/net), whatever namespace a thread of the test is in.
func (p *Proc) ownsPort() bool {
	inodes := portSockets(p.Pid(), p.Port)
	for _, pid := range processTree(p.Pid()) {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(dir + "/" + fd.Name()); err == nil && inodes[l] {
				return true
			}
		}
	}
	return false
}

// portSockets are the sockets (as /proc/PID/fd links name them,
// "socket:[INODE]") bound to port on any local address, TCP or UDP, IPv4
// or IPv6, in the network namespace of process pid.
func portSockets(pid, port int) map[string]bool {
	inodes := map[string]bool{}
	hexPort := fmt.Sprintf("%04X", port)
	for _, table := range []string{"tcp", "tcp6", "udp", "udp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			// local_address is HEXADDR:HEXPORT; the inode is field 10.
			if i := strings.LastIndexByte(f[1], ':'); i >= 0 && f[1][i+1:] == hexPort {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
	}
	return inodes
}

// processTree is pid and its descendants, from /proc/*/stat.
func processTree(pid int) []int {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var child int
		if _, err := fmt.Sscanf(e.Name(), "%d", &child); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		st := string(b)
		if i := strings.LastIndexByte(st, ')'); i >= 0 {
			var state string
			var ppid int
			if _, err := fmt.Sscanf(st[i+1:], " %s %d", &state, &ppid); err == nil {
				parent[child] = ppid
			}
		}
	}
	tree := []int{pid}
	for added := true; added; {
		added = false
		for c, pp := range parent {
			if slices.Contains(tree, pp) && !slices.Contains(tree, c) {
				tree = append(tree, c)
				added = true
			}
		}
	}
	return tree
}
