package vmdk

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/ksmg-appliance/ksmg/images/sparse"
)

// DefaultLevel is the deflate level used when Options.Level is 0. Chosen by
// measurement (ci/bench-formats.sh and a per-level sweep over 96 MiB of /usr
// files in 64 KiB grains): libdeflate level 6 stores 0.9% fewer bytes than
// zlib level 6, which qemu-img uses, at about a third of its CPU time.
const DefaultLevel = 6

// AdapterType is the descriptor's ddb.adapterType. VMware only accepts ide,
// buslogic, lsilogic and legacyESX there; it is a hint for tools that open the
// bare disk. The controller the VM really gets is the OVF's PVSCSI item.
const AdapterType = "lsilogic"

// VirtualHWVersion is the descriptor's ddb.virtualHWVersion: the oldest
// virtual hardware that can read this disk (what ovftool writes for
// streamOptimized disks). The VM's hardware version comes from the OVF.
const VirtualHWVersion = "4"

// Options control Convert.
type Options struct {
	// Capacity is the virtual disk size in bytes; 0 means the source's size.
	// It is rounded up to a whole sector and must not be smaller than the
	// source.
	Capacity int64
	// Level is the zlib level 1..9; 0 means DefaultLevel.
	Level int
	// Workers is the number of compressing goroutines; 0 means GOMAXPROCS.
	Workers int
	// ExtentName is the file name recorded in the descriptor's extent line.
	ExtentName string
}

// Result describes a written stream.
type Result struct {
	Size          int64  // bytes written
	Capacity      int64  // virtual size in bytes
	Grains        int    // grains stored (not all-zero)
	GrainTables   int    // grain tables stored
	PopulatedSize int64  // bytes of virtual disk covered by stored grains
	CID           uint32 // descriptor content id
}

// Output is where Convert writes: sequentially, then it patches the
// descriptor in place with WriteAt once the content id is known.
type Output interface {
	io.Writer
	io.WriterAt
}

type job struct {
	grain uint64
	raw   *[]byte
	out   *[]byte
	err   error
	done  chan struct{}
}

var (
	rawPool = sync.Pool{New: func() any { b := make([]byte, GrainSize); return &b }}
	outPool = sync.Pool{New: func() any { b := make([]byte, 0, GrainSize+2*SectorSize); return &b }}
	zero    = make([]byte, GrainSize)
)

// resolve applies the defaults to opts and checks them against the source
// (srcSize bytes): the capacity in sectors, zlib level, workers, extent name.
func (opts Options) resolve(srcName string, srcSize int64) (capSectors uint64, level, workers int, name string, err error) {
	capacity := opts.Capacity
	if capacity == 0 {
		capacity = srcSize
	}
	if capacity < srcSize {
		return 0, 0, 0, "", fmt.Errorf("vmdk: capacity %d bytes is smaller than the source %s (%d bytes)", capacity, srcName, srcSize)
	}
	if capacity <= 0 {
		return 0, 0, 0, "", fmt.Errorf("vmdk: source %s is empty and no capacity was given", srcName)
	}
	level = opts.Level
	if level == 0 {
		level = DefaultLevel
	}
	if level < 1 || level > maxLevel {
		return 0, 0, 0, "", fmt.Errorf("vmdk: zlib level %d out of range 1..%d (%s)", level, maxLevel, Encoder)
	}
	workers = opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	name = opts.ExtentName
	if name == "" {
		name = "disk.vmdk"
	}
	if strings.ContainsAny(name, "\"\r\n\x00") {
		return 0, 0, 0, "", fmt.Errorf("vmdk: extent name %q must not contain quotes or line breaks", name)
	}
	capSectors = ceilDiv(uint64(capacity), SectorSize)
	if capSectors > maxCapacitySectors {
		return 0, 0, 0, "", fmt.Errorf("vmdk: capacity %d bytes exceeds the %d-byte limit", capacity, int64(maxCapacitySectors)*SectorSize)
	}
	return capSectors, level, workers, name, nil
}

