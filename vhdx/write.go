package vhdx

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"github.com/ksmg-appliance/ksmg/internal/atomicfile"
	"log/slog"
	"os"
	"time"
	"unicode/utf16"

	"github.com/google/uuid"
	"github.com/ksmg-appliance/ksmg/images/sparse"
)

// Options tune Write. The zero value is not usable: set Identity, or all
// three GUIDs.
type Options struct {
	// BlockSize is the payload block size in bytes: a power of two from
	// 1 MiB to 256 MiB; 0 means 1 MiB, Microsoft's advice for Linux guests.
	BlockSize uint32
	// Identity names the image, e.g. "ksmg-1.4.0"; the GUIDs not set below
	// are derived from it (name-based UUIDs), so a rebuild is identical.
	Identity string
	// DiskID is the Page 83 data (the virtual disk's SCSI identity).
	DiskID GUID
	// DataWriteGUID and FileWriteGUID go into both headers.
	DataWriteGUID GUID
	FileWriteGUID GUID
	// Creator is recorded in the file type identifier; "" means "ksmg vhdx".
	Creator string
	// Logger receives one summary line; nil means slog.Default().
	Logger *slog.Logger
}

// Layout of the files Write produces. The BAT follows at batOffset and the
// payload blocks follow the BAT, in virtual order.
const (
	logicalSectorSize  = 512
	physicalSectorSize = 4096
	logOffset          = 1 * mib
	logLength          = 1 * mib
	metadataOffset     = 2 * mib
	metadataLength     = 1 * mib
	batOffset          = 3 * mib
	pageSize           = 4 * kib // granularity of holes in the output
	writebackChunk     = 32 * mib
)

// guidNamespace scopes the name-based GUIDs of this writer.
var guidNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/ksmg-appliance/ksmg/vhdx"))

func deriveGUID(identity, role string) GUID {
	u := uuid.NewHash(sha1.New(), guidNamespace, []byte(role+"\x00"+identity), 5)
	return guidFromRFC(u)
}

