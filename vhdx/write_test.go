package vhdx

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The tests check our files with qemu-img, an independent VHDX
// implementation, and check qemu-img's files with Inspect.

func qemuImg(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatalf("qemu-img not installed (Debian package qemu-utils, listed in ci/packages.txt; run ci/deps.sh): %v", err)
	}
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// patch is data placed in a synthetic raw disk.
type patch struct {
	off  int64
	data []byte
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i%251) + 1 // never zero
	}
	return b
}

// makeRaw writes a sparse raw disk of the given size holding patches.
func makeRaw(t testing.TB, path string, size int64, patches []patch) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, p := range patches {
		if _, err := f.WriteAt(p.data, p.off); err != nil {
			t.Fatal(err)
		}
	}
}

// nonZeroBlocks is the set of blocks holding a non-zero byte.
func nonZeroBlocks(patches []patch, bs int64) map[int64]bool {
	m := map[int64]bool{}
	for _, p := range patches {
		for i, c := range p.data {
			if c != 0 {
				m[(p.off+int64(i))/bs] = true
			}
		}
	}
	return m
}

func TestWriteMatchesRaw(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		size      int64
		blockSize uint32
		patches   []patch
	}{
		{"one block patterned", 1 * mib, 0, []patch{{0, pattern(mib)}}},
		{"size not a multiple of the block or sector", 3*mib + 12345, 0, []patch{
			{0, randomBytes(1, 4096)}, {3*mib + 12000, pattern(345)},
		}},
		{"256 MiB, random and patterned, scattered", 256 * mib, 0, []patch{
			{0, randomBytes(2, 1536*kib)},                   // blocks 0-1, the second one partly
			{2*mib + mib/2, randomBytes(3, 3*mib)},          // crosses block boundaries
			{100*mib + 7, []byte{0x42}},                     // one byte
			{128*mib - 512, pattern(1024)},                  // two blocks, 512 bytes each
			{150 * mib, make([]byte, 2*mib)},                // written zeros: allocated in the raw file, not stored
			{256*mib - 4096, bytes.Repeat([]byte{9}, 4096)}, // last page of the disk
		}},
		{"2 MiB blocks, odd size", 5*mib + 4096, 2 * mib, []patch{
			{mib, pattern(100)}, {5 * mib, randomBytes(4, 4096)},
		}},
		{"32 MiB blocks", 100 * mib, 32 * mib, []patch{
			{31 * mib, randomBytes(5, 2*mib)}, {99 * mib, pattern(mib)},
		}},
		{"all zero", 64 * mib, 0, []patch{{mib, make([]byte, mib)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			raw, out := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "disk.vhdx")
			makeRaw(t, raw, tc.size, tc.patches)
			if err := Write(t.Context(), raw, out, Options{Identity: "test-" + tc.name, BlockSize: tc.blockSize}); err != nil {
				t.Fatal(err)
			}
			if got := qemuImg(t, "check", "-f", "vhdx", out); !strings.Contains(got, "No errors were found") {
				t.Errorf("qemu-img check: %s", got)
			}
			// Non-strict compare: the rounded-up tail of the VHDX must read
			// as zeros.
			if got := qemuImg(t, "compare", "-f", "raw", "-F", "vhdx", raw, out); !strings.Contains(got, "Images are identical.") {
				t.Errorf("qemu-img compare: %s", got)
			}
			var info struct {
				VirtualSize int64  `json:"virtual-size"`
				Format      string `json:"format"`
				ClusterSize int64  `json:"cluster-size"`
			}
			if err := json.Unmarshal([]byte(qemuImg(t, "info", "--output=json", out)), &info); err != nil {
				t.Fatal(err)
			}
			bs := int64(tc.blockSize)
			if bs == 0 {
				bs = mib
			}
			wantVirtual := (tc.size + mib - 1) / mib * mib
			if info.Format != "vhdx" || info.VirtualSize != wantVirtual || info.ClusterSize != bs {
				t.Errorf("qemu-img info: format %s, virtual size %d, cluster size %d; want vhdx, %d, %d",
					info.Format, info.VirtualSize, info.ClusterSize, wantVirtual, bs)
			}

			rep, err := Inspect(out)
			if err != nil {
				t.Fatal(err)
			}
			want := uint64(len(nonZeroBlocks(tc.patches, bs)))
			blocks := uint64((wantVirtual + bs - 1) / bs)
			if rep.BAT.FullyPresent != want || rep.BAT.Zero != blocks-want || rep.BAT.NotPresent != 0 {
				t.Errorf("BAT: %d present, %d zero, %d not present; want %d, %d, 0", rep.BAT.FullyPresent, rep.BAT.Zero, rep.BAT.NotPresent, want, blocks-want)
			}
			if rep.VirtualSize != uint64(wantVirtual) || rep.BlockSize != uint32(bs) ||
				rep.LogicalSectorSize != 512 || rep.PhysicalSectorSize != 4096 ||
				rep.LeaveBlocksAllocated || rep.HasParent {
				t.Errorf("metadata: %+v", rep)
			}
			// Every region and block is 1 MiB aligned, the file ends at the
			// last block, and nothing else was stored.
			for _, r := range rep.Regions {
				if r.Offset%mib != 0 || r.Length%mib != 0 || !r.Required {
					t.Errorf("region %s at %d length %d required %t", r.Name, r.Offset, r.Length, r.Required)
				}
			}
			batLen := roundUp(rep.BAT.Entries*8, mib)
			if wantSize := int64(batOffset + batLen + want*uint64(bs)); rep.FileSize != wantSize {
				t.Errorf("file size %d, want %d", rep.FileSize, wantSize)
			}
			for _, h := range rep.Headers {
				if !h.LogGUID.IsZero() || h.LogOffset != mib || h.LogLength != mib {
					t.Errorf("header %+v: want empty 1 MiB log at 1 MiB", h)
				}
			}
		})
	}
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestWriteDeterministic(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	makeRaw(t, raw, 16*mib, []patch{{0, randomBytes(5, 2*mib)}, {9 * mib, pattern(10)}})
	write := func(name string, o Options) (*Report, [32]byte) {
		t.Helper()
		out := filepath.Join(dir, name)
		if err := Write(t.Context(), raw, out, o); err != nil {
			t.Fatal(err)
		}
		rep, err := Inspect(out)
		if err != nil {
			t.Fatal(err)
		}
		return rep, fileHash(t, out)
	}
	r1, h1 := write("a.vhdx", Options{Identity: "ksmg-1.0.0"})
	if st, err := os.Stat(filepath.Join(dir, "a.vhdx")); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("output mode: %v, %v; want 0644", st, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(left) > 0 {
		t.Errorf("temporary files left after success: %v", left)
	}
	_, h2 := write("b.vhdx", Options{Identity: "ksmg-1.0.0"})
	if h1 != h2 {
		t.Error("two writes of the same input and identity differ")
	}
	r3, h3 := write("c.vhdx", Options{Identity: "ksmg-1.0.1"})
	if h3 == h1 || r3.DiskID == r1.DiskID || r3.Headers[0].DataWriteGUID == r1.Headers[0].DataWriteGUID {
		t.Error("a different identity gave the same GUIDs")
	}
	for _, g := range []GUID{r1.DiskID, r1.Headers[0].DataWriteGUID, r1.Headers[0].FileWriteGUID} {
		if g.IsZero() {
			t.Error("derived GUID is zero")
		}
	}
	want := Options{
		DiskID:        mustGUID("11111111-2222-3333-4444-555555555555"),
		DataWriteGUID: mustGUID("{66666666-7777-8888-9999-aaaaaaaaaaaa}"),
		FileWriteGUID: mustGUID("bbbbbbbb-cccc-dddd-eeee-ffffffffffff"),
	}
	r4, _ := write("d.vhdx", want)
	for i, h := range r4.Headers {
		if h.DataWriteGUID != want.DataWriteGUID || h.FileWriteGUID != want.FileWriteGUID {
			t.Errorf("header %d GUIDs %s %s, want the explicit ones", i+1, h.DataWriteGUID, h.FileWriteGUID)
		}
	}
	if r4.DiskID.String() != "11111111-2222-3333-4444-555555555555" {
		t.Errorf("disk id %s, want the explicit one", r4.DiskID)
	}
	// The on-disk GUID layout is mixed-endian: Data1 is little-endian.
	if r4.DiskID[0] != 0x11 || r4.DiskID[8] != 0x44 {
		t.Errorf("disk id bytes % x", r4.DiskID)
	}
}

func TestWriteRejectsBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	makeRaw(t, raw, 4*mib, []patch{{0, pattern(100)}})
	empty := filepath.Join(dir, "empty.raw")
	makeRaw(t, empty, 0, nil)
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		raw  string
		out  string
		o    Options
		want string
	}{
		{"missing raw", t.Context(), filepath.Join(dir, "nope.raw"), "o.vhdx", Options{Identity: "x"}, "no such file"},
		{"empty raw", t.Context(), empty, "o.vhdx", Options{Identity: "x"}, "empty"},
		{"raw is a directory", t.Context(), dir, "o.vhdx", Options{Identity: "x"}, "not a regular file"},
		{"block size not a power of two", t.Context(), raw, "o.vhdx", Options{Identity: "x", BlockSize: 3 * mib}, "block size 3145728"},
		{"block size too small", t.Context(), raw, "o.vhdx", Options{Identity: "x", BlockSize: 512 * kib}, "block size"},
		{"no identity", t.Context(), raw, "o.vhdx", Options{DiskID: mustGUID("11111111-2222-3333-4444-555555555555")}, "Options.Identity"},
		{"output dir missing", t.Context(), raw, "missing/o.vhdx", Options{Identity: "x"}, "no such file"},
		{"canceled", canceled, raw, "o.vhdx", Options{Identity: "x"}, "context canceled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.out)
			err := Write(tc.ctx, tc.raw, out, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if tc.name == "canceled" && !errors.Is(err, context.Canceled) {
				t.Errorf("error %v does not wrap context.Canceled", err)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("output exists after failure: %v", err)
			}
			left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
			if len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}

// TestInspectAcceptsQemuFiles reads VHDX files qemu-img wrote: the reader
// must accept what another implementation produces.
func TestInspectAcceptsQemuFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	patches := []patch{{0, randomBytes(6, mib+10)}, {5*mib + 3, pattern(7)}, {4*(1<<30) + mib, pattern(mib)}}
	makeRaw(t, raw, 5<<30, patches)
	tests := []struct {
		name        string
		args        []string
		wantPresent int64 // -1: do not check
	}{
		{"convert dynamic 1M", []string{"convert", "-f", "raw", "-O", "vhdx", "-o", "subformat=dynamic,block_size=1M", raw}, 4},
		{"convert default", []string{"convert", "-f", "raw", "-O", "vhdx", raw}, -1},
		{"create fixed", []string{"create", "-f", "vhdx", "-o", "subformat=fixed"}, -1},
		{"create dynamic empty", []string{"create", "-f", "vhdx"}, 0},
		{"create 4 MiB blocks", []string{"create", "-f", "vhdx", "-o", "log_size=1M,block_size=4M"}, 0},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, "q"+string(rune('a'+i))+".vhdx")
			args := append(append([]string(nil), tc.args...), out)
			if tc.args[0] == "create" {
				args = append(args, "64M")
			}
			qemuImg(t, args...)
			rep, err := Inspect(out)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantPresent >= 0 && rep.BAT.FullyPresent != uint64(tc.wantPresent) {
				t.Errorf("%d present blocks, want %d", rep.BAT.FullyPresent, tc.wantPresent)
			}
			if !strings.HasPrefix(rep.Creator, "QEMU") {
				t.Errorf("creator %q", rep.Creator)
			}
		})
	}
}

