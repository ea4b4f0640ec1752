package ova

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ksmg-appliance/ksmg/ova/ovatest"
)

func testOptions() Options {
	return Options{
		Name:    "ksmg",
		Version: "0.1.0",
		Product: ProductInfo{Name: "KSMG mail gateway", Vendor: "ksmg-appliance", ProductURL: "https://example.com/ksmg"},
		CPUs:    4, MemoryMiB: 8192,
		EULA: "END USER LICENSE AGREEMENT\n\nTerms & <conditions> apply.",
	}
}

// buildOVA writes an OVA of a synthetic sparse disk; capacity 0 = raw size.
func buildOVA(t *testing.T, dir string, rawSize, capacity int64) (raw, ovaPath string) {
	t.Helper()
	raw = filepath.Join(dir, "disk.raw")
	ovatest.SparseRaw(t, raw, rawSize)
	ovaPath = filepath.Join(dir, "ksmg.ova")
	opts := testOptions()
	opts.DiskCapacity = capacity
	if err := Write(context.Background(), raw, ovaPath, opts); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return raw, ovaPath
}

func TestWriteOVA(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const rawSize = 2<<30 + 40<<10
	const capacity = 4 << 30 // the OVF may ask for more than the raw holds
	raw, ovaPath := buildOVA(t, dir, rawSize, capacity)
	names := MemberNames("ksmg", "0.1.0")

	checkTarHeaders(t, ovaPath, names)

	// Manifest: exactly "SHA256(name)= hex" per member, digests right.
	ms := ovatest.ReadTar(t, ovaPath)
	if got, want := string(ms[1].Data), string(ovatest.Manifest(ms)); got != want {
		t.Fatalf("manifest\n%s\nwant\n%s", got, want)
	}

	checkDescriptor(t, ms[0].Data, capacity)

	// The disk inside: same content as the raw, per qemu-img.
	vmdkPath := filepath.Join(dir, "extracted.vmdk")
	if err := os.WriteFile(vmdkPath, ms[2].Data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "check", "-f", "vmdk", vmdkPath).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img check: %v\n%s", err, out)
	}
	// compare -s would fail on the larger capacity; plain compare checks
	// that the extra 2 GiB read as zeros.
	out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "vmdk", raw, vmdkPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Images are identical") {
		t.Fatalf("qemu-img compare: %v\n%s", err, out)
	}

	// Inspect agrees.
	rep, err := Inspect(context.Background(), ovaPath)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if rep.VM.Firmware != "efi" || !rep.VM.SecureBoot || fmt.Sprint(rep.VM.Controllers) != "[pvscsi]" || fmt.Sprint(rep.VM.NICs) != "[vmxnet3]" || len(rep.VM.Properties) != len(Properties()) {
		t.Errorf("Inspect VM = %+v", rep.VM)
	}
	if d := rep.Disks[names.VMDK]; d == nil || d.Capacity != capacity {
		t.Errorf("Inspect VMDK = %+v", d)
	}
	if s := rep.Summary(); !strings.Contains(s, "pvscsi") || !strings.Contains(s, "footer and end-of-stream OK") {
		t.Errorf("summary:\n%s", s)
	}

	// Deterministic: a second build is the same bytes, and no temp files remain.
	again := filepath.Join(dir, "again.ova")
	opts := testOptions()
	opts.DiskCapacity = capacity
	opts.Workers = 1
	if err := Write(context.Background(), raw, again, opts); err != nil {
		t.Fatal(err)
	}
	if sha(t, again) != sha(t, ovaPath) {
		t.Error("two builds of the same disk differ")
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

// checkTarHeaders: ustar, fixed metadata, .ovf then .mf then .vmdk.
func checkTarHeaders(t *testing.T, ovaPath string, names Names) {
	t.Helper()
	f, err := os.Open(ovaPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var order []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, h.Name)
		if h.Format != tar.FormatUSTAR || !h.ModTime.Equal(time.Unix(0, 0)) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Mode != 0o644 {
			t.Errorf("member %s header: format %v mtime %v uid %d gid %d uname %q mode %o", h.Name, h.Format, h.ModTime, h.Uid, h.Gid, h.Uname, h.Mode)
		}
	}
	if want := []string{names.OVF, names.MF, names.VMDK}; fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("member order %v, want %v", order, want)
	}

}

