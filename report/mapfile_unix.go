//go:build unix

package report

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// mapping is a file mapped read-only into memory.
type mapping struct {
	data   []byte
	let    int  // the bytes before this are let go (see done)
	mapped bool // data is mapped (tests read memory as if it were)
}

// mapFile maps f if it is a plain (not gzip) regular file of some bytes,
// read from its start; nil means read it instead.
func mapFile(f *os.File) *mapping {
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() < 2 || int64(int(fi.Size())) != fi.Size() {
		return nil
	}
	if off, err := f.Seek(0, io.SeekCurrent); err != nil || off != 0 {
		return nil
	}
	// The magic is read, not touched in the mapping: a fault there would
	// come before the readers are ready for one.
	var magic [2]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil || magic == [2]byte{0x1f, 0x8b} {
		return nil
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil
	}
	return &mapping{data: data, mapped: true}
}

// letGo is how many bytes of read pages done collects at a time.
const letGo = 8 << 20

// done says the bytes before end are read: their pages are unmapped (they
// stay in the page cache), so that the process's resident memory does not
// grow with the log, in steps of letGo (each costs the other cores a TLB
// flush).
func (m *mapping) done(end int) {
	end &^= letGo - 1
	if !m.mapped || end <= m.let {
		return
	}
	unix.Madvise(m.data[m.let:end], unix.MADV_DONTNEED)
	m.let = end
}

func (m *mapping) close() {
	if m.mapped {
		unix.Munmap(m.data)
	}
}
