package vmdk

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ksmg-appliance/ksmg/ova/ovatest"
)

func convertFile(t *testing.T, raw, out string, opts Options) *Result {
	t.Helper()
	src, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	res, err := Convert(context.Background(), src, dst, opts)
	if err != nil {
		t.Fatalf("Convert: %v", err)
	}
	return res
}

func qemuImg(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestConvertMatchesRaw checks the stream with qemu-img (a real, independent
// VMDK reader) and with our own walker, and that the output is the same bytes
// whatever the number of workers.
func TestConvertMatchesRaw(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	const size = 2<<30 + 40<<10 // 2 GiB and a partial last grain
	ovatest.SparseRaw(t, raw, size)

	out1 := filepath.Join(dir, "a.vmdk")
	res := convertFile(t, raw, out1, Options{Workers: 4, ExtentName: "a.vmdk"})
	qemuImg(t, "check", "-f", "vmdk", out1)
	cmp := qemuImg(t, "compare", "-f", "raw", "-F", "vmdk", raw, out1)
	if !strings.Contains(cmp, "Images are identical") {
		t.Fatalf("qemu-img compare: %s", cmp)
	}
	info := qemuImg(t, "info", "--output=json", out1)
	if !strings.Contains(info, `"create-type": "streamOptimized"`) || !strings.Contains(info, `"compressed": true`) {
		t.Errorf("qemu-img info does not see a compressed streamOptimized extent:\n%s", info)
	}

	rep, err := Verify(mustOpen(t, out1))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if rep.Capacity != res.Capacity || rep.Grains != res.Grains || rep.GrainTables != res.GrainTables || rep.Size != res.Size {
		t.Errorf("Verify report %+v disagrees with Convert result %+v", rep, res)
	}
	if res.Capacity != (size+511)/512*512 {
		t.Errorf("capacity %d, want %d", res.Capacity, size)
	}
	// 256 KiB of explicit zeros must not be stored; the data is ~9.5 MiB.
	if res.Grains < 140 || res.Grains > 160 {
		t.Errorf("%d grains stored, want ~150 for the synthetic disk", res.Grains)
	}
	if rep.DDB["adapterType"] != AdapterType || rep.DDB["virtualHWVersion"] != VirtualHWVersion || rep.DDB["geometry.heads"] != "255" || len(rep.DDB["longContentID"]) != 32 {
		t.Errorf("descriptor ddb = %v", rep.DDB)
	}

	out2 := filepath.Join(dir, "b.vmdk")
	convertFile(t, raw, out2, Options{Workers: 1, ExtentName: "a.vmdk"})
	a, b := mustRead(t, out1), mustRead(t, out2)
	if !bytes.Equal(a, b) {
		t.Fatal("output differs between 4 workers and 1 worker: not deterministic")
	}
}

// TestRealImage converts the appliance's real disk when the build made one.
func TestRealImage(t *testing.T) {
	dir := os.Getenv("KSMG_IMAGE_DIR")
	if dir == "" {
		t.Skip("KSMG_IMAGE_DIR not set: no built image to convert (make test sets it)")
	}
	raws, _ := filepath.Glob(filepath.Join(dir, "ksmg-*.raw"))
	if len(raws) == 0 {
		t.Skipf("no ksmg-*.raw in %s yet", dir)
	}
	out := filepath.Join(t.TempDir(), "real.vmdk")
	convertFile(t, raws[0], out, Options{})
	qemuImg(t, "check", "-f", "vmdk", out)
	if cmp := qemuImg(t, "compare", "-f", "raw", "-F", "vmdk", raws[0], out); !strings.Contains(cmp, "Images are identical") {
		t.Fatalf("qemu-img compare: %s", cmp)
	}
	if _, err := Verify(mustOpen(t, out)); err != nil {
		t.Fatal(err)
	}
}

func TestConvertRejects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	raw := filepath.Join(dir, "r.raw")
	if err := os.WriteFile(raw, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "e.raw")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, src string
		opts      Options
		want      string
	}{
		{"capacity below source", raw, Options{Capacity: 512 << 10}, "smaller than the source"},
		{"empty source", empty, Options{}, "empty"},
		{"bad level", raw, Options{Level: 13}, "level"},
		{"quote in name", raw, Options{ExtentName: `a"b.vmdk`}, "quotes"},
		{"capacity too large", raw, Options{Capacity: 1 << 50}, "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := mustOpen(t, tc.src)
			dst, err := os.Create(filepath.Join(dir, "out.vmdk"))
			if err != nil {
				t.Fatal(err)
			}
			defer dst.Close()
			_, err = Convert(context.Background(), src, dst, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestConvertCancel(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	ovatest.SparseRaw(t, raw, 256<<20)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dst, err := os.Create(filepath.Join(dir, "out.vmdk"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := Convert(ctx, mustOpen(t, raw), dst, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

// TestVerifyRejects damages a good stream in the ways a bad download or a
// buggy writer would, and expects Verify to name the failing check.
func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	ovatest.SparseRaw(t, raw, 128<<20+40<<10)
	out := filepath.Join(dir, "d.vmdk")
	convertFile(t, raw, out, Options{})
	good := mustRead(t, out)
	le := binary.LittleEndian
	firstGrain := overheadSect * SectorSize
	gdAt := int(le.Uint64(good[len(good)-2*SectorSize+56:])) * SectorSize

	for _, tc := range []struct {
		name  string
		edit  func(b []byte) []byte
		check string
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }, "grain"},
		{"no end-of-stream", func(b []byte) []byte { return b[:len(b)-SectorSize] }, "end-of-stream"},
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }, "header"},
		{"not streamOptimized", func(b []byte) []byte {
			i := bytes.Index(b, []byte(`"streamOptimized"`))
			copy(b[i:], `"monolithicSparse"`)
			return b
		}, "descriptor"},
		{"grain data flipped", func(b []byte) []byte { b[firstGrain+grainMarkerLen+40] ^= 0xff; return b }, "grain"},
		{"grain LBA changed", func(b []byte) []byte { le.PutUint64(b[firstGrain:], 0x7f000); return b }, "grain"},
		{"directory entry wrong", func(b []byte) []byte { le.PutUint32(b[gdAt:], 3); return b }, "grain directory"},
		{"footer gdOffset wrong", func(b []byte) []byte {
			le.PutUint64(b[len(b)-2*SectorSize+56:], 5)
			return b
		}, "footer"},
		{"trailing bytes", func(b []byte) []byte { return append(b, make([]byte, 512)...) }, "end-of-stream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.edit(bytes.Clone(good))
			_, err := Verify(bytes.NewReader(b))
			var ce *CheckError
			if !errors.As(err, &ce) {
				t.Fatalf("Verify = %v, want a *CheckError", err)
			}
			if ce.Check != tc.check {
				t.Fatalf("failed check %q (%v), want %q", ce.Check, err, tc.check)
			}
		})
	}
}

func mustOpen(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