// checkDescriptor maps the descriptor through govmomi, as vSphere would,
// and checks what the appliance needs of it.
func checkDescriptor(t *testing.T, data []byte, capacity int64) {
	t.Helper()
	env, err := ovf.Unmarshal(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("ovf.Unmarshal: %v", err)
	}
	spec, err := env.ToConfigSpec()
	if err != nil {
		t.Fatalf("ToConfigSpec: %v", err)
	}
	if spec.Firmware != "efi" || spec.BootOptions == nil || spec.BootOptions.EfiSecureBootEnabled == nil || !*spec.BootOptions.EfiSecureBootEnabled {
		t.Errorf("firmware %q boot options %+v, want efi with secure boot", spec.Firmware, spec.BootOptions)
	}
	if spec.GuestId != GuestOSType || spec.NumCPUs != 4 || spec.MemoryMB != 8192 || !strings.HasPrefix(spec.Version, "vmx-15") {
		t.Errorf("guest %q cpus %d mem %d version %q", spec.GuestId, spec.NumCPUs, spec.MemoryMB, spec.Version)
	}
	if os := env.VirtualSystem.OperatingSystem; os == nil || os.ID != CIMOSDebian64 || ovf.CIMOSTypeToGuestID(ovf.CIMOSType(os.ID), *os.Version) != types.VirtualMachineGuestOsIdentifierDebian12_64Guest {
		t.Errorf("OperatingSystemSection %+v does not fall back to a Debian 64-bit guest", os)
	}
	var pvscsi, vmxnet3, disks int
	for _, dc := range spec.DeviceChange {
		switch d := dc.GetVirtualDeviceConfigSpec().Device.(type) {
		case *types.ParaVirtualSCSIController:
			pvscsi++
		case *types.VirtualVmxnet3:
			vmxnet3++
		case *types.VirtualDisk:
			disks++
			if d.CapacityInBytes != capacity {
				t.Errorf("disk capacity %d, want %d", d.CapacityInBytes, int64(capacity))
			}
		case types.BaseVirtualController, types.BaseVirtualEthernetCard:
			t.Errorf("unexpected device %T", d)
		}
	}
	if pvscsi != 1 || vmxnet3 != 1 || disks != 1 {
		t.Errorf("devices: %d PVSCSI, %d VMXNET3, %d disks; want 1 each", pvscsi, vmxnet3, disks)
	}
	extra := map[string]string{}
	for _, o := range spec.ExtraConfig {
		v := o.GetOptionValue()
		extra[v.Key] = fmt.Sprint(v.Value)
	}
	if extra["disk.EnableUUID"] != "TRUE" || extra["uefi.secureBoot.enabled"] != "TRUE" {
		t.Errorf("extraConfig %v", extra)
	}
	if tr := env.VirtualSystem.VirtualHardware[0].Transport; tr == nil || *tr != Transport {
		t.Errorf("transport %v, want %s", tr, Transport)
	}
	if e := env.VirtualSystem.Eula; len(e) != 1 || e[0].License != testOptions().EULA {
		t.Errorf("EULA section %+v", e)
	}
	checkProperties(t, &spec)
}

// checkProperties: every property of Properties() as declared, the
// password without a default, consent off by default.
func checkProperties(t *testing.T, spec *types.VirtualMachineConfigSpec) {
	t.Helper()
	props := map[string]types.VAppPropertyInfo{}
	for _, p := range spec.VAppConfig.GetVmConfigSpec().Property {
		props[p.Info.Id] = *p.Info
	}
	for _, want := range Properties() {
		got, ok := props[want.Key]
		if !ok {
			t.Errorf("property %s missing", want.Key)
			continue
		}
		if got.Label != want.Label || got.Category != want.Category || got.DefaultValue != want.Default || !*got.UserConfigurable {
			t.Errorf("property %s = %+v, want %+v", want.Key, got, want)
		}
	}
	if p := props["ksmg.admin.password"]; !strings.HasPrefix(p.Type, "password") || p.DefaultValue != "" {
		t.Errorf("admin password property: type %q default %q", p.Type, p.DefaultValue)
	}
	if p := props["ksmg.ksn.consent"]; p.DefaultValue != "False" {
		t.Errorf("KSN consent default %q, want False", p.DefaultValue)
	}
	if p := props["ksmg.network.mode"]; p.Type != `string["dhcp", "static"]` {
		t.Errorf("network mode type %q", p.Type)
	}

}

func sha(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestWriteRejects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(raw, bytes.Repeat([]byte{1}, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Options)
		raw  string
		want string
	}{
		{"bad name", func(o *Options) { o.Name = "KSMG VM" }, raw, "option Name"},
		{"no EULA", func(o *Options) { o.EULA = " " }, raw, "option EULA"},
		{"no vendor", func(o *Options) { o.Product.Vendor = "" }, raw, "Product.Vendor"},
		{"zero CPUs", func(o *Options) { o.CPUs = 0 }, raw, "option CPUs"},
		{"tiny memory", func(o *Options) { o.MemoryMiB = 16 }, raw, "option MemoryMiB"},
		{"odd capacity", func(o *Options) { o.DiskCapacity = 1000 }, raw, "option DiskCapacity"},
		{"capacity below disk", func(o *Options) { o.DiskCapacity = 512 << 10 }, raw, "smaller than the source"},
		{"password default", func(o *Options) {
			o.Properties = Properties()
			for i := range o.Properties {
				if o.Properties[i].Password {
					o.Properties[i].Default = "changeme"
				}
			}
		}, raw, "must not ship a default"},
		{"duplicate key", func(o *Options) { o.Properties = append(Properties(), Properties()[0]) }, raw, "duplicate key"},
		{"bad boolean", func(o *Options) {
			o.Properties = []Property{{Key: "a.b", Type: "boolean", Default: "yes", Label: "x", Category: "y"}}
		}, raw, "boolean default"},
		{"missing raw", func(*Options) {}, filepath.Join(dir, "nope.raw"), "open raw disk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, "out.ova")
			opts := testOptions()
			tc.edit(&opts)
			err := Write(context.Background(), tc.raw, out, opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s exists after a failed Write", out)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 0 {
				t.Errorf("temporary files left behind: %v", left)
			}
		})
	}
}

func TestWriteCancelled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	ovatest.SparseRaw(t, raw, 256<<20)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := filepath.Join(dir, "x.ova")
	if err := Write(ctx, raw, out, testOptions()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Write = %v, want context.Canceled", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Error("output exists after cancellation")
	}
}
