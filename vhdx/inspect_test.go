package vhdx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goodFile is a small valid VHDX from Write: 32 MiB virtual, blocks 0, 1
// and 17 stored (in that order, at dataStart, +1 MiB, +2 MiB).
func goodFile(t testing.TB) []byte {
	t.Helper()
	dir := t.TempDir()
	raw, out := filepath.Join(dir, "d.raw"), filepath.Join(dir, "d.vhdx")
	makeRaw(t, raw, 32*mib, []patch{{0, pattern(2 * mib)}, {17 * mib, pattern(512)}})
	if err := Write(t.Context(), raw, out, Options{Identity: "damage"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const dataStart = batOffset + mib

// Offsets of the metadata items Write packs after the 64 KiB table.
const (
	metaFileParams  = metadataOffset + metadataTableSize
	metaVirtualSize = metaFileParams + 8
)

func le32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
func le64(b []byte, off int, v uint64) { binary.LittleEndian.PutUint64(b[off:], v) }

// fixHeader and fixRegions recompute checksums after a deliberate change,
// so the test reaches the check behind the checksum.
func fixHeader(b []byte, off int) { le32(b, off+4, checksum(b[off:off+headerSize], 4)) }

func fixRegions(b []byte) {
	for _, off := range []int{regionTable1Offset, regionTable2Offset} {
		le32(b, off+4, checksum(b[off:off+regionTableSize], 4))
	}
}

// setBoth applies a change to both region tables and fixes their checksums.
func setBoth(b []byte, f func(rt []byte)) {
	f(b[regionTable1Offset : regionTable1Offset+regionTableSize])
	f(b[regionTable2Offset : regionTable2Offset+regionTableSize])
	fixRegions(b)
}

func batEntry(b []byte, i int, v uint64) { le64(b, batOffset+8*i, v) }

func TestInspectRejectsDamage(t *testing.T) {
	t.Parallel()
	good := goodFile(t)
	if _, err := InspectReader(bytes.NewReader(good), int64(len(good))); err != nil {
		t.Fatalf("undamaged file rejected: %v", err)
	}
	tests := []struct {
		name      string
		damage    func(b []byte) []byte
		structure string // FormatError.Structure prefix
		problem   string // substring of the message
	}{
		{"not a VHDX", func(b []byte) []byte { b[0] = 'X'; return b }, "file type identifier", "not a VHDX"},
		{"tiny file", func(b []byte) []byte { return b[:100] }, "file type identifier", "smaller than the 1 MiB header section"},
		{"header 1 checksum field", func(b []byte) []byte { b[header1Offset+4] ^= 1; return b }, "header 1", "checksum mismatch"},
		{"header 2 sequence flipped", func(b []byte) []byte { b[header2Offset+8] ^= 0x80; return b }, "header 2", "checksum mismatch"},
		{"header 2 reserved area", func(b []byte) []byte { b[header2Offset+4000] = 1; return b }, "header 2", "checksum mismatch"},
		{"header 1 signature", func(b []byte) []byte { b[header1Offset] = 'x'; return b }, "header 1", "signature"},
		{"header 2 version", func(b []byte) []byte { b[header2Offset+66] = 2; fixHeader(b, header2Offset); return b }, "header 2", "version 2"},
		{"header 1 log not empty", func(b []byte) []byte {
			b[header1Offset+48] = 1
			fixHeader(b, header1Offset)
			return b
		}, "header 1", "log is not empty"},
		{"header 1 log offset unaligned", func(b []byte) []byte {
			le64(b, header1Offset+72, mib+4096)
			fixHeader(b, header1Offset)
			return b
		}, "header 1", "log offset"},
		{"headers same sequence", func(b []byte) []byte {
			le64(b, header2Offset+8, 1)
			b[header2Offset+16] ^= 1 // and a different FileWriteGuid
			fixHeader(b, header2Offset)
			return b
		}, "headers", "both have sequence number 1"},
		{"region table 1 entry", func(b []byte) []byte { b[regionTable1Offset+16+20] ^= 1; return b }, "region table 1", "checksum mismatch"},
		{"region table 2 entry", func(b []byte) []byte { b[regionTable2Offset+16+40] ^= 1; return b }, "region table 2", "checksum mismatch"},
		{"region table 2 differs", func(b []byte) []byte {
			b[regionTable2Offset+60000] = 1
			fixRegions(b)
			return b
		}, "region table 2", "differs from region table 1"},
		{"region table BAT entry missing", func(b []byte) []byte {
			setBoth(b, func(rt []byte) { copy(rt[16:48], rt[48:80]); clear(rt[48:80]); le32(rt, 8, 1) })
			return b
		}, "region table", "BAT entry missing"},
		{"region table metadata entry missing", func(b []byte) []byte {
			setBoth(b, func(rt []byte) { clear(rt[48:80]); le32(rt, 8, 1) })
			return b
		}, "region table", "metadata entry missing"},
		{"region BAT beyond end of file", func(b []byte) []byte {
			setBoth(b, func(rt []byte) { le64(rt, 16+16, 1<<40) })
			return b
		}, "region table: entry 0 (BAT", "beyond end of file"},
		{"region BAT on metadata", func(b []byte) []byte {
			setBoth(b, func(rt []byte) { le64(rt, 16+16, metadataOffset) })
			return b
		}, "region table: entry 1 (metadata", "overlaps the BAT region"},
		{"region on the log", func(b []byte) []byte {
			setBoth(b, func(rt []byte) { le64(rt, 16+16, logOffset) })
			return b
		}, "region table: entry 0 (BAT", "overlaps the log"},
		{"region unaligned", func(b []byte) []byte {
			setBoth(b, func(rt []byte) { le64(rt, 16+16, batOffset+4096) })
			return b
		}, "region table: entry 0 (BAT", "multiple of 1 MiB"},
		{"unknown required region", func(b []byte) []byte {
			setBoth(b, func(rt []byte) { rt[48] ^= 0xff })
			return b
		}, "region table: entry 1 (unknown", "unknown region marked required"},
		{"metadata signature", func(b []byte) []byte { b[metadataOffset+2] = 'X'; return b }, "metadata table", "signature"},
		{"metadata File Parameters not required", func(b []byte) []byte {
			b[metadataOffset+32+24] = 0
			return b
		}, "metadata entry 0 (File Parameters", "flags IsUser=0 IsVirtualDisk=0 IsRequired=0"},
		{"metadata Virtual Disk Size not virtual-disk", func(b []byte) []byte {
			b[metadataOffset+64+24] = metaIsRequired
			return b
		}, "metadata entry 1 (Virtual Disk Size", "want IsUser=0 IsVirtualDisk=1 IsRequired=1"},
		{"metadata item missing", func(b []byte) []byte { b[metadataOffset+10] = 4; return b }, "metadata", "required Physical Sector Size item missing"},
		{"metadata item inside the table", func(b []byte) []byte {
			le32(b, metadataOffset+32+16, 100)
			return b
		}, "metadata entry 0", "inside the 64 KiB metadata table"},
		{"metadata item beyond region", func(b []byte) []byte {
			le32(b, metadataOffset+32+16, mib-4)
			return b
		}, "metadata entry 0", "beyond the metadata region"},
		{"metadata items overlap", func(b []byte) []byte {
			le32(b, metadataOffset+64+16, metadataTableSize+4)
			return b
		}, "metadata entry 1", "overlaps"},
		{"metadata duplicate item", func(b []byte) []byte {
			copy(b[metadataOffset+64:metadataOffset+80], b[metadataOffset+32:metadataOffset+48])
			return b
		}, "metadata entry 1", "appears twice"},
		{"block size not a power of two", func(b []byte) []byte { le32(b, metaFileParams, 3*mib); return b }, "metadata: File Parameters", "block size 3145728"},
		{"has parent", func(b []byte) []byte { b[metaFileParams+4] = paramHasParent; return b }, "metadata: File Parameters", "HasParent"},
		{"virtual size not sector multiple", func(b []byte) []byte { le64(b, metaVirtualSize, 32*mib+100); return b }, "metadata: Virtual Disk Size", "33554532"},
		{"BAT region too small", func(b []byte) []byte { le64(b, metaVirtualSize, 1<<40); return b }, "region table: BAT region", "too small"},
		{"BAT entry offset beyond end of file", func(b []byte) []byte {
			batEntry(b, 17, 1<<40|payloadFullyPresent)
			return b
		}, "BAT entry 17", "offset beyond end of file"},
		{"truncated last block", func(b []byte) []byte { return b[:len(b)-1] }, "BAT entry 17", "offset beyond end of file"},
		{"truncated into the BAT region", func(b []byte) []byte { return b[:batOffset+4096] }, "region table: entry 0 (BAT", "beyond end of file"},
		{"truncated in the log", func(b []byte) []byte { return b[:logOffset+4096] }, "header 1", "log region"},
		{"BAT entries overlap", func(b []byte) []byte {
			batEntry(b, 1, dataStart|payloadFullyPresent)
			return b
		}, "BAT entry 1", "overlaps the block of BAT entry 0"},
		{"BAT block on the metadata", func(b []byte) []byte {
			batEntry(b, 3, metadataOffset|payloadFullyPresent)
			return b
		}, "BAT entry 3", "overlaps the metadata region"},
		{"BAT reserved state", func(b []byte) []byte { batEntry(b, 5, 4); return b }, "BAT entry 5", "reserved state 4"},
		{"BAT partially present", func(b []byte) []byte { batEntry(b, 5, payloadPartiallyPresent); return b }, "BAT entry 5", "PARTIALLY_PRESENT"},
		{"BAT reserved bits", func(b []byte) []byte { batEntry(b, 5, payloadZero|1<<10); return b }, "BAT entry 5", "reserved bits"},
		{"BAT sector bitmap present", func(b []byte) []byte {
			le64(b, metaVirtualSize, 4<<30+mib) // 4097 blocks: entry 4096 is a sector bitmap entry
			batEntry(b, 4096, sbPresent|dataStart)
			return b
		}, "BAT entry 4096", "sector bitmap entry in state 6"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.damage(bytes.Clone(good))
			_, err := InspectReader(bytes.NewReader(b), int64(len(b)))
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v, want a *FormatError", err)
			}
			if !strings.HasPrefix(fe.Structure, tc.structure) || !strings.Contains(fe.Problem, tc.problem) {
				t.Errorf("error %q, want structure %q and problem containing %q", err, tc.structure, tc.problem)
			}
		})
	}
}

// TestInspectPath covers the file-based entry point: the error names the
// file and keeps the FormatError.
func TestInspectPath(t *testing.T) {
	t.Parallel()
	good := goodFile(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.vhdx")
	b := bytes.Clone(good)
	b[header2Offset+100] ^= 1
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Inspect(p)
	var fe *FormatError
	if err == nil || !errors.As(err, &fe) || !strings.Contains(err.Error(), p+": header 2: checksum mismatch") {
		t.Errorf("error %v", err)
	}
	if _, err := Inspect(filepath.Join(dir, "missing.vhdx")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Inspect(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
}
