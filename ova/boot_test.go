package ova

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/images/boottest"
)

// TestRealImageBoot takes the appliance the build made (KSMG_IMAGE_DIR): its
// OVA, or an OVA written here from its raw disk, inspects it completely, and
// boots the VMDK from inside it in QEMU with OVMF Secure Boot, PVSCSI and
// VMXNET3 until the gateway's SMTP banner answers.
func TestRealImageBoot(t *testing.T) {
	dir := os.Getenv("KSMG_IMAGE_DIR")
	if dir == "" {
		t.Skip("KSMG_IMAGE_DIR not set: no built image (make test sets it)")
	}
	ctx := context.Background()
	ovaPath := newest(filepath.Join(dir, "ksmg-*.ova"))
	if ovaPath == "" {
		raw := newest(filepath.Join(dir, "ksmg-*.raw"))
		if raw == "" {
			t.Skipf("no ksmg-*.ova or ksmg-*.raw in %s: the image build did not run", dir)
		}
		ovaPath = filepath.Join(t.TempDir(), "ksmg-test.ova")
		opts := testOptions()
		if err := Write(ctx, raw, ovaPath, opts); err != nil {
			t.Fatalf("Write %s: %v", raw, err)
		}
	}
	rep, err := Inspect(ctx, ovaPath)
	if err != nil {
		t.Fatalf("Inspect %s: %v", ovaPath, err)
	}
	t.Logf("inspected %s:\n%s", ovaPath, rep.Summary())

	disk := filepath.Join(t.TempDir(), "boot.vmdk")
	extractVMDK(t, ovaPath, disk)
	var serial strings.Builder
	// Complete first-boot answers, as a vApp deploy passes them; without
	// them the first-boot wizard waits on the consoles.
	creds, _, err := answers.Unattended("ksmg-ova")
	if err != nil {
		t.Fatal(err)
	}
	res, err := boottest.Run(ctx, boottest.Options{Disk: disk, Format: "vmdk", Credentials: creds, Serial: &serial})
	if err != nil {
		t.Fatalf("boot %s: %v\nlast console lines:\n%s", disk, err, strings.Join(res.SerialTail, "\n"))
	}
	if !res.SecureBoot {
		t.Error("the kernel did not report Secure Boot enabled")
	}
	if !strings.HasPrefix(res.Banner, "220") {
		t.Errorf("SMTP banner %q, want a 220 greeting", res.Banner)
	}
	t.Logf("booted the OVA's VMDK: state %s, SMTP banner after %s: %s", res.State(), res.ToBanner, res.Banner)
}

func newest(glob string) string {
	var best string
	var bestT int64
	m, _ := filepath.Glob(glob)
	for _, p := range m {
		if st, err := os.Stat(p); err == nil && st.ModTime().UnixNano() > bestT {
			best, bestT = p, st.ModTime().UnixNano()
		}
	}
	return best
}

func extractVMDK(t *testing.T, ovaPath, dst string) {
	t.Helper()
	f, err := os.Open(ovaPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no .vmdk member in %s: %v", ovaPath, err)
		}
		if filepath.Ext(h.Name) != ".vmdk" {
			continue
		}
		out, err := os.Create(dst)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		if _, err := io.Copy(out, tr); err != nil {
			t.Fatal(err)
		}
		return
	}
}
