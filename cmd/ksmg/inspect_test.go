package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ksmg-appliance/ksmg/ova"
	"github.com/ksmg-appliance/ksmg/ova/ovatest"
)

func inspectTestOVA(t *testing.T, dir string) string {
	t.Helper()
	raw := filepath.Join(dir, "disk.raw")
	ovatest.SparseRaw(t, raw, 96<<20+40<<10)
	p := filepath.Join(dir, "good.ova")
	err := ova.Write(context.Background(), raw, p, ova.Options{
		Name: "ksmg", Version: "0.1.0",
		Product: ova.ProductInfo{Name: "KSMG", Vendor: "ksmg-appliance"},
		CPUs:    2, MemoryMiB: 4096, EULA: "EULA text",
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestInspect runs the inspect command on a good OVA and on damaged ones;
// damaged ones must exit 2 naming the member and the failed check.
func TestInspect(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := inspectTestOVA(t, dir)
	ms := ovatest.ReadTar(t, good)
	n := ova.MemberNames("ksmg", "0.1.0")

	var out bytes.Buffer
	if err := runInspect(context.Background(), good, &out, false); err != nil {
		t.Fatalf("good OVA: %v", err)
	}
	for _, want := range []string{"OK", n.OVF, n.MF, n.VMDK, "firmware efi, secure boot true", "controllers pvscsi, NICs vmxnet3", "footer and end-of-stream OK"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := runInspect(context.Background(), good, &out, true); err != nil {
		t.Fatal(err)
	}
	var res inspectResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || !res.OK || res.Format != "ova" || res.OVA.VM.Firmware != "efi" {
		t.Fatalf("--json output %v (%v):\n%s", res, err, out.String())
	}

	withMF := func(m []ovatest.Member) []ovatest.Member {
		m[ovatest.Find(m, ".mf")].Data = ovatest.Manifest(m)
		return m
	}
	for _, tc := range []struct {
		name    string
		members []ovatest.Member
		want    string // in the error: member and check
	}{
		{"truncated vmdk", withMF([]ovatest.Member{ms[0], ms[1], {Name: ms[2].Name, Data: ms[2].Data[:len(ms[2].Data)/2]}}), n.VMDK + ": vmdk check failed"},
		{"wrong digest", []ovatest.Member{{Name: ms[0].Name, Data: append(bytes.Clone(ms[0].Data), ' ')}, ms[1], ms[2]}, n.OVF + ": digest check failed"},
		{"missing member", []ovatest.Member{ms[0], ms[2]}, n.VMDK + ": member order check failed"},
		{"out of order", []ovatest.Member{ms[0], ms[2], ms[1]}, n.VMDK + ": member order check failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(t.TempDir(), "bad.ova")
			ovatest.WriteTar(t, p, tc.members)
			var out bytes.Buffer
			err := runInspect(context.Background(), p, &out, true)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != exitDamaged {
				t.Fatalf("error %v, want exit status %d", err, exitDamaged)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			var res inspectResult
			if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.OK || res.Check == "" {
				t.Fatalf("--json failure output %+v (%v)", res, err)
			}
		})
	}

	t.Run("not an image", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "x.ova")
		if err := os.WriteFile(p, []byte("hello"), 0o644); err != nil {
			t.Fatal(err)
		}
		var ee *exitError
		if err := runInspect(context.Background(), p, &bytes.Buffer{}, false); !errors.As(err, &ee) || ee.code != exitDamaged {
			t.Fatalf("error %v, want exit status %d", err, exitDamaged)
		}
	})
}

// TestInspectBinary runs the built ksmg binary, as a user would, when
// make test provides it in KSMG_BIN_DIR.
func TestInspectBinary(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(os.Getenv("KSMG_BIN_DIR"), "ksmg")
	if os.Getenv("KSMG_BIN_DIR") == "" {
		t.Skip("KSMG_BIN_DIR not set: no built binary (make test sets it)")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("KSMG_BIN_DIR is set but: %v", err)
	}
	dir := t.TempDir()
	good := inspectTestOVA(t, dir)
	if out, err := exec.Command(bin, "inspect", good).CombinedOutput(); err != nil {
		t.Fatalf("ksmg inspect good.ova: %v\n%s", err, out)
	}
	ms := ovatest.ReadTar(t, good)
	bad := filepath.Join(dir, "bad.ova")
	ovatest.WriteTar(t, bad, []ovatest.Member{ms[0], ms[2], ms[1]})
	out, err := exec.Command(bin, "inspect", bad).CombinedOutput()
	var xe *exec.ExitError
	if !errors.As(err, &xe) || xe.ExitCode() != exitDamaged || !strings.Contains(string(out), "member order check failed") {
		t.Fatalf("ksmg inspect bad.ova: %v\n%s", err, out)
	}
}

// TestInspectVHDX checks the dispatch by content: a VHDX made by qemu-img
// (named .ova on purpose) is inspected as VHDX; a truncated one exits 2.
func TestInspectVHDX(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	ovatest.SparseRaw(t, raw, 64<<20)
	p := filepath.Join(dir, "disk.ova")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "vhdx", "-o", "subformat=dynamic", raw, p).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	var out bytes.Buffer
	if err := runInspect(context.Background(), p, &out, true); err != nil {
		t.Fatalf("inspect VHDX: %v", err)
	}
	var res inspectResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || !res.OK || res.Format != "vhdx" || res.VHDX == nil {
		t.Fatalf("--json output %+v (%v)", res, err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.vhdx")
	if err := os.WriteFile(bad, b[:1<<20+4096], 0o644); err != nil {
		t.Fatal(err)
	}
	var ee *exitError
	if err := runInspect(context.Background(), bad, &bytes.Buffer{}, false); !errors.As(err, &ee) || ee.code != exitDamaged {
		t.Fatalf("truncated VHDX: %v, want exit status %d", err, exitDamaged)
	}
}
