package testutil

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"os"
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

// UDPSockets reads the machine's IPv4 UDP sockets (of this network
// namespace) from /proc/net/udp.
func UDPSockets() ([]UDPSocket, error) {
	f, err := os.Open("/proc/net/udp")
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
