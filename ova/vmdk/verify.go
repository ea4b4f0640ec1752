package vmdk

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zlib"
)

// Limits that keep a hostile header from making Verify allocate or overflow.
const (
	maxDescSectors     = 2048    // 1 MiB of descriptor
	maxCapacitySectors = 1 << 37 // 64 TiB; VMware's sparse extents stop at 2 TiB
)

// CheckError is a failed structural check, with the byte offset in the
// stream where it was found.
type CheckError struct {
	Check  string // e.g. "header", "descriptor", "grain", "grain table", "footer"
	Offset int64
	Err    error
}

func (e *CheckError) Error() string {
	return fmt.Sprintf("vmdk %s check failed at byte %d: %v", e.Check, e.Offset, e.Err)
}
func (e *CheckError) Unwrap() error { return e.Err }

// Report is what Verify found in a stream.
type Report struct {
	Size          int64             `json:"size"`
	Capacity      int64             `json:"capacity"`
	CreateType    string            `json:"createType"`
	CID           string            `json:"cid"`
	ExtentSectors int64             `json:"extentSectors"`
	DDB           map[string]string `json:"ddb"`
	Grains        int               `json:"grains"`
	GrainTables   int               `json:"grainTables"`
	GDEntries     int               `json:"gdEntries"`
	GDOffset      uint64            `json:"gdOffset"`
	CompressedB   int64             `json:"compressedBytes"`
	PopulatedSize int64             `json:"populatedSize"`
}

// Verify walks a streamOptimized VMDK from r front to back, as an importer
// reading it from an OVA would: header, descriptor, every marker, every grain
// (decompressed to check it), the grain tables and directory, the footer and
// the end-of-stream marker, then cross-checks that every table entry points
// at the grain of the right LBA and every stored grain is referenced.
func Verify(r io.Reader) (*Report, error) {
	s := &scanner{r: bufio.NewReaderSize(r, 1<<20)}
	rep := &Report{DDB: map[string]string{}}

	hdr, err := s.head(rep)
	if err != nil {
		return nil, err
	}

	totalGrains := ceilDiv(hdr.Capacity, hdr.GrainSize)
	nGT := ceilDiv(totalGrains, uint64(hdr.NumGTEsPerGT))
	grains := map[uint64]uint64{} // sector of marker -> LBA
	gts := map[uint64][]uint32{}  // sector of table -> entries
	var gd []uint32
	var gdAt uint64
	var footer *header
	zr := &inflater{}
	lastLBA := int64(-1)

	for {
		at := s.off
		m, err := s.read(grainMarkerLen)
		if err != nil {
			return nil, s.failAt("end-of-stream", at, fmt.Errorf("stream ends without an end-of-stream marker: %w", err))
		}
		val := binary.LittleEndian.Uint64(m)
		size := binary.LittleEndian.Uint32(m[8:])
		if size != 0 { // grain marker
			if err := s.grain(zr, hdr, at, val, size, lastLBA); err != nil {
				return nil, err
			}
			lastLBA = int64(val)
			grains[uint64(at)/SectorSize] = val
			rep.Grains++
			rep.CompressedB += int64(size)
			continue
		}
		rest, err := s.read(SectorSize - grainMarkerLen)
		if err != nil {
			return nil, s.failAt("marker", at, err)
		}
		if at%SectorSize != 0 {
			return nil, s.failAt("marker", at, errors.New("metadata marker is not sector aligned"))
		}
		typ := binary.LittleEndian.Uint32(rest[0:])
		switch typ {
		case markerGT:
			if val != gtSectors {
				return nil, s.failAt("grain table", at, fmt.Errorf("GT marker says %d sectors, want %d", val, gtSectors))
			}
			b, err := s.read(int(val * SectorSize))
			if err != nil {
				return nil, s.failAt("grain table", at, err)
			}
			gts[uint64(at)/SectorSize+1] = le32s(b)
		case markerGD:
			if gd != nil {
				return nil, s.failAt("grain directory", at, errors.New("second grain directory"))
			}
			if want := ceilDiv(nGT*4, SectorSize); val != want {
				return nil, s.failAt("grain directory", at, fmt.Errorf("GD marker says %d sectors, want %d for %d grain tables", val, want, nGT))
			}
			b, err := s.read(int(val * SectorSize))
			if err != nil {
				return nil, s.failAt("grain directory", at, err)
			}
			gd = le32s(b)[:nGT]
			gdAt = uint64(at)/SectorSize + 1
		case markerFooter:
			if val != 1 {
				return nil, s.failAt("footer", at, fmt.Errorf("footer marker says %d sectors, want 1", val))
			}
			b, err := s.read(SectorSize)
			if err != nil {
				return nil, s.failAt("footer", at, err)
			}
			f, err := parseHeader(b)
			if err != nil {
				return nil, s.failAt("footer", at+SectorSize, err)
			}
			footer = &f
		case markerEOS:
			if val != 0 {
				return nil, s.failAt("end-of-stream", at, fmt.Errorf("end-of-stream marker has value %d", val))
			}
			if n, _ := io.Copy(io.Discard, s.r); n != 0 {
				return nil, s.failAt("end-of-stream", s.off, fmt.Errorf("%d bytes after the end-of-stream marker", n))
			}
			rep.Size = s.off
			return rep, finish(rep, hdr, footer, gd, gdAt, gts, grains, at)
		default:
			return nil, s.failAt("marker", at, fmt.Errorf("unknown marker type %d", typ))
		}
	}
}

