package vhdx

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The fuzz input describes a sparse file: a little-endian uint32 size,
// then segments of {uint32 offset, uint16 length, bytes}; the rest of the
// file reads as zeros. A VHDX is at least 4 MiB of mostly zeros, so this
// keeps corpus entries to a few KiB while mutations still reach every
// field, and lets the size claim more than the input holds.
const fuzzMaxSize = 64 << 20

type segment struct {
	off  int64
	data []byte
}

type sparseFile struct {
	size int64
	segs []segment
}

func decodeSparse(in []byte) *sparseFile {
	f := &sparseFile{}
	if len(in) < 4 {
		return f
	}
	word := binary.LittleEndian.Uint32(in)
	f.size = int64(word&^fixChecksums) % (fuzzMaxSize + 1)
	p := in[4:]
	for len(p) >= 6 {
		off, n := int64(binary.LittleEndian.Uint32(p)), int(binary.LittleEndian.Uint16(p[4:]))
		p = p[6:]
		n = min(n, len(p))
		f.segs = append(f.segs, segment{off, p[:n]})
		p = p[n:]
	}
	if word&fixChecksums != 0 {
		f.fixChecksums()
	}
	return f
}

// fixChecksums is the top bit of the size word: it makes the harness
// recompute the header and region table checksums, so mutations get past
// them to the metadata and the BAT.
const fixChecksums = 1 << 31

func (f *sparseFile) fixChecksums() {
	for _, s := range []struct{ off, n int64 }{
		{header1Offset, headerSize}, {header2Offset, headerSize},
		{regionTable1Offset, regionTableSize}, {regionTable2Offset, regionTableSize},
	} {
		b := make([]byte, s.n)
		if n, _ := f.ReadAt(b, s.off); n != len(b) {
			continue
		}
		f.segs = append(f.segs, segment{s.off + 4, binary.LittleEndian.AppendUint32(nil, checksum(b, 4))})
	}
}

func (f *sparseFile) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= f.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(b)), f.size-off))
	clear(b[:n])
	for _, s := range f.segs {
		lo, hi := max(s.off, off), min(s.off+int64(len(s.data)), off+int64(n))
		if lo < hi {
			copy(b[lo-off:hi-off], s.data[lo-s.off:hi-s.off])
		}
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

// encodeSparse turns a real file into a fuzz input: its non-zero runs.
func encodeSparse(file []byte) []byte {
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(file)))
	for i := 0; i < len(file); {
		if file[i] == 0 {
			i++
			continue
		}
		// Extend the run across short zero gaps so fields stay together.
		j, gap := i, 0
		for j < len(file) && j-i < 0xffff && gap < 32 {
			if file[j] == 0 {
				gap++
			} else {
				gap = 0
			}
			j++
		}
		j -= gap
		out = binary.LittleEndian.AppendUint32(out, uint32(i))
		out = binary.LittleEndian.AppendUint16(out, uint16(j-i))
		out = append(out, file[i:j]...)
		i = j
	}
	return out
}

// TestSparseRoundTrip checks the fuzz encoding reproduces valid files, so
// the seeds start the fuzzer from files that pass.
func TestSparseRoundTrip(t *testing.T) {
	t.Parallel()
	for name, good := range map[string][]byte{"ours": goodFile(t), "seed": fuzzSeedWritten(t), "qemu": fuzzSeedQemu(t)} {
		f := decodeSparse(encodeSparse(good))
		got := make([]byte, len(good))
		if n, err := f.ReadAt(got, 0); n != len(good) || err != nil {
			t.Fatalf("%s: ReadAt: %d, %v", name, n, err)
		}
		if string(got) != string(good) {
			t.Fatalf("%s: sparse encoding does not reproduce the file", name)
		}
		if _, err := InspectReader(f, f.size); err != nil {
			t.Fatalf("%s: decoded file rejected: %v", name, err)
		}
	}
}

// FuzzInspect feeds hostile files to the reader: it must return a
// *FormatError or a consistent report, never panic or run away.
func FuzzInspect(f *testing.F) {
	for _, seed := range [][]byte{fuzzSeedWritten(f), fuzzSeedQemu(f)} {
		in := encodeSparse(seed)
		f.Add(in)
		fixed := append([]byte(nil), in...)
		binary.LittleEndian.PutUint32(fixed, binary.LittleEndian.Uint32(in)|fixChecksums)
		f.Add(fixed)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		sf := decodeSparse(in)
		rep, err := InspectReader(sf, sf.size)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error is not a *FormatError: %v", err)
			}
			return
		}
		if rep.CurrentHeader != 1 && rep.CurrentHeader != 2 {
			t.Errorf("current header %d", rep.CurrentHeader)
		}
		if rep.BAT.AllocatedBytes > uint64(sf.size) {
			t.Errorf("%d bytes allocated in a %d-byte file", rep.BAT.AllocatedBytes, sf.size)
		}
		if got := rep.BAT.FullyPresent + rep.BAT.Zero + rep.BAT.NotPresent + rep.BAT.Undefined + rep.BAT.Unmapped; got != rep.BAT.PayloadBlocks {
			t.Errorf("states add up to %d of %d payload blocks", got, rep.BAT.PayloadBlocks)
		}
		if _, err := json.Marshal(rep); err != nil {
			t.Error(err)
		}
		_ = rep.String()
	})
}

// fuzzSeedWritten is a small file of ours: 8 MiB virtual, two blocks.
func fuzzSeedWritten(tb testing.TB) []byte {
	dir := tb.TempDir()
	raw, out := filepath.Join(dir, "d.raw"), filepath.Join(dir, "d.vhdx")
	makeRaw(tb, raw, 8*mib, []patch{{0, pattern(64)}, {3*mib + 5, pattern(64)}})
	if err := Write(tb.Context(), raw, out, Options{Identity: "fuzz"}); err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// fuzzSeedQemu is a small file of qemu-img's, with its different layout.
func fuzzSeedQemu(tb testing.TB) []byte {
	out := filepath.Join(tb.TempDir(), "q.vhdx")
	if b, err := exec.Command("qemu-img", "create", "-q", "-f", "vhdx", out, "8M").CombinedOutput(); err != nil {
		tb.Fatalf("qemu-img create (Debian package qemu-utils, in ci/packages.txt): %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
