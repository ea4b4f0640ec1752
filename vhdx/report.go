package vhdx

import (
	"fmt"
	"io"
	"strings"
)

// String renders the report as text for a person.
func (r *Report) String() string {
	var b strings.Builder
	_ = r.WriteText(&b)
	return b.String()
}

// WriteText writes the report as aligned "key: value" lines.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	kv := func(k, format string, args ...any) {
		fmt.Fprintf(&b, "%-24s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	if r.Path != "" {
		kv("file", "%s", r.Path)
	}
	kv("format", "VHDX version 1 (valid)")
	kv("file size", "%s", size(uint64(r.FileSize)))
	kv("creator", "%q", r.Creator)
	kv("virtual size", "%s", size(r.VirtualSize))
	kv("block size", "%s", size(uint64(r.BlockSize)))
	kv("sector size", "%d logical, %d physical", r.LogicalSectorSize, r.PhysicalSectorSize)
	kv("disk id (page 83)", "%s", r.DiskID)
	kv("parameters", "LeaveBlocksAllocated=%t HasParent=%t", r.LeaveBlocksAllocated, r.HasParent)
	for i, h := range r.Headers {
		cur := ""
		if r.CurrentHeader == i+1 {
			cur = " (current)"
		}
		kv(fmt.Sprintf("header %d", i+1), "sequence %d%s, log %s at %d, log guid %s",
			h.Sequence, cur, size(uint64(h.LogLength)), h.LogOffset, h.LogGUID)
		kv("  file write guid", "%s", h.FileWriteGUID)
		kv("  data write guid", "%s", h.DataWriteGUID)
	}
	for _, g := range r.Regions {
		kv("region "+g.Name, "%s at %d, required=%t", size(uint64(g.Length)), g.Offset, g.Required)
	}
	for _, m := range r.Metadata {
		kv("metadata", "%s (%d bytes) user=%t virtual-disk=%t required=%t", m.Name, m.Length, m.IsUser, m.IsVirtualDisk, m.IsRequired)
	}
	a := r.BAT
	kv("BAT", "%d entries, chunk ratio %d, %d payload blocks", a.Entries, a.ChunkRatio, a.PayloadBlocks)
	kv("  blocks", "%d present, %d zero, %d not present, %d undefined, %d unmapped",
		a.FullyPresent, a.Zero, a.NotPresent, a.Undefined, a.Unmapped)
	kv("  allocated", "%s", size(a.AllocatedBytes))
	_, err := io.WriteString(w, b.String())
	return err
}

// size prints bytes exactly, with a binary unit when one fits evenly enough.
func size(n uint64) string {
	units := []string{"KiB", "MiB", "GiB", "TiB"}
	v, u := float64(n), ""
	for _, un := range units {
		if v < 1024 {
			break
		}
		v /= 1024
		u = un
	}
	if u == "" {
		return fmt.Sprintf("%d bytes", n)
	}
	return fmt.Sprintf("%d bytes (%.4g %s)", n, v, u)
}