// head reads the header and the descriptor up to the first grain.
func (s *scanner) head(rep *Report) (header, error) {
	sec, err := s.read(SectorSize)
	if err != nil {
		return header{}, s.fail("header", err)
	}
	hdr, err := parseHeader(sec)
	if err != nil {
		return header{}, s.failAt("header", 0, err)
	}
	if err := checkHeader(hdr); err != nil {
		return header{}, s.failAt("header", 0, err)
	}
	rep.Capacity = int64(hdr.Capacity) * SectorSize
	if hdr.DescOffset < 1 || hdr.DescSize > maxDescSectors || hdr.DescOffset+hdr.DescSize > hdr.Overhead {
		return header{}, s.failAt("header", 0, fmt.Errorf("descriptor at sectors %d+%d does not fit before the first grain (overhead %d)", hdr.DescOffset, hdr.DescSize, hdr.Overhead))
	}
	if err := s.skip(int64(hdr.DescOffset-1) * SectorSize); err != nil {
		return header{}, s.fail("descriptor", err)
	}
	desc, err := s.read(int(hdr.DescSize * SectorSize))
	if err != nil {
		return header{}, s.fail("descriptor", err)
	}
	if err := parseDescriptor(desc, hdr, rep); err != nil {
		return header{}, s.failAt("descriptor", int64(hdr.DescOffset*SectorSize), err)
	}
	if err := s.skip(int64(hdr.Overhead-hdr.DescOffset-hdr.DescSize) * SectorSize); err != nil {
		return header{}, s.fail("header", err)
	}
	return hdr, nil
}

// grain reads the grain whose marker at at names LBA lba and size
// compressed bytes, and checks that it follows lastLBA, decompresses to a
// whole grain and is padded to a sector.
func (s *scanner) grain(zr *inflater, hdr header, at int64, lba uint64, size uint32, lastLBA int64) error {
	grainBytes := int(hdr.GrainSize * SectorSize)
	if lba%hdr.GrainSize != 0 || lba >= hdr.Capacity {
		return s.failAt("grain", at, fmt.Errorf("grain LBA %d is not a grain boundary inside the %d-sector disk", lba, hdr.Capacity))
	}
	if int64(lba) <= lastLBA {
		return s.failAt("grain", at, fmt.Errorf("grain LBA %d follows LBA %d: grains must be stored once, in order", lba, lastLBA))
	}
	if size > uint32(2*grainBytes) {
		return s.failAt("grain", at, fmt.Errorf("compressed size %d of grain at LBA %d is implausible", size, lba))
	}
	data, err := s.read(int(size))
	if err != nil {
		return s.failAt("grain", at, fmt.Errorf("grain at LBA %d: %w", lba, err))
	}
	n, err := zr.inflate(data, grainBytes)
	if err != nil {
		return s.failAt("grain", at, fmt.Errorf("grain at LBA %d does not decompress: %w", lba, err))
	}
	if n != grainBytes {
		return s.failAt("grain", at, fmt.Errorf("grain at LBA %d decompresses to %d bytes, want %d", lba, n, grainBytes))
	}
	if err := s.pad(); err != nil {
		return s.failAt("grain", at, err)
	}
	return nil
}

