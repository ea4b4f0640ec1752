package vhdx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"unicode/utf16"
)

// FormatError says which structure of a VHDX file is damaged and how.
type FormatError struct {
	Structure string // e.g. "header 2", "region table", "BAT entry 17"
	Problem   string
}

func (e *FormatError) Error() string { return e.Structure + ": " + e.Problem }

func bad(structure, format string, args ...any) error {
	return &FormatError{Structure: structure, Problem: fmt.Sprintf(format, args...)}
}

// Report is what Inspect found in a valid VHDX.
type Report struct {
	Path     string `json:"path,omitempty"`
	FileSize int64  `json:"file_size"`
	Creator  string `json:"creator"`
	// CurrentHeader is 1 or 2: the valid header with the higher sequence.
	CurrentHeader int            `json:"current_header"`
	Headers       [2]HeaderInfo  `json:"headers"`
	Regions       []RegionInfo   `json:"regions"`
	Metadata      []MetadataInfo `json:"metadata"`

	VirtualSize          uint64 `json:"virtual_size"`
	BlockSize            uint32 `json:"block_size"`
	LogicalSectorSize    uint32 `json:"logical_sector_size"`
	PhysicalSectorSize   uint32 `json:"physical_sector_size"`
	DiskID               GUID   `json:"disk_id"` // Page 83 data
	LeaveBlocksAllocated bool   `json:"leave_blocks_allocated"`
	HasParent            bool   `json:"has_parent"`

	BAT BATInfo `json:"bat"`
}

// HeaderInfo is one of the two headers.
type HeaderInfo struct {
	Sequence      uint64 `json:"sequence"`
	FileWriteGUID GUID   `json:"file_write_guid"`
	DataWriteGUID GUID   `json:"data_write_guid"`
	LogGUID       GUID   `json:"log_guid"`
	Version       uint16 `json:"version"`
	LogVersion    uint16 `json:"log_version"`
	LogOffset     uint64 `json:"log_offset"`
	LogLength     uint32 `json:"log_length"`
}

// RegionInfo is one region table entry.
type RegionInfo struct {
	Name     string `json:"name"`
	GUID     GUID   `json:"guid"`
	Offset   uint64 `json:"offset"`
	Length   uint32 `json:"length"`
	Required bool   `json:"required"`
}

// MetadataInfo is one metadata table entry.
type MetadataInfo struct {
	Name          string `json:"name"`
	ItemID        GUID   `json:"item_id"`
	Offset        uint32 `json:"offset"`
	Length        uint32 `json:"length"`
	IsUser        bool   `json:"is_user"`
	IsVirtualDisk bool   `json:"is_virtual_disk"`
	IsRequired    bool   `json:"is_required"`
}

// BATInfo counts the BAT entries by state.
type BATInfo struct {
	Entries        uint64 `json:"entries"`
	ChunkRatio     uint64 `json:"chunk_ratio"`
	PayloadBlocks  uint64 `json:"payload_blocks"`
	FullyPresent   uint64 `json:"fully_present"`
	Zero           uint64 `json:"zero"`
	NotPresent     uint64 `json:"not_present"`
	Undefined      uint64 `json:"undefined"`
	Unmapped       uint64 `json:"unmapped"`
	AllocatedBytes uint64 `json:"allocated_bytes"`
}

// Inspect opens the VHDX at path and validates it; the error names the
// damaged structure (errors.As gives a *FormatError).
func Inspect(path string) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("vhdx: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("vhdx: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("vhdx: %s: not a regular file", path)
	}
	r, err := InspectReader(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("vhdx: %s: %w", path, err)
	}
	r.Path = path
	return r, nil
}

// InspectReader validates the VHDX of the given size read through r.
func InspectReader(r io.ReaderAt, size int64) (*Report, error) {
	in := &inspector{r: r, size: size, rep: &Report{FileSize: size}}
	if err := in.run(); err != nil {
		return nil, err
	}
	return in.rep, nil
}

type span struct {
	name     string
	off, end uint64
}

type inspector struct {
	r    io.ReaderAt
	size int64
	rep  *Report

	used   []span // header section, log, regions: what payload must not overlap
	batOff uint64
	batLen uint64
	metOff uint64
	metLen uint64
}

// read returns n bytes at off or a FormatError naming the structure when
// the file ends before them.
func (in *inspector) read(structure string, off uint64, n int) ([]byte, error) {
	if off > uint64(in.size) || uint64(n) > uint64(in.size)-off {
		return nil, bad(structure, "file ends at %d, before the %d bytes at offset %d (truncated?)", in.size, n, off)
	}
	b := make([]byte, n)
	if _, err := in.r.ReadAt(b, int64(off)); err != nil && !(errors.Is(err, io.EOF) && len(b) == n) {
		return nil, fmt.Errorf("%s: reading %d bytes at %d: %w", structure, n, off, err)
	}
	return b, nil
}

