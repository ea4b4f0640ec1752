package vmdk

import (
	"encoding/binary"
	"fmt"
)

// On-disk constants of sparse extents (VMware Virtual Disk Format 5.0).
const (
	SectorSize   = 512
	GrainSectors = 128 // 64 KiB grains, what VMware's tools write
	GrainSize    = GrainSectors * SectorSize
	GTEsPerGT    = 512 // grain table entries per table: 2 KiB = 4 sectors
	gtSectors    = GTEsPerGT * 4 / SectorSize

	magic        = 0x564d444b // "KDMV" on disk
	version3     = 3          // version 3 = streamOptimized (compressed grains)
	descOffset   = 1
	descSectors  = 20  // room VMware and qemu reserve for the embedded descriptor
	overheadSect = 128 // first grain starts at 64 KiB, as ovftool and qemu do

	flagValidNewline = 1 << 0
	flagCompressed   = 1 << 16
	flagMarkers      = 1 << 17

	compressDeflate = 1
	gdAtEnd         = ^uint64(0)

	markerEOS    = 0
	markerGT     = 1
	markerGD     = 2
	markerFooter = 3

	grainMarkerLen = 12 // uint64 LBA + uint32 compressed size
)

// header is the sparse extent header (512 bytes on disk, little endian).
type header struct {
	Magic          uint32
	Version        uint32
	Flags          uint32
	Capacity       uint64 // sectors
	GrainSize      uint64 // sectors
	DescOffset     uint64
	DescSize       uint64
	NumGTEsPerGT   uint32
	RGDOffset      uint64
	GDOffset       uint64
	Overhead       uint64
	UncleanShutdwn uint8
	SingleEndLine  uint8
	NonEndLine     uint8
	DoubleEndLine1 uint8
	DoubleEndLine2 uint8
	CompressAlgo   uint16
}

func newHeader(capacitySectors uint64) header {
	return header{
		Magic:          magic,
		Version:        version3,
		Flags:          flagValidNewline | flagCompressed | flagMarkers,
		Capacity:       capacitySectors,
		GrainSize:      GrainSectors,
		DescOffset:     descOffset,
		DescSize:       descSectors,
		NumGTEsPerGT:   GTEsPerGT,
		GDOffset:       gdAtEnd,
		Overhead:       overheadSect,
		SingleEndLine:  '\n',
		NonEndLine:     ' ',
		DoubleEndLine1: '\r',
		DoubleEndLine2: '\n',
		CompressAlgo:   compressDeflate,
	}
}

func (h *header) marshal() []byte {
	b := make([]byte, SectorSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], h.Magic)
	le.PutUint32(b[4:], h.Version)
	le.PutUint32(b[8:], h.Flags)
	le.PutUint64(b[12:], h.Capacity)
	le.PutUint64(b[20:], h.GrainSize)
	le.PutUint64(b[28:], h.DescOffset)
	le.PutUint64(b[36:], h.DescSize)
	le.PutUint32(b[44:], h.NumGTEsPerGT)
	le.PutUint64(b[48:], h.RGDOffset)
	le.PutUint64(b[56:], h.GDOffset)
	le.PutUint64(b[64:], h.Overhead)
	b[72] = h.UncleanShutdwn
	b[73] = h.SingleEndLine
	b[74] = h.NonEndLine
	b[75] = h.DoubleEndLine1
	b[76] = h.DoubleEndLine2
	le.PutUint16(b[77:], h.CompressAlgo)
	return b
}

func parseHeader(b []byte) (header, error) {
	if len(b) < 79 {
		return header{}, fmt.Errorf("header is %d bytes, want %d", len(b), SectorSize)
	}
	le := binary.LittleEndian
	h := header{
		Magic:          le.Uint32(b[0:]),
		Version:        le.Uint32(b[4:]),
		Flags:          le.Uint32(b[8:]),
		Capacity:       le.Uint64(b[12:]),
		GrainSize:      le.Uint64(b[20:]),
		DescOffset:     le.Uint64(b[28:]),
		DescSize:       le.Uint64(b[36:]),
		NumGTEsPerGT:   le.Uint32(b[44:]),
		RGDOffset:      le.Uint64(b[48:]),
		GDOffset:       le.Uint64(b[56:]),
		Overhead:       le.Uint64(b[64:]),
		UncleanShutdwn: b[72],
		SingleEndLine:  b[73],
		NonEndLine:     b[74],
		DoubleEndLine1: b[75],
		DoubleEndLine2: b[76],
		CompressAlgo:   le.Uint16(b[77:]),
	}
	if h.Magic != magic {
		return h, fmt.Errorf("magic %#08x, want %#08x (\"KDMV\")", h.Magic, magic)
	}
	return h, nil
}

// metaMarker returns a 512-byte metadata marker: numSectors of metadata of
// the given type follow it (size 0 tells it apart from a grain marker).
func metaMarker(numSectors uint64, typ uint32) []byte {
	b := make([]byte, SectorSize)
	binary.LittleEndian.PutUint64(b[0:], numSectors)
	binary.LittleEndian.PutUint32(b[12:], typ)
	return b
}

// Geometry returns the legacy CHS geometry recorded in the descriptor, the
// way VMware computes it for SCSI disks: 255 heads, 63 sectors per track.
func Geometry(capacitySectors uint64) (cylinders, heads, sectors uint64) {
	heads, sectors = 255, 63
	cylinders = capacitySectors / (heads * sectors)
	if cylinders > 65535 {
		cylinders = 65535
	}
	if cylinders == 0 {
		cylinders = 1
	}
	return cylinders, heads, sectors
}

func ceilDiv(a, b uint64) uint64 { return (a + b - 1) / b }