func checkHeader(h header) error {
	switch {
	case h.Version != version3:
		return fmt.Errorf("version %d, want 3 (streamOptimized)", h.Version)
	case h.Flags&(flagCompressed|flagMarkers) != flagCompressed|flagMarkers:
		return fmt.Errorf("flags %#x lack compressed grains and markers (%#x)", h.Flags, flagCompressed|flagMarkers)
	case h.CompressAlgo != compressDeflate:
		return fmt.Errorf("compression algorithm %d, want 1 (deflate)", h.CompressAlgo)
	case h.GrainSize < 8 || h.GrainSize&(h.GrainSize-1) != 0 || h.GrainSize > 2048:
		return fmt.Errorf("grain size %d sectors is not a power of two in 8..2048", h.GrainSize)
	case h.NumGTEsPerGT != GTEsPerGT:
		return fmt.Errorf("%d entries per grain table, want %d", h.NumGTEsPerGT, GTEsPerGT)
	case h.Capacity == 0 || h.Capacity > maxCapacitySectors:
		return fmt.Errorf("capacity of %d sectors is outside 1..%d (64 TiB)", h.Capacity, uint64(maxCapacitySectors))
	case h.SingleEndLine != '\n' || h.NonEndLine != ' ' || h.DoubleEndLine1 != '\r' || h.DoubleEndLine2 != '\n':
		return errors.New("newline detector bytes are damaged (file transferred in text mode?)")
	case h.Overhead == 0 || h.Overhead > 1<<20:
		return fmt.Errorf("overhead of %d sectors is implausible", h.Overhead)
	}
	return nil
}

func parseDescriptor(b []byte, hdr header, rep *Report) error {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	text := string(b)
	if !strings.HasPrefix(text, "# Disk DescriptorFile") {
		return errors.New(`does not start with "# Disk DescriptorFile"`)
	}
	extents := 0
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if f := strings.Fields(line); len(f) >= 3 && (f[0] == "RW" || f[0] == "RDONLY" || f[0] == "NOACCESS") {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || f[2] != "SPARSE" {
				return fmt.Errorf("extent line %q: want RW <sectors> SPARSE \"name\"", line)
			}
			rep.ExtentSectors += n
			extents++
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("line %q is neither key = value nor an extent", line)
		}
		k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"`)
		switch {
		case strings.HasPrefix(k, "ddb."):
			rep.DDB[strings.TrimPrefix(k, "ddb.")] = v
		case k == "createType":
			rep.CreateType = v
		case k == "CID":
			rep.CID = v
		}
	}
	switch {
	case rep.CreateType != "streamOptimized":
		return fmt.Errorf("createType %q, want \"streamOptimized\"", rep.CreateType)
	case extents != 1:
		return fmt.Errorf("%d extent lines, want 1 (monolithic)", extents)
	case uint64(rep.ExtentSectors) != hdr.Capacity:
		return fmt.Errorf("extent of %d sectors but header capacity %d", rep.ExtentSectors, hdr.Capacity)
	case len(rep.CID) != 8:
		return fmt.Errorf("CID %q is not 8 hex digits", rep.CID)
	}
	return nil
}