// Convert reads the raw disk image src and writes it to dst as a
// streamOptimized VMDK. dst must be empty and positioned at offset 0.
func Convert(ctx context.Context, src *os.File, dst Output, opts Options) (*Result, error) {
	fi, err := src.Stat()
	if err != nil {
		return nil, fmt.Errorf("vmdk: stat source: %w", err)
	}
	srcSize := fi.Size()
	capSectors, level, workers, name, err := opts.resolve(src.Name(), srcSize)
	if err != nil {
		return nil, err
	}
	totalGrains := ceilDiv(capSectors, GrainSectors)
	ranges, err := sparse.Ranges(src, srcSize)
	if err != nil {
		return nil, fmt.Errorf("vmdk: find data in %s: %w", src.Name(), err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ordered := make(chan *job, 4*workers)
	work := make(chan *job, 2*workers)
	var wg sync.WaitGroup
	for range workers {
		zc, err := newCompressor(level)
		if err != nil {
			close(work)
			wg.Wait()
			return nil, fmt.Errorf("vmdk: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer zc.close()
			for j := range work {
				j.err = compressGrain(zc, j)
				close(j.done)
			}
		}()
	}
	var readErr error
	go func() {
		defer close(ordered)
		defer close(work)
		readErr = produce(ctx, src, srcSize, ranges, totalGrains, ordered, work)
	}()
	defer wg.Wait()
	defer func() {
		// Unblock the producer on early return and give buffers back.
		cancel()
		for j := range ordered {
			<-j.done
		}
	}()

	w := &streamWriter{bw: bufio.NewWriterSize(dst, 1<<20), sum: sha256.New()}
	var capBuf [8]byte
	binary.LittleEndian.PutUint64(capBuf[:], capSectors)
	w.sum.Write(capBuf[:])

	hdr := newHeader(capSectors)
	w.write(hdr.marshal(), false)
	w.write(make([]byte, (overheadSect-1)*SectorSize), false) // descriptor, patched below

	gd := make([]uint32, ceilDiv(totalGrains, GTEsPerGT))
	gt := make([]uint32, GTEsPerGT)
	curGT, gtUsed := uint64(0), false
	res := &Result{Capacity: int64(capSectors) * SectorSize}
	flushGT := func() {
		if !gtUsed {
			return
		}
		w.write(metaMarker(gtSectors, markerGT), true)
		gd[curGT] = uint32(w.sector())
		w.write(u32s(gt), true)
		res.GrainTables++
		clear(gt)
		gtUsed = false
	}
	for j := range ordered {
		select {
		case <-j.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if j.err != nil {
			return nil, fmt.Errorf("vmdk: compress grain %d: %w", j.grain, j.err)
		}
		if g := j.grain / GTEsPerGT; g != curGT {
			flushGT()
			curGT = g
		}
		sector := w.sector()
		if sector > uint64(^uint32(0)) {
			return nil, fmt.Errorf("vmdk: stream exceeds 2 TiB, the limit of 32-bit grain table entries")
		}
		gt[j.grain%GTEsPerGT] = uint32(sector)
		gtUsed = true
		w.write(*j.out, true)
		res.Grains++
		outPool.Put(j.out)
		j.out = nil
		if w.err != nil {
			return nil, fmt.Errorf("vmdk: write: %w", w.err)
		}
	}
	if readErr != nil {
		return nil, readErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	flushGT()
	gdSectors := ceilDiv(uint64(len(gd))*4, SectorSize)
	w.write(metaMarker(gdSectors, markerGD), true)
	gdOffset := w.sector()
	gdBytes := u32s(gd)
	w.write(gdBytes, true)
	w.write(make([]byte, int(gdSectors*SectorSize)-len(gdBytes)), true)
	footer := hdr
	footer.GDOffset = gdOffset
	w.write(metaMarker(1, markerFooter), true)
	w.write(footer.marshal(), true)
	w.write(metaMarker(0, markerEOS), true)
	if w.err == nil {
		w.err = w.bw.Flush()
	}
	if w.err != nil {
		return nil, fmt.Errorf("vmdk: write: %w", w.err)
	}

	digest := w.sum.Sum(nil)
	cid := binary.BigEndian.Uint32(digest)
	if cid >= 0xfffffffe { // these mean "no parent" / "all zero" to some readers
		cid ^= 0x80000000
	}
	desc := Descriptor(name, capSectors, cid, hex.EncodeToString(digest[:16]))
	if len(desc) > descSectors*SectorSize {
		return nil, fmt.Errorf("vmdk: descriptor is %d bytes, more than the %d reserved", len(desc), descSectors*SectorSize)
	}
	if _, err := dst.WriteAt([]byte(desc), descOffset*SectorSize); err != nil {
		return nil, fmt.Errorf("vmdk: write descriptor: %w", err)
	}
	res.Size = w.off
	res.CID = cid
	res.PopulatedSize = int64(res.Grains) * GrainSize
	return res, nil
}

// Descriptor renders the embedded descriptor of a streamOptimized extent.
func Descriptor(extentName string, capSectors uint64, cid uint32, longCID string) string {
	c, h, s := Geometry(capSectors)
	return fmt.Sprintf(`# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=%08x
parentCID=ffffffff
createType="streamOptimized"

# Extent description
RW %d SPARSE "%s"

# The Disk Data Base
#DDB

ddb.adapterType = "%s"
ddb.geometry.cylinders = "%d"
ddb.geometry.heads = "%d"
ddb.geometry.sectors = "%d"
ddb.longContentID = "%s"
ddb.virtualHWVersion = "%s"
`, cid, capSectors, extentName, AdapterType, c, h, s, longCID, VirtualHWVersion)
}

// produce reads every grain that overlaps data, drops all-zero ones and
// queues the rest in LBA order.
func produce(ctx context.Context, src *os.File, size int64, ranges [][2]int64, totalGrains uint64, ordered, work chan<- *job) error {
	next := uint64(0) // first grain not yet queued
	for _, r := range ranges {
		first := max(uint64(r[0])/GrainSize, next)
		end := min(ceilDiv(uint64(r[1]), GrainSize), totalGrains)
		for g := first; g < end; g++ {
			buf := rawPool.Get().(*[]byte)
			off := int64(g) * GrainSize
			n, err := src.ReadAt(*buf, off)
			if err != nil && !(errors.Is(err, io.EOF) && off+int64(n) == size) {
				rawPool.Put(buf)
				return fmt.Errorf("vmdk: read %s at %d: %w", src.Name(), off, err)
			}
			clear((*buf)[n:]) // the last grain may extend past the end of the source
			if bytes.Equal(*buf, zero) {
				rawPool.Put(buf)
				continue
			}
			j := &job{grain: g, raw: buf, done: make(chan struct{})}
			select {
			case ordered <- j:
			case <-ctx.Done():
				rawPool.Put(buf)
				return ctx.Err()
			}
			work <- j // cannot block forever: workers drain work until it is closed
		}
		next = max(next, end)
	}
	return nil
}

func compressGrain(zc *compressor, j *job) error {
	defer func() { rawPool.Put(j.raw); j.raw = nil }()
	out := outPool.Get().(*[]byte)
	j.out = out
	// The grain marker is filled in below, once the compressed size is known.
	b := (*out)[:0]
	b = append(b, make([]byte, grainMarkerLen)...)
	b, err := zc.appendZlib(b, *j.raw)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(b[0:], j.grain*GrainSectors)
	binary.LittleEndian.PutUint32(b[8:], uint32(len(b)-grainMarkerLen))
	if pad := len(b) % SectorSize; pad != 0 {
		b = append(b, zero[:SectorSize-pad]...)
	}
	*out = b
	return nil
}

type streamWriter struct {
	bw  *bufio.Writer
	sum hash.Hash
	off int64
	err error
}

func (w *streamWriter) write(b []byte, hashed bool) {
	if w.err != nil {
		return
	}
	if hashed {
		w.sum.Write(b)
	}
	_, w.err = w.bw.Write(b)
	w.off += int64(len(b))
}

func (w *streamWriter) sector() uint64 { return uint64(w.off) / SectorSize }

func u32s(v []uint32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], x)
	}
	return b
}