func (in *inspector) run() error {
	if in.size < headerSectionSize {
		return bad("file type identifier", "file is %d bytes, smaller than the 1 MiB header section (truncated or not a VHDX)", in.size)
	}
	if err := in.fileID(); err != nil {
		return err
	}
	if err := in.headers(); err != nil {
		return err
	}
	if err := in.regions(); err != nil {
		return err
	}
	if err := in.metadata(); err != nil {
		return err
	}
	return in.bat()
}

func (in *inspector) fileID() error {
	b, err := in.read("file type identifier", fileIDOffset, 8+512)
	if err != nil {
		return err
	}
	if !bytes.Equal(b[:8], sigFileID) {
		return bad("file type identifier", "signature %q, want %q (not a VHDX file)", b[:8], sigFileID)
	}
	u := make([]uint16, 0, 256)
	for i := 8; i < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	in.rep.Creator = string(utf16.Decode(u))
	return nil
}

func (in *inspector) headers() error {
	var hs [2]header
	var raw [2][]byte
	for i, off := range []uint64{header1Offset, header2Offset} {
		name := fmt.Sprintf("header %d", i+1)
		b, err := in.read(name, off, headerSize)
		if err != nil {
			return err
		}
		if !bytes.Equal(b[:4], sigHeader) {
			return bad(name, "signature %q, want %q", b[:4], sigHeader)
		}
		if got, want := binary.LittleEndian.Uint32(b[4:]), checksum(b, 4); got != want {
			return bad(name, "checksum mismatch: stored %#08x, computed %#08x", got, want)
		}
		h := unmarshalHeader(b)
		switch {
		case h.Version != 1:
			return bad(name, "version %d, want 1", h.Version)
		case h.LogVersion != 0:
			return bad(name, "log version %d, want 0", h.LogVersion)
		case h.LogOffset < mib || h.LogOffset%mib != 0:
			return bad(name, "log offset %d: want a multiple of 1 MiB, at least 1 MiB", h.LogOffset)
		case h.LogLength%mib != 0:
			return bad(name, "log length %d: want a multiple of 1 MiB", h.LogLength)
		case h.LogOffset+uint64(h.LogLength) > uint64(in.size):
			return bad(name, "log region [%d, %d) extends beyond end of file (%d bytes)", h.LogOffset, h.LogOffset+uint64(h.LogLength), in.size)
		case !h.LogGUID.IsZero():
			return bad(name, "log is not empty (LogGuid %s): the file was not closed cleanly; replay it in Hyper-V or with qemu-img check -r all", h.LogGUID)
		}
		hs[i], raw[i] = h, b
		in.rep.Headers[i] = HeaderInfo{
			Sequence: h.Sequence, FileWriteGUID: h.FileWriteGUID, DataWriteGUID: h.DataWriteGUID,
			LogGUID: h.LogGUID, Version: h.Version, LogVersion: h.LogVersion,
			LogOffset: h.LogOffset, LogLength: h.LogLength,
		}
	}
	switch {
	case hs[0].Sequence > hs[1].Sequence:
		in.rep.CurrentHeader = 1
	case hs[1].Sequence > hs[0].Sequence:
		in.rep.CurrentHeader = 2
	case bytes.Equal(raw[0], raw[1]):
		in.rep.CurrentHeader = 1
	default:
		return bad("headers", "both have sequence number %d but differ: cannot tell which is current", hs[0].Sequence)
	}
	cur := hs[in.rep.CurrentHeader-1]
	in.used = append(in.used, span{"header section", 0, headerSectionSize})
	if cur.LogLength > 0 {
		in.used = append(in.used, span{"log", cur.LogOffset, cur.LogOffset + uint64(cur.LogLength)})
	}
	return nil
}

func regionName(g GUID) string {
	switch g {
	case regionBAT:
		return "BAT"
	case regionMetadata:
		return "metadata"
	}
	return "unknown"
}