// TestReportOutput checks both renderings carry the facts an admin needs.
func TestReportOutput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	raw, out := filepath.Join(dir, "d.raw"), filepath.Join(dir, "d.vhdx")
	makeRaw(t, raw, 8*mib, []patch{{0, pattern(10)}})
	if err := Write(t.Context(), raw, out, Options{Identity: "r"}); err != nil {
		t.Fatal(err)
	}
	rep, err := Inspect(out)
	if err != nil {
		t.Fatal(err)
	}
	text := rep.String()
	for _, want := range []string{"virtual size:            8388608 bytes (8 MiB)", "block size:              1048576 bytes", "512 logical, 4096 physical",
		"1 present, 7 zero", "LeaveBlocksAllocated=false HasParent=false", rep.DiskID.String(), "sequence 2 (current)"} {
		if !strings.Contains(text, want) {
			t.Errorf("text report lacks %q:\n%s", want, text)
		}
	}
	j, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatal(err)
	}
	if back.DiskID != rep.DiskID || back.BAT != rep.BAT || back.VirtualSize != rep.VirtualSize || back.Headers != rep.Headers {
		t.Errorf("JSON round trip changed the report:\n%s", j)
	}
	var w bytes.Buffer
	if err := rep.WriteText(io.Writer(&w)); err != nil || w.String() != text {
		t.Errorf("WriteText differs from String: %v", err)
	}
}

