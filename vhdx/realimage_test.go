package vhdx

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/images/boottest"
)

// realImage returns the appliance's raw disk from KSMG_IMAGE_DIR (set by
// make test, after make images), or skips saying why.
func realImage(t *testing.T) (dir, raw string) {
	t.Helper()
	dir = os.Getenv("KSMG_IMAGE_DIR")
	if dir == "" {
		t.Skip("KSMG_IMAGE_DIR not set: no built appliance image (make test sets it after make images)")
	}
	raws, _ := filepath.Glob(filepath.Join(dir, "ksmg-*.raw"))
	if len(raws) == 0 {
		t.Skipf("no ksmg-*.raw in %s: the image build has not produced the disk", dir)
	}
	return dir, raws[0]
}

// TestRealImage converts the real appliance disk and has qemu-img check it
// and compare every byte with the raw disk.
func TestRealImage(t *testing.T) {
	_, raw := realImage(t)
	out := filepath.Join(t.TempDir(), "real.vhdx")
	if err := Write(t.Context(), raw, out, Options{Identity: filepath.Base(raw)}); err != nil {
		t.Fatal(err)
	}
	if got := qemuImg(t, "check", "-f", "vhdx", out); !strings.Contains(got, "No errors were found") {
		t.Errorf("qemu-img check: %s", got)
	}
	if got := qemuImg(t, "compare", "-f", "raw", "-F", "vhdx", raw, out); !strings.Contains(got, "Images are identical.") {
		t.Errorf("qemu-img compare: %s", got)
	}
	rep, err := Inspect(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("real image: virtual %d bytes, %d of %d blocks stored, file %d bytes",
		rep.VirtualSize, rep.BAT.FullyPresent, rep.BAT.PayloadBlocks, rep.FileSize)
}

// TestShippedVHDX validates the .vhdx the build put next to the raw disk,
// when the build makes one.
func TestShippedVHDX(t *testing.T) {
	dir, _ := realImage(t)
	vs, _ := filepath.Glob(filepath.Join(dir, "ksmg-*.vhdx"))
	if len(vs) == 0 {
		t.Skipf("no ksmg-*.vhdx in %s: the build was not asked for the vhdx format", dir)
	}
	for _, v := range vs {
		if _, err := Inspect(v); err != nil {
			t.Error(err)
		}
		if got := qemuImg(t, "check", "-f", "vhdx", v); !strings.Contains(got, "No errors were found") {
			t.Errorf("qemu-img check %s: %s", v, got)
		}
	}
}

// TestBootVHDX boots the VHDX with UEFI Secure Boot in QEMU (which reads
// VHDX itself) until the gateway's SMTP banner: the disk a Hyper-V Gen 2
// VM gets must boot. QEMU has no VMBus, so the disk sits on AHCI here.
func TestBootVHDX(t *testing.T) {
	_, raw := realImage(t)
	out := filepath.Join(t.TempDir(), "boot.vhdx")
	if err := Write(t.Context(), raw, out, Options{Identity: filepath.Base(raw)}); err != nil {
		t.Fatal(err)
	}
	serial, err := os.Create(filepath.Join(t.TempDir(), "serial.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer serial.Close()
	// Complete first-boot answers, as a Hyper-V deploy passes them (KVP);
	// without them the first-boot wizard waits on the consoles.
	creds, _, err := answers.Unattended("ksmg-vhdx")
	if err != nil {
		t.Fatal(err)
	}
	res, err := boottest.Run(t.Context(), boottest.Options{Disk: out, Format: "vhdx", Credentials: creds, Serial: serial, Timeout: 15 * time.Minute})
	if res != nil {
		// How far the disk got, also when the boot failed later.
		t.Logf("secure boot %t, status line %q, banner %q", res.SecureBoot, res.StatusLine, res.Banner)
	}
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	if !res.SecureBoot {
		t.Errorf("kernel did not report Secure Boot enabled; console tail:\n%s", strings.Join(res.SerialTail, "\n"))
	}
	if !strings.HasPrefix(res.Banner, "220 ") {
		t.Errorf("SMTP banner %q, want a 220 greeting", res.Banner)
	}
	t.Logf("booted to SMTP banner in %s (status: %s)", res.ToBanner.Round(time.Second), res.StatusLine)
}