func (in *inspector) regions() error {
	var tables [2][]byte
	for i, off := range []uint64{regionTable1Offset, regionTable2Offset} {
		name := fmt.Sprintf("region table %d", i+1)
		b, err := in.read(name, off, regionTableSize)
		if err != nil {
			return err
		}
		if !bytes.Equal(b[:4], sigRegion) {
			return bad(name, "signature %q, want %q", b[:4], sigRegion)
		}
		if got, want := binary.LittleEndian.Uint32(b[4:]), checksum(b, 4); got != want {
			return bad(name, "checksum mismatch: stored %#08x, computed %#08x", got, want)
		}
		tables[i] = b
	}
	if !bytes.Equal(tables[0], tables[1]) {
		return bad("region table 2", "differs from region table 1")
	}
	b := tables[0]
	const name = "region table"
	n := binary.LittleEndian.Uint32(b[8:])
	if n > maxRegionEntries {
		return bad(name, "%d entries, at most %d allowed", n, maxRegionEntries)
	}
	if rsv := binary.LittleEndian.Uint32(b[12:]); rsv != 0 {
		return bad(name, "reserved field is %#x, want 0", rsv)
	}
	var haveBAT, haveMeta bool
	for i := range int(n) {
		p := b[16+32*i:]
		var e regionEntry
		copy(e.GUID[:], p[:16])
		e.Offset = binary.LittleEndian.Uint64(p[16:])
		e.Length = binary.LittleEndian.Uint32(p[24:])
		e.Required = binary.LittleEndian.Uint32(p[28:])&1 != 0
		rn := regionName(e.GUID)
		ename := fmt.Sprintf("region table: entry %d (%s region %s)", i, rn, e.GUID)
		if rn == "unknown" && e.Required {
			return bad(ename, "unknown region marked required: this reader cannot use the file")
		}
		switch {
		case e.Offset < mib || e.Offset%mib != 0:
			return bad(ename, "offset %d: want a multiple of 1 MiB, at least 1 MiB", e.Offset)
		case e.Length == 0 || e.Length%mib != 0:
			return bad(ename, "length %d: want a non-zero multiple of 1 MiB", e.Length)
		case e.Offset > uint64(in.size) || uint64(e.Length) > uint64(in.size)-e.Offset:
			return bad(ename, "region [%d, %d) extends beyond end of file (%d bytes)", e.Offset, e.Offset+uint64(e.Length), in.size)
		}
		end := e.Offset + uint64(e.Length)
		for _, u := range in.used {
			if e.Offset < u.end && u.off < end {
				return bad(ename, "region [%d, %d) overlaps the %s [%d, %d)", e.Offset, end, u.name, u.off, u.end)
			}
		}
		switch rn {
		case "BAT":
			if haveBAT {
				return bad(ename, "second BAT entry")
			}
			haveBAT, in.batOff, in.batLen = true, e.Offset, uint64(e.Length)
		case "metadata":
			if haveMeta {
				return bad(ename, "second metadata entry")
			}
			haveMeta, in.metOff, in.metLen = true, e.Offset, uint64(e.Length)
		}
		in.used = append(in.used, span{rn + " region", e.Offset, end})
		in.rep.Regions = append(in.rep.Regions, RegionInfo{Name: rn, GUID: e.GUID, Offset: e.Offset, Length: e.Length, Required: e.Required})
	}
	if !haveBAT {
		return bad(name, "BAT entry missing")
	}
	if !haveMeta {
		return bad(name, "metadata entry missing")
	}
	return nil
}

// placeItem checks where a metadata entry's item lies: after the table,
// inside the region, overlapping no other item. An empty item has no span.
func (in *inspector) placeItem(ename string, e metadataEntry, items []span) (*span, error) {
	if e.Length == 0 {
		if e.Offset != 0 {
			return nil, bad(ename, "length 0 but offset %d, want 0", e.Offset)
		}
		return nil, nil
	}
	end := uint64(e.Offset) + uint64(e.Length)
	switch {
	case e.Offset < metadataTableSize:
		return nil, bad(ename, "offset %d lies inside the 64 KiB metadata table", e.Offset)
	case e.Length > maxMetadataItem:
		return nil, bad(ename, "length %d, more than 1 MiB", e.Length)
	case end > in.metLen:
		return nil, bad(ename, "item [%d, %d) extends beyond the metadata region (%d bytes)", e.Offset, end, in.metLen)
	}
	for _, s := range items {
		if uint64(e.Offset) < s.end && s.off < end {
			return nil, bad(ename, "item [%d, %d) overlaps %s [%d, %d)", e.Offset, end, s.name, s.off, s.end)
		}
	}
	return &span{ename, uint64(e.Offset), end}, nil
}