// TestWriteLargeBAT writes a 200 GiB disk, whose BAT needs two 1 MiB
// units, and reads the data and the zeros around it through qemu-io (a
// full qemu-img compare would read 200 GiB).
func TestWriteLargeBAT(t *testing.T) {
	t.Parallel()
	const size = 200 << 30
	dir := t.TempDir()
	raw, out := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "disk.vhdx")
	patches := []patch{
		{0, bytes.Repeat([]byte{0x11}, 4096)},
		{150<<30 + 3*mib, bytes.Repeat([]byte{0x22}, mib)}, // BAT entry in the second MiB of the BAT
		{size - 512, bytes.Repeat([]byte{0x33}, 512)},
	}
	makeRaw(t, raw, size, patches)
	if err := Write(t.Context(), raw, out, Options{Identity: "large"}); err != nil {
		t.Fatal(err)
	}
	if got := qemuImg(t, "check", "-f", "vhdx", out); !strings.Contains(got, "No errors were found") {
		t.Errorf("qemu-img check: %s", got)
	}
	rep, err := Inspect(out)
	if err != nil {
		t.Fatal(err)
	}
	if rep.BAT.FullyPresent != 3 || rep.Regions[0].Name != "BAT" || rep.Regions[0].Length != 2*mib {
		t.Errorf("BAT %+v, regions %+v: want 3 present blocks in a 2 MiB BAT region", rep.BAT, rep.Regions)
	}
	qemuIOVerify(t, out, size, patches, 8*mib)
}

