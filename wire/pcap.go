package wire

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// packetSource is what pcapgo's pcap and pcapng readers share.
type packetSource interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// pcapngMagic is the block type of a pcapng section header.
const pcapngMagic = 0x0A0D0D0A

// ScanFile reads the pcap or pcapng capture at path (gzip-compressed or
// not) through m, naming it path in the evidence. It returns the number
// of packets read; on a truncated or corrupt file the error names the file
// and the packet that could not be read, and every packet before it has
// been matched.
func (m *Matcher) ScanFile(ctx context.Context, path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return m.Scan(ctx, f, path)
}

// Scan reads a pcap or pcapng stream through m; name is recorded as the
// evidence's pcap field and used in errors.
func (m *Matcher) Scan(ctx context.Context, r io.Reader, name string) (uint64, error) {
	src, lt, mixed, err := openCapture(r)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	if !mixed && !Supported(lt) {
		return 0, fmt.Errorf("%s: unsupported link type %d (%v)", name, uint32(lt), lt)
	}
	var n uint64
	for {
		if n&0xfff == 0 {
			if err := ctx.Err(); err != nil {
				return n, fmt.Errorf("%s: stopped after packet %d: %w", name, n, err)
			}
		}
		data, ci, err := src.ZeroCopyReadPacketData()
		if err != nil {
			m.flushStreams(name)
			if err == io.EOF {
				return n, nil
			}
			return n, fmt.Errorf("%s: packet %d: %w", name, n+1, readErr(err))
		}
		n++
		plt := lt
		if mixed && len(ci.AncillaryData) > 0 {
			if l, ok := ci.AncillaryData[0].(layers.LinkType); ok {
				plt = l
			}
		}
		m.Packet(plt, data, Meta{Time: ci.Timestamp, PCAP: name, Packet: n})
	}
}

// readErr says "truncated" for the ways a cut-off file ends.
func readErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("truncated: %w", err)
	}
	return err
}

// openCapture sniffs the format: gzip around either, then the pcapng
// section header or a pcap magic. mixed means each packet names its own
// link type (pcapng with several interfaces).
func openCapture(r io.Reader) (packetSource, layers.LinkType, bool, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(2)
	if err != nil {
		return nil, 0, false, fmt.Errorf("not a capture file: %w", readErr(eofIsShort(err)))
	}
	var in io.Reader = br
	if magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, 0, false, fmt.Errorf("gzip: %w", err)
		}
		in = bufio.NewReaderSize(zr, 64<<10)
	}
	b := in.(*bufio.Reader)
	head, err := b.Peek(4)
	if err != nil {
		return nil, 0, false, fmt.Errorf("not a capture file: %w", readErr(eofIsShort(err)))
	}
	if binary.LittleEndian.Uint32(head) == pcapngMagic {
		ng, err := pcapgo.NewNgReader(b, pcapgo.NgReaderOptions{WantMixedLinkType: true, SkipUnknownVersion: true})
		if err != nil {
			return nil, 0, false, fmt.Errorf("pcapng: %w", readErr(err))
		}
		return ng, ng.LinkType(), true, nil
	}
	pr, err := pcapgo.NewReader(b)
	if err != nil {
		return nil, 0, false, fmt.Errorf("pcap: %w", readErr(eofIsShort(err)))
	}
	return pr, pr.LinkType(), false, nil
}

func eofIsShort(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