func (in *inspector) metadata() error {
	const name = "metadata table"
	b, err := in.read(name, in.metOff, metadataTableSize)
	if err != nil {
		return err
	}
	if !bytes.Equal(b[:8], sigMetadata) {
		return bad(name, "signature %q, want %q", b[:8], sigMetadata)
	}
	n := binary.LittleEndian.Uint16(b[10:])
	if n > maxMetadataEntries {
		return bad(name, "%d entries, at most %d allowed", n, maxMetadataEntries)
	}
	values := map[GUID][]byte{}
	var items []span
	for i := range int(n) {
		p := b[32+32*i:]
		var e metadataEntry
		copy(e.ItemID[:], p[:16])
		e.Offset = binary.LittleEndian.Uint32(p[16:])
		e.Length = binary.LittleEndian.Uint32(p[20:])
		e.Flags = binary.LittleEndian.Uint32(p[24:])
		known, isKnown := knownItems[e.ItemID]
		iname := "unknown"
		if isKnown {
			iname = known.name
		} else if e.ItemID == itemParentLocator {
			iname = "Parent Locator"
		}
		ename := fmt.Sprintf("metadata entry %d (%s item %s)", i, iname, e.ItemID)
		if e.Flags&^uint32(metaIsUser|metaIsVirtualDisk|metaIsRequired) != 0 {
			return bad(ename, "reserved flag bits set: %#x", e.Flags)
		}
		if rsv := binary.LittleEndian.Uint32(p[28:]); rsv != 0 {
			return bad(ename, "reserved field is %#x, want 0", rsv)
		}
		sp, err := in.placeItem(ename, e, items)
		if err != nil {
			return err
		}
		if sp != nil {
			items = append(items, *sp)
		}
		if _, dup := values[e.ItemID]; dup {
			return bad(ename, "item appears twice")
		}
		if !isKnown && e.Flags&metaIsUser == 0 && e.ItemID == itemParentLocator {
			return bad(ename, "differencing disks (parent locator) are not supported")
		}
		if !isKnown && e.Flags&metaIsRequired != 0 {
			return bad(ename, "unknown item marked required: this reader cannot use the file")
		}
		in.rep.Metadata = append(in.rep.Metadata, MetadataInfo{
			Name: iname, ItemID: e.ItemID, Offset: e.Offset, Length: e.Length,
			IsUser: e.Flags&metaIsUser != 0, IsVirtualDisk: e.Flags&metaIsVirtualDisk != 0, IsRequired: e.Flags&metaIsRequired != 0,
		})
		if !isKnown {
			values[e.ItemID] = nil
			continue
		}
		if e.Flags != known.flags {
			return bad(ename, "flags %s, want %s", flagString(e.Flags), flagString(known.flags))
		}
		if e.Length != known.size {
			return bad(ename, "length %d, want %d", e.Length, known.size)
		}
		v, err := in.read(ename, in.metOff+uint64(e.Offset), int(e.Length))
		if err != nil {
			return err
		}
		values[e.ItemID] = v
	}
	for _, id := range []GUID{itemFileParameters, itemVirtualDiskSize, itemPage83Data, itemLogicalSectorSize, itemPhysicalSectorSize} {
		if values[id] == nil {
			return bad("metadata", "required %s item missing", knownItems[id].name)
		}
	}
	return in.decodeMetadata(values)
}

// decodeMetadata takes the disk's parameters from the required items and
// checks them.
func (in *inspector) decodeMetadata(values map[GUID][]byte) error {
	r := in.rep
	fp := values[itemFileParameters]
	r.BlockSize = binary.LittleEndian.Uint32(fp)
	pflags := binary.LittleEndian.Uint32(fp[4:])
	r.LeaveBlocksAllocated = pflags&paramLeaveBlocksAllocated != 0
	r.HasParent = pflags&paramHasParent != 0
	r.VirtualSize = binary.LittleEndian.Uint64(values[itemVirtualDiskSize])
	copy(r.DiskID[:], values[itemPage83Data])
	r.LogicalSectorSize = binary.LittleEndian.Uint32(values[itemLogicalSectorSize])
	r.PhysicalSectorSize = binary.LittleEndian.Uint32(values[itemPhysicalSectorSize])
	switch {
	case r.BlockSize < minBlockSize || r.BlockSize > maxBlockSize || r.BlockSize&(r.BlockSize-1) != 0:
		return bad("metadata: File Parameters", "block size %d: want a power of two from 1 MiB to 256 MiB", r.BlockSize)
	case pflags&^uint32(paramLeaveBlocksAllocated|paramHasParent) != 0:
		return bad("metadata: File Parameters", "reserved flag bits set: %#x", pflags)
	case r.HasParent:
		return bad("metadata: File Parameters", "HasParent is set: differencing disks are not supported")
	case r.LogicalSectorSize != 512 && r.LogicalSectorSize != 4096:
		return bad("metadata: Logical Sector Size", "%d, want 512 or 4096", r.LogicalSectorSize)
	case r.PhysicalSectorSize != 512 && r.PhysicalSectorSize != 4096:
		return bad("metadata: Physical Sector Size", "%d, want 512 or 4096", r.PhysicalSectorSize)
	case r.VirtualSize == 0 || r.VirtualSize > maxVirtualSize || r.VirtualSize%uint64(r.LogicalSectorSize) != 0:
		return bad("metadata: Virtual Disk Size", "%d: want a non-zero multiple of the %d-byte logical sector, at most 64 TiB", r.VirtualSize, r.LogicalSectorSize)
	}
	return nil
}

