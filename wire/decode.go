package wire

import (
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// decoder holds one preallocated instance of every layer the matcher
// understands and one DecodingLayerParser per starting layer, all sharing
// those instances: decoding a frame allocates nothing.
type decoder struct {
	eth     layers.Ethernet
	dot1q   layers.Dot1Q
	sll     layers.LinuxSLL
	sll2    layers.LinuxSLL2
	lo      layers.Loopback
	ip4     layers.IPv4
	ip6     layers.IPv6
	ip6ext  layers.IPv6ExtensionSkipper
	ip6frag layers.IPv6Fragment
	udp     layers.UDP
	tcp     layers.TCP
	icmp4   layers.ICMPv4
	icmp6   layers.ICMPv6

	fromEth, fromSLL, fromSLL2, fromLoop, fromIP4, fromIP6 *gopacket.DecodingLayerParser
	fromUDP, fromTCP, fromICMP4, fromICMP6                 *gopacket.DecodingLayerParser

	decoded []gopacket.LayerType
}

func newDecoder() *decoder {
	d := &decoder{decoded: make([]gopacket.LayerType, 0, 16)}
	all := []gopacket.DecodingLayer{&d.eth, &d.dot1q, &d.sll, &d.sll2, &d.lo, &d.ip4, &d.ip6,
		&d.ip6ext, &d.ip6frag, &d.udp, &d.tcp, &d.icmp4, &d.icmp6}
	mk := func(first gopacket.LayerType) *gopacket.DecodingLayerParser {
		p := gopacket.NewDecodingLayerParser(first)
		// A sparse array indexed by layer type beats the default map.
		p.SetDecodingLayerContainer(gopacket.DecodingLayerSparse(nil))
		for _, l := range all {
			p.AddDecodingLayer(l)
		}
		// Stop quietly at layers we do not decode (ARP, DNS, VXLAN...): the
		// layers below them are what we match on.
		p.IgnoreUnsupported = true
		return p
	}
	d.fromEth = mk(layers.LayerTypeEthernet)
	d.fromSLL = mk(layers.LayerTypeLinuxSLL)
	d.fromSLL2 = mk(layers.LayerTypeLinuxSLL2)
	d.fromLoop = mk(layers.LayerTypeLoopback)
	d.fromIP4 = mk(layers.LayerTypeIPv4)
	d.fromIP6 = mk(layers.LayerTypeIPv6)
	d.fromUDP = mk(layers.LayerTypeUDP)
	d.fromTCP = mk(layers.LayerTypeTCP)
	d.fromICMP4 = mk(layers.LayerTypeICMPv4)
	d.fromICMP6 = mk(layers.LayerTypeICMPv6)
	return d
}

// first picks the parser for a frame of link type lt; nil when the link
// type is not one we decode.
func (d *decoder) first(lt layers.LinkType, data []byte) *gopacket.DecodingLayerParser {
	switch lt {
	case layers.LinkTypeEthernet:
		return d.fromEth
	case layers.LinkTypeLinuxSLL:
		return d.fromSLL
	case layers.LinkTypeLinuxSLL2:
		return d.fromSLL2
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		return d.fromLoop
	case layers.LinkTypeIPv4:
		return d.fromIP4
	case layers.LinkTypeIPv6:
		return d.fromIP6
	case layers.LinkTypeRaw, linkTypeRawDLT, linkTypeRawOpenBSD:
		// Raw IP: the version nibble says which.
		if len(data) > 0 && data[0]>>4 == 6 {
			return d.fromIP6
		}
		return d.fromIP4
	}
	return nil
}

// transport picks the parser for a reassembled datagram's payload.
func (d *decoder) transport(first gopacket.LayerType) *gopacket.DecodingLayerParser {
	switch first {
	case layers.LayerTypeUDP:
		return d.fromUDP
	case layers.LayerTypeTCP:
		return d.fromTCP
	case layers.LayerTypeICMPv4:
		return d.fromICMP4
	}
	return d.fromICMP6
}
