package wire

import (
	"encoding/binary"

	"github.com/gopacket/gopacket/layers"

	"wormsink/internal/tftp"
	"wormsink/signatures"
)

// quiet reports, from the raw bytes of an Ethernet frame, that decoding it
// would find an untagged IPv4 (no options, not a fragment) or IPv6 (no
// extension header) TCP or UDP datagram that decodes cleanly and that no
// rule of set can use: TCP with neither port one a TCP payload rule looks
// at (so its handshake is not followed either), or UDP not to the TFTP port
// (unless anyPort) nor to a port a UDP payload rule looks at, nor looking
// like a TFTP server's DATA or OACK. Matching such
// a frame only counts it, and most of a mirror port's frames are such
// frames: the matcher counts them without gopacket decoding them. Any
// doubt answers false and the frame is decoded; FuzzQuiet checks every
// frame it answers true for against the full decode.
func quiet(set *signatures.Set, anyPort bool, frame []byte) bool {
	if len(frame) < 14+20 {
		return false
	}
	var proto byte
	var seg []byte
	switch layers.EthernetType(binary.BigEndian.Uint16(frame[12:14])) {
	case layers.EthernetTypeIPv4:
		ip := frame[14:]
		if ip[0]&0x0f != 5 {
			return false // options, which may not decode
		}
		if binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 {
			return false // a fragment (MF or an offset): reassembly's
		}
		n := int(binary.BigEndian.Uint16(ip[2:4]))
		switch {
		case n == 0: // TSO: the frame says
			n = len(ip)
		case n < 20:
			return false // a decode error
		}
		proto, seg = ip[9], ip[20:min(n, len(ip))]
	case layers.EthernetTypeIPv6:
		ip := frame[14:]
		if len(ip) < 40 {
			return false
		}
		n := int(binary.BigEndian.Uint16(ip[4:6]))
		if n == 0 {
			return false // a decode error (or a jumbogram, which needs hop-by-hop)
		}
		proto, seg = ip[6], ip[40:min(40+n, len(ip))]
	default:
		return false
	}
	switch layers.IPProtocol(proto) {
	case layers.IPProtocolTCP:
		if len(seg) < 20 {
			return false
		}
		if off := int(seg[12] >> 4); off < 5 || off*4 > len(seg) {
			return false
		}
		sport, dport := binary.BigEndian.Uint16(seg[0:2]), binary.BigEndian.Uint16(seg[2:4])
		return !set.PayloadPort(signatures.TCP, sport) && !set.PayloadPort(signatures.TCP, dport)
	case layers.IPProtocolUDP:
		if len(seg) < 8 || anyPort {
			return false
		}
		if n := binary.BigEndian.Uint16(seg[4:6]); n != 0 && n < 8 {
			return false // a decode error
		}
		dport := binary.BigEndian.Uint16(seg[2:4])
		// A TFTP server's DATA or OACK goes to the requester's port, any
		// port: it is decoded, in case it serves a worm request.
		if len(seg) >= 12 && seg[8] == 0 && (seg[9] == tftp.OpData || seg[9] == tftp.OpOACK) {
			return false
		}
		return dport != TFTPPort && !set.PayloadPort(signatures.UDP, dport)
	}
	return false
}
