package vhdx

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"strings"
)

// Sizes and fixed offsets of MS-VHDX version 1 (section 2.1).
const (
	kib = 1 << 10
	mib = 1 << 20

	fileIDOffset       = 0
	header1Offset      = 64 * kib
	header2Offset      = 128 * kib
	regionTable1Offset = 192 * kib
	regionTable2Offset = 256 * kib
	headerSectionSize  = 1 * mib

	headerSize        = 4 * kib
	regionTableSize   = 64 * kib
	metadataTableSize = 64 * kib

	maxRegionEntries   = 2047
	maxMetadataEntries = 2047
	maxMetadataItem    = 1 * mib

	minBlockSize = 1 * mib
	maxBlockSize = 256 * mib
	// maxVirtualSize is the largest disk MS-VHDX allows (64 TiB).
	maxVirtualSize = 64 << 40

	// The chunk ratio is 2^23 sectors per sector-bitmap block (2.2.2).
	sectorsPerBitmapBlock = 1 << 23
)

// Signatures (little-endian ASCII on disk).
var (
	sigFileID   = []byte("vhdxfile")
	sigHeader   = []byte("head")
	sigRegion   = []byte("regi")
	sigMetadata = []byte("metadata")
)

// Payload BAT entry states (2.5.1.1) and sector bitmap states (2.5.1.2).
const (
	payloadNotPresent       = 0
	payloadUndefined        = 1
	payloadZero             = 2
	payloadUnmapped         = 3
	payloadFullyPresent     = 6
	payloadPartiallyPresent = 7

	sbNotPresent = 0
	sbPresent    = 6

	batStateMask    = 0x7
	batReservedMask = 0xFFFF8 // bits 3..19
	batOffsetMask   = ^uint64(0xFFFFF)
)

// Metadata entry flags (2.6.1.2), in the 32-bit word after Length.
const (
	metaIsUser        = 1 << 0
	metaIsVirtualDisk = 1 << 1
	metaIsRequired    = 1 << 2
)

// File parameter flags (2.6.2.1).
const (
	paramLeaveBlocksAllocated = 1 << 0
	paramHasParent            = 1 << 1
)

// GUID is a GUID in its on-disk MS-VHDX layout: Data1, Data2 and Data3
// little-endian, Data4 as bytes.
type GUID [16]byte

// mustGUID parses the canonical text form; for the spec's constants.
func mustGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// ParseGUID parses "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (braces allowed).
func ParseGUID(s string) (GUID, error) {
	var g GUID
	t := strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	if len(t) != 36 || t[8] != '-' || t[13] != '-' || t[18] != '-' || t[23] != '-' {
		return g, fmt.Errorf("GUID %q: want the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", s)
	}
	b, err := hex.DecodeString(t[0:8] + t[9:13] + t[14:18] + t[19:23] + t[24:])
	if err != nil {
		return g, fmt.Errorf("GUID %q: %w", s, err)
	}
	return guidFromRFC([16]byte(b)), nil
}

// guidFromRFC converts a big-endian (RFC 4122 byte order) UUID to the
// on-disk layout.
func guidFromRFC(b [16]byte) GUID {
	var g GUID
	g[0], g[1], g[2], g[3] = b[3], b[2], b[1], b[0]
	g[4], g[5] = b[5], b[4]
	g[6], g[7] = b[7], b[6]
	copy(g[8:], b[8:])
	return g
}

func (g GUID) String() string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(g[0:4]), binary.LittleEndian.Uint16(g[4:6]),
		binary.LittleEndian.Uint16(g[6:8]), g[8:10], g[10:16])
}

// IsZero reports whether g is the all-zero GUID.
func (g GUID) IsZero() bool { return g == GUID{} }

// MarshalText makes GUIDs print in text form in JSON reports.
func (g GUID) MarshalText() ([]byte, error) { return []byte(g.String()), nil }

// UnmarshalText parses the text form.
func (g *GUID) UnmarshalText(b []byte) error {
	p, err := ParseGUID(string(b))
	if err != nil {
		return err
	}
	*g = p
	return nil
}

// Region and metadata item GUIDs (2.2.3.2, 2.6.2).
var (
	regionBAT      = mustGUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
	regionMetadata = mustGUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")

	itemFileParameters     = mustGUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
	itemVirtualDiskSize    = mustGUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
	itemPage83Data         = mustGUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
	itemLogicalSectorSize  = mustGUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
	itemPhysicalSectorSize = mustGUID("CDA348C7-445D-4471-9CC9-E9885251C556")
	itemParentLocator      = mustGUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
)

// knownItem describes a system metadata item: its size and the flags
// MS-VHDX 2.6.2 prescribes (Hyper-V refuses a disk whose flags differ).
type knownItem struct {
	name  string
	size  uint32
	flags uint32
}