func finish(rep *Report, hdr header, footer *header, gd []uint32, gdAt uint64, gts map[uint64][]uint32, grains map[uint64]uint64, eosAt int64) error {
	if gd == nil {
		return &CheckError{"grain directory", eosAt, errors.New("no grain directory in the stream")}
	}
	if footer == nil {
		return &CheckError{"footer", eosAt, errors.New("no footer before the end-of-stream marker")}
	}
	if footer.GDOffset != gdAt {
		return &CheckError{"footer", eosAt, fmt.Errorf("footer gdOffset %d, but the grain directory is at sector %d", footer.GDOffset, gdAt)}
	}
	f, h := *footer, hdr
	f.GDOffset, h.GDOffset = 0, 0
	if f != h {
		return &CheckError{"footer", eosAt, errors.New("footer differs from the header in more than gdOffset")}
	}
	if hdr.GDOffset != gdAtEnd && hdr.GDOffset != gdAt {
		return &CheckError{"header", 0, fmt.Errorf("header gdOffset %d is neither GD_AT_END nor the directory's sector %d", hdr.GDOffset, gdAt)}
	}
	rep.GDOffset = gdAt
	rep.GDEntries = len(gd)
	referenced := 0
	for i, gtAt := range gd {
		if gtAt == 0 {
			continue
		}
		gt, ok := gts[uint64(gtAt)]
		if !ok {
			return &CheckError{"grain directory", int64(gdAt) * SectorSize, fmt.Errorf("entry %d points at sector %d, where no grain table was stored", i, gtAt)}
		}
		rep.GrainTables++
		for k, at := range gt {
			if at == 0 {
				continue
			}
			want := (uint64(i)*uint64(hdr.NumGTEsPerGT) + uint64(k)) * hdr.GrainSize
			lba, ok := grains[uint64(at)]
			if !ok {
				return &CheckError{"grain table", int64(gtAt) * SectorSize, fmt.Errorf("entry %d of table %d points at sector %d, where no grain was stored", k, i, at)}
			}
			if lba != want {
				return &CheckError{"grain table", int64(gtAt) * SectorSize, fmt.Errorf("entry %d of table %d points at the grain of LBA %d, want LBA %d", k, i, lba, want)}
			}
			referenced++
		}
	}
	if rep.GrainTables != len(gts) {
		return &CheckError{"grain directory", int64(gdAt) * SectorSize, fmt.Errorf("%d grain tables stored, %d referenced", len(gts), rep.GrainTables)}
	}
	if referenced != len(grains) {
		return &CheckError{"grain table", int64(gdAt) * SectorSize, fmt.Errorf("%d grains stored, %d referenced by grain tables", len(grains), referenced)}
	}
	rep.PopulatedSize = int64(len(grains)) * int64(hdr.GrainSize) * SectorSize
	return nil
}

type scanner struct {
	r   *bufio.Reader
	off int64
	buf []byte
}

func (s *scanner) read(n int) ([]byte, error) {
	if cap(s.buf) < n {
		s.buf = make([]byte, n)
	}
	b := s.buf[:n]
	m, err := io.ReadFull(s.r, b)
	s.off += int64(m)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("truncated after %d bytes: %w", s.off, err)
	}
	return b, nil
}

// skip discards n bytes without buffering them.
func (s *scanner) skip(n int64) error {
	m, err := io.CopyN(io.Discard, s.r, n)
	s.off += m
	if err != nil {
		return fmt.Errorf("truncated after %d bytes: %w", s.off, io.ErrUnexpectedEOF)
	}
	return nil
}

// pad skips to the next sector boundary; the padding must be zero.
func (s *scanner) pad() error {
	if r := s.off % SectorSize; r != 0 {
		b, err := s.read(int(SectorSize - r))
		if err != nil {
			return err
		}
		if !bytes.Equal(b, zero[:len(b)]) {
			return errors.New("non-zero padding after grain")
		}
	}
	return nil
}

func (s *scanner) fail(check string, err error) error { return s.failAt(check, s.off, err) }
func (s *scanner) failAt(check string, off int64, err error) error {
	return &CheckError{Check: check, Offset: off, Err: err}
}

type inflater struct {
	zr  io.ReadCloser
	br  bytes.Reader
	out []byte
}

// inflate decompresses one zlib stream and returns its length, failing if it
// is longer than max or has trailing garbage.
func (z *inflater) inflate(data []byte, max int) (int, error) {
	z.br.Reset(data)
	var err error
	if z.zr == nil {
		z.zr, err = zlib.NewReader(&z.br)
	} else {
		err = z.zr.(zlib.Resetter).Reset(&z.br, nil)
	}
	if err != nil {
		return 0, err
	}
	if len(z.out) < max {
		z.out = make([]byte, max)
	}
	n, err := io.ReadFull(z.zr, z.out[:max])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return n, err
	}
	if err == nil {
		// The stream must end here; io.EOF comes only after the Adler-32
		// checksum was verified.
		var one [1]byte
		k, err := z.zr.Read(one[:])
		for k == 0 && err == nil {
			k, err = z.zr.Read(one[:])
		}
		if k != 0 {
			return n, fmt.Errorf("decompresses to more than %d bytes", max)
		}
		if !errors.Is(err, io.EOF) {
			return n, err
		}
	}
	if n < max {
		return n, fmt.Errorf("zlib stream ends after %d bytes, want %d", n, max)
	}
	if z.br.Len() != 0 {
		return n, fmt.Errorf("%d bytes after the zlib stream", z.br.Len())
	}
	return n, nil
}

func le32s(b []byte) []uint32 {
	v := make([]uint32, len(b)/4)
	for i := range v {
		v[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return v
}