// qemuIOVerify reads a VHDX through qemu-io: each patch (all one byte
// value) must read back as that value, and the margin bytes either side of
// it (the whole gap if margin is 0) as zeros. Unlike qemu-img compare it
// never reads the raw file's holes; the margin keeps it from reading GiBs
// of zeros where a misplaced block would show next to its data anyway.
func qemuIOVerify(t *testing.T, path string, size int64, patches []patch, margin int64) {
	t.Helper()
	sorted := slices.Clone(patches)
	slices.SortFunc(sorted, func(a, b patch) int { return cmp.Compare(a.off, b.off) })
	var args []string
	read := func(pat byte, off, n int64) {
		for n > 0 {
			k := min(n, 64*mib)
			args = append(args, "-c", fmt.Sprintf("read -P %#x %d %d", pat, off, k))
			off, n = off+k, n-k
		}
	}
	gap := func(from, to int64) {
		if margin == 0 || to-from <= 2*margin {
			read(0, from, to-from)
			return
		}
		read(0, from, margin)
		read(0, to-margin, margin)
	}
	pos := int64(0)
	for _, p := range sorted {
		if p.off < pos || bytes.Count(p.data, p.data[:1]) != len(p.data) {
			t.Fatalf("qemuIOVerify needs non-overlapping single-value patches")
		}
		gap(pos, p.off)
		read(p.data[0], p.off, int64(len(p.data)))
		pos = p.off + int64(len(p.data))
	}
	gap(pos, size)
	got, err := exec.Command("qemu-io", append(append([]string{"-f", "vhdx", "-r"}, args...), path)...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-io: %v\n%s", err, got)
	}
	if n := strings.Count(string(got), "bytes at offset"); n != len(args)/2 || strings.Contains(string(got), "failed") {
		t.Errorf("qemu-io: %d of %d reads verified:\n%s", n, len(args)/2, got)
	}
}

// TestWriteChunkBoundaries covers three chunks of 4096 blocks, where the
// BAT interleaves a sector bitmap entry after each chunk's payload entries.
func TestWriteChunkBoundaries(t *testing.T) {
	t.Parallel()
	const size = 9 << 30
	dir := t.TempDir()
	raw, out := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "disk.vhdx")
	patches := []patch{
		{4<<30 - 512, bytes.Repeat([]byte{0x44}, 1024)}, // blocks 4095 and 4096
		{8<<30 - 1, []byte{0xff}},                       // last byte of chunk 1
		{8 << 30, []byte{0x01}},                         // first byte of chunk 2
		{size - 4096, bytes.Repeat([]byte{0x09}, 4096)}, // last page
	}
	makeRaw(t, raw, size, patches)
	if err := Write(t.Context(), raw, out, Options{Identity: "chunks"}); err != nil {
		t.Fatal(err)
	}
	if got := qemuImg(t, "check", "-f", "vhdx", out); !strings.Contains(got, "No errors were found") {
		t.Errorf("qemu-img check: %s", got)
	}
	rep, err := Inspect(out)
	if err != nil {
		t.Fatal(err)
	}
	if rep.BAT.FullyPresent != 5 || rep.BAT.Entries != 9216+2 {
		t.Errorf("BAT %+v: want 5 present blocks, 9218 entries", rep.BAT)
	}
	qemuIOVerify(t, out, size, patches, 8*mib)
}