func flagString(f uint32) string {
	return fmt.Sprintf("IsUser=%d IsVirtualDisk=%d IsRequired=%d", f&metaIsUser, f&metaIsVirtualDisk>>1, f&metaIsRequired>>2)
}

// batChunk is how much of the BAT is read at a time: the BAT of a 64 TiB
// disk is 512 MiB and is never held whole.
const batChunk = 1 * mib

type placed struct{ off, entry uint64 }

func (in *inspector) bat() error {
	r := in.rep
	ratio := chunkRatio(r.LogicalSectorSize, r.BlockSize)
	n := batEntries(r.VirtualSize, r.BlockSize, ratio)
	r.BAT.Entries, r.BAT.ChunkRatio = n, ratio
	if n*8 > in.batLen {
		return bad("region table: BAT region", "%d bytes, too small for the %d entries a %d-byte disk with %d-byte blocks needs", in.batLen, n, r.VirtualSize, r.BlockSize)
	}
	bs := uint64(r.BlockSize)
	// A valid file cannot hold more distinct blocks than fit in it; this
	// bounds the memory for the overlap check on hostile input.
	maxBlocks := uint64(in.size) / bs
	var present []placed
	buf := make([]byte, batChunk)
	for base := uint64(0); base < n; base += batChunk / 8 {
		cnt := min(n-base, batChunk/8)
		chunk := buf[:cnt*8]
		if _, err := in.r.ReadAt(chunk, int64(in.batOff+base*8)); err != nil && !(errors.Is(err, io.EOF)) {
			return fmt.Errorf("BAT: reading at %d: %w", in.batOff+base*8, err)
		}
		for k := range cnt {
			i := base + k
			e := binary.LittleEndian.Uint64(chunk[8*k:])
			state := e & batStateMask
			if (i+1)%(ratio+1) == 0 {
				if state != sbNotPresent {
					return bad(fmt.Sprintf("BAT entry %d", i), "sector bitmap entry in state %d, want SB_BLOCK_NOT_PRESENT (0) in a disk without parent", state)
				}
				continue
			}
			name := fmt.Sprintf("BAT entry %d", i)
			if e&batReservedMask != 0 {
				return bad(name, "reserved bits set: %#x", e&batReservedMask)
			}
			r.BAT.PayloadBlocks++
			switch state {
			case payloadNotPresent:
				r.BAT.NotPresent++
			case payloadUndefined:
				r.BAT.Undefined++
			case payloadZero:
				r.BAT.Zero++
			case payloadUnmapped:
				r.BAT.Unmapped++
			case payloadPartiallyPresent:
				return bad(name, "PAYLOAD_BLOCK_PARTIALLY_PRESENT in a disk without parent")
			case payloadFullyPresent:
				off := e & batOffsetMask
				end := off + bs
				if off >= uint64(in.size) || end > uint64(in.size) {
					return bad(name, "block [%d, %d) offset beyond end of file (%d bytes)", off, end, in.size)
				}
				for _, u := range in.used {
					if off < u.end && u.off < end {
						return bad(name, "block [%d, %d) overlaps the %s [%d, %d)", off, end, u.name, u.off, u.end)
					}
				}
				if uint64(len(present)) >= maxBlocks {
					return bad(name, "more present blocks than the file can hold: blocks overlap")
				}
				present = append(present, placed{off, i})
				r.BAT.FullyPresent++
				r.BAT.AllocatedBytes += bs
			default:
				return bad(name, "reserved state %d", state)
			}
		}
	}
	slices.SortFunc(present, func(a, b placed) int {
		switch {
		case a.off < b.off:
			return -1
		case a.off > b.off:
			return 1
		}
		return 0
	})
	for k := 1; k < len(present); k++ {
		if present[k-1].off+bs > present[k].off {
			a, b := present[k-1], present[k]
			if a.entry > b.entry {
				a, b = b, a
			}
			return bad(fmt.Sprintf("BAT entry %d", b.entry), "block at %d overlaps the block of BAT entry %d at %d", b.off, a.entry, a.off)
		}
	}
	return nil
}