var knownItems = map[GUID]knownItem{
	itemFileParameters:     {"File Parameters", 8, metaIsRequired},
	itemVirtualDiskSize:    {"Virtual Disk Size", 8, metaIsVirtualDisk | metaIsRequired},
	itemPage83Data:         {"Page 83 Data", 16, metaIsVirtualDisk | metaIsRequired},
	itemLogicalSectorSize:  {"Logical Sector Size", 4, metaIsVirtualDisk | metaIsRequired},
	itemPhysicalSectorSize: {"Physical Sector Size", 4, metaIsVirtualDisk | metaIsRequired},
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum is CRC-32C over buf with the 4-byte checksum field at off
// taken as zero (2.2.2.1), without modifying buf.
func checksum(buf []byte, off int) uint32 {
	var zero [4]byte
	c := crc32.Update(0, castagnoli, buf[:off])
	c = crc32.Update(c, castagnoli, zero[:])
	return crc32.Update(c, castagnoli, buf[off+4:])
}

// chunkRatio is the number of payload blocks per sector bitmap block.
func chunkRatio(logicalSector, blockSize uint32) uint64 {
	return uint64(sectorsPerBitmapBlock) * uint64(logicalSector) / uint64(blockSize)
}

// batEntries is the BAT size of a dynamic or fixed disk (2.5): one entry per
// payload block plus one sector bitmap entry after every full chunk.
func batEntries(virtualSize uint64, blockSize uint32, ratio uint64) uint64 {
	blocks := (virtualSize + uint64(blockSize) - 1) / uint64(blockSize)
	if blocks == 0 {
		return 0
	}
	return blocks + (blocks-1)/ratio
}

// batIndex is the BAT position of payload block n.
func batIndex(n, ratio uint64) uint64 { return n + n/ratio }

func roundUp(n, to uint64) uint64 { return (n + to - 1) / to * to }

// header is the VHDX header structure (2.2.2).
type header struct {
	Sequence      uint64
	FileWriteGUID GUID
	DataWriteGUID GUID
	LogGUID       GUID
	LogVersion    uint16
	Version       uint16
	LogLength     uint32
	LogOffset     uint64
}

func (h *header) marshal() []byte {
	b := make([]byte, headerSize)
	copy(b[0:4], sigHeader)
	binary.LittleEndian.PutUint64(b[8:], h.Sequence)
	copy(b[16:32], h.FileWriteGUID[:])
	copy(b[32:48], h.DataWriteGUID[:])
	copy(b[48:64], h.LogGUID[:])
	binary.LittleEndian.PutUint16(b[64:], h.LogVersion)
	binary.LittleEndian.PutUint16(b[66:], h.Version)
	binary.LittleEndian.PutUint32(b[68:], h.LogLength)
	binary.LittleEndian.PutUint64(b[72:], h.LogOffset)
	binary.LittleEndian.PutUint32(b[4:], checksum(b, 4))
	return b
}

func unmarshalHeader(b []byte) header {
	var h header
	h.Sequence = binary.LittleEndian.Uint64(b[8:])
	copy(h.FileWriteGUID[:], b[16:32])
	copy(h.DataWriteGUID[:], b[32:48])
	copy(h.LogGUID[:], b[48:64])
	h.LogVersion = binary.LittleEndian.Uint16(b[64:])
	h.Version = binary.LittleEndian.Uint16(b[66:])
	h.LogLength = binary.LittleEndian.Uint32(b[68:])
	h.LogOffset = binary.LittleEndian.Uint64(b[72:])
	return h
}

// regionEntry is one region table entry (2.2.3.2).
type regionEntry struct {
	GUID     GUID
	Offset   uint64
	Length   uint32
	Required bool
}

func marshalRegionTable(entries []regionEntry) []byte {
	b := make([]byte, regionTableSize)
	copy(b[0:4], sigRegion)
	binary.LittleEndian.PutUint32(b[8:], uint32(len(entries)))
	for i, e := range entries {
		p := b[16+32*i:]
		copy(p[0:16], e.GUID[:])
		binary.LittleEndian.PutUint64(p[16:], e.Offset)
		binary.LittleEndian.PutUint32(p[24:], e.Length)
		if e.Required {
			binary.LittleEndian.PutUint32(p[28:], 1)
		}
	}
	binary.LittleEndian.PutUint32(b[4:], checksum(b, 4))
	return b
}

// metadataEntry is one metadata table entry (2.6.1.2); Offset is relative
// to the start of the metadata region.
type metadataEntry struct {
	ItemID GUID
	Offset uint32
	Length uint32
	Flags  uint32
}

func marshalMetadataTable(entries []metadataEntry) []byte {
	b := make([]byte, metadataTableSize)
	copy(b[0:8], sigMetadata)
	binary.LittleEndian.PutUint16(b[10:], uint16(len(entries)))
	for i, e := range entries {
		p := b[32+32*i:]
		copy(p[0:16], e.ItemID[:])
		binary.LittleEndian.PutUint32(p[16:], e.Offset)
		binary.LittleEndian.PutUint32(p[20:], e.Length)
		binary.LittleEndian.PutUint32(p[24:], e.Flags)
	}
	return b
}