// resolve fills defaults and checks the options.
func (o Options) resolve() (Options, error) {
	if o.BlockSize == 0 {
		o.BlockSize = 1 * mib
	}
	if o.BlockSize < minBlockSize || o.BlockSize > maxBlockSize || o.BlockSize&(o.BlockSize-1) != 0 {
		return o, fmt.Errorf("block size %d: want a power of two from 1 MiB to 256 MiB", o.BlockSize)
	}
	for _, g := range []struct {
		name string
		v    *GUID
	}{{"page83", &o.DiskID}, {"data-write", &o.DataWriteGUID}, {"file-write", &o.FileWriteGUID}} {
		if !g.v.IsZero() {
			continue
		}
		if o.Identity == "" {
			return o, fmt.Errorf("no identity and no explicit %s GUID: set Options.Identity so GUIDs can be derived deterministically", g.name)
		}
		*g.v = deriveGUID(o.Identity, g.name)
	}
	if o.Creator == "" {
		o.Creator = "ksmg vhdx"
	}
	if len(utf16.Encode([]rune(o.Creator))) > 255 {
		return o, fmt.Errorf("creator %q: longer than 255 UTF-16 code units", o.Creator)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Write converts the raw disk at rawPath into a dynamic VHDX at outPath.
// The virtual size is the raw size rounded up to 1 MiB. The file is written
// under a temporary name in the same directory (atomicfile), synced and
// renamed, so outPath is either the complete image or untouched.
func Write(ctx context.Context, rawPath, outPath string, opts Options) error {
	tmp, err := atomicfile.Create(outPath, 0o644)
	if err != nil {
		return fmt.Errorf("vhdx: %w", err)
	}
	defer tmp.Cleanup()
	if err := WriteTo(ctx, rawPath, tmp.File, opts); err != nil {
		return err
	}
	if err := tmp.Commit(); err != nil {
		return fmt.Errorf("vhdx: %w", err)
	}
	return nil
}

// WriteTo converts the raw disk at rawPath into a dynamic VHDX written into
// out, a file the caller has staged: it is emptied first and neither synced,
// closed nor renamed here (the caller publishes it).
func WriteTo(ctx context.Context, rawPath string, out *os.File, opts Options) error {
	o, err := opts.resolve()
	if err != nil {
		return fmt.Errorf("vhdx: %w", err)
	}
	start := time.Now()
	in, err := os.Open(rawPath)
	if err != nil {
		return fmt.Errorf("vhdx: raw disk: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("vhdx: raw disk: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("vhdx: raw disk %s: not a regular file", rawPath)
	}
	rawSize := st.Size()
	if rawSize == 0 {
		return fmt.Errorf("vhdx: raw disk %s: empty", rawPath)
	}
	virtualSize := roundUp(uint64(rawSize), mib)
	if virtualSize > maxVirtualSize {
		return fmt.Errorf("vhdx: raw disk %s: %d bytes, more than the 64 TiB VHDX maximum", rawPath, rawSize)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("vhdx: %w", err)
	}
	// Whatever the writer skips must read as zeros.
	if err := out.Truncate(0); err != nil {
		return fmt.Errorf("vhdx: %w", err)
	}
	w := &writer{in: in, out: out, rawSize: rawSize, virtualSize: virtualSize, o: o}
	if err := w.write(ctx); err != nil {
		return fmt.Errorf("vhdx: writing %s: %w", out.Name(), err)
	}
	o.Logger.Info("vhdx written", "path", out.Name(), "virtual_size", virtualSize,
		"block_size", o.BlockSize, "blocks_stored", w.stored, "file_size", w.fileSize,
		"seconds", time.Since(start).Seconds())
	return nil
}

type writer struct {
	in          *os.File
	out         *os.File
	rawSize     int64
	virtualSize uint64
	o           Options

	stored   uint64 // payload blocks written
	fileSize int64
}

// job is one non-zero block on its way to the output: runs are the
// [start, end) byte ranges of its non-zero pages.
type job struct {
	buf  []byte
	off  int64
	runs [][2]int
}

func (w *writer) write(ctx context.Context) error {
	bs := uint64(w.o.BlockSize)
	ratio := chunkRatio(logicalSectorSize, w.o.BlockSize)
	nEntries := batEntries(w.virtualSize, w.o.BlockSize, ratio)
	batLength := roundUp(nEntries*8, mib)
	dataOffset := uint64(batOffset) + batLength
	bat := make([]uint64, nEntries)
	for n := uint64(0); n*bs < w.virtualSize; n++ {
		bat[batIndex(n, ratio)] = payloadZero
	}

	// The reader scans and allocates in virtual order (deterministic
	// offsets); a second goroutine writes, so reading and writing overlap.
	// Buffers are whole blocks: fewer of them for large block sizes.
	nbuf := 6
	if bs > 8*mib {
		nbuf = 3
	}
	free := make(chan []byte, nbuf)
	for range nbuf {
		free <- make([]byte, bs)
	}
	jobs := make(chan job, nbuf-2)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var werr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		flushed := int64(dataOffset)
		for j := range jobs {
			if werr == nil {
				for _, r := range j.runs {
					if _, err := w.out.WriteAt(j.buf[r[0]:r[1]], j.off+int64(r[0])); err != nil {
						werr = err
						cancel()
						break
					}
				}
				// Overlap the disk writes with the conversion instead of
				// leaving them all to the final fsync.
				if end := j.off + int64(bs); end-flushed >= writebackChunk {
					startWriteback(w.out, flushed, end-flushed)
					flushed = end
				}
			}
			free <- j.buf
		}
	}()

	next := dataOffset
	nextBlock := uint64(0)
	zeroPage := make([]byte, pageSize)
	perr := sparse.Extents(w.in, w.rawSize, func(s, e int64) error {
		first, last := uint64(s)/bs, uint64(e-1)/bs
		for n := max(first, nextBlock); n <= last; n++ {
			var buf []byte
			select {
			case buf = <-free:
			case <-wctx.Done():
				return wctx.Err()
			}
			off := int64(n * bs)
			m := min(int64(bs), w.rawSize-off)
			if _, err := w.in.ReadAt(buf[:m], off); err != nil {
				free <- buf
				return fmt.Errorf("reading raw disk at %d: %w", off, err)
			}
			clear(buf[m:])
			var runs [][2]int
			for p := 0; p < len(buf); p += pageSize {
				if bytes.Equal(buf[p:p+pageSize], zeroPage) {
					continue
				}
				if k := len(runs); k > 0 && runs[k-1][1] == p {
					runs[k-1][1] = p + pageSize
				} else {
					runs = append(runs, [2]int{p, p + pageSize})
				}
			}
			if runs == nil {
				free <- buf
				continue
			}
			bat[batIndex(n, ratio)] = next | payloadFullyPresent
			jobs <- job{buf: buf, off: int64(next), runs: runs}
			next += bs
			w.stored++
		}
		nextBlock = last + 1
		return nil
	})
	close(jobs)
	<-done
	if werr != nil {
		return werr
	}
	if perr != nil {
		return perr
	}

	batBytes := make([]byte, nEntries*8)
	for i, e := range bat {
		binary.LittleEndian.PutUint64(batBytes[8*i:], e)
	}
	if _, err := w.out.WriteAt(batBytes, batOffset); err != nil {
		return err
	}
	if _, err := w.out.WriteAt(w.metadata(), metadataOffset); err != nil {
		return err
	}
	if _, err := w.out.WriteAt(w.headerSection(batLength), 0); err != nil {
		return err
	}
	// Unwritten ranges (the log, zero pages, the tails of the BAT and the
	// metadata region) stay holes that read as zeros.
	w.fileSize = int64(next)
	return w.out.Truncate(w.fileSize)
}

// headerSection is the first 1 MiB up to the end of region table 2: file
// type identifier, two headers, two region tables.
func (w *writer) headerSection(batLength uint64) []byte {
	b := make([]byte, regionTable2Offset+regionTableSize)
	copy(b[fileIDOffset:], sigFileID)
	for i, u := range utf16.Encode([]rune(w.o.Creator)) {
		binary.LittleEndian.PutUint16(b[8+2*i:], u)
	}
	h := header{
		FileWriteGUID: w.o.FileWriteGUID,
		DataWriteGUID: w.o.DataWriteGUID,
		// LogGUID stays zero: the log is empty, nothing to replay.
		Version:   1,
		LogLength: logLength,
		LogOffset: logOffset,
	}
	h.Sequence = 1
	copy(b[header1Offset:], h.marshal())
	h.Sequence = 2
	copy(b[header2Offset:], h.marshal())
	rt := marshalRegionTable([]regionEntry{
		{GUID: regionBAT, Offset: batOffset, Length: uint32(batLength), Required: true},
		{GUID: regionMetadata, Offset: metadataOffset, Length: metadataLength, Required: true},
	})
	copy(b[regionTable1Offset:], rt)
	copy(b[regionTable2Offset:], rt)
	return b
}

// metadata is the metadata table followed by the five system items, packed
// from the 64 KiB mark the spec reserves for the table.
func (w *writer) metadata() []byte {
	b := make([]byte, metadataTableSize+40)
	items := []struct {
		id  GUID
		val []byte
	}{
		{itemFileParameters, binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, w.o.BlockSize), 0)},
		{itemVirtualDiskSize, binary.LittleEndian.AppendUint64(nil, w.virtualSize)},
		{itemPage83Data, w.o.DiskID[:]},
		{itemLogicalSectorSize, binary.LittleEndian.AppendUint32(nil, logicalSectorSize)},
		{itemPhysicalSectorSize, binary.LittleEndian.AppendUint32(nil, physicalSectorSize)},
	}
	var entries []metadataEntry
	off := uint32(metadataTableSize)
	for _, it := range items {
		copy(b[off:], it.val)
		entries = append(entries, metadataEntry{ItemID: it.id, Offset: off, Length: uint32(len(it.val)), Flags: knownItems[it.id].flags})
		off += uint32(len(it.val))
	}
	copy(b, marshalMetadataTable(entries))
	return b
}
