package ova

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/ovf/importer"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// TestSimulatorImport deploys the OVA with govmomi's importer (what govc
// import.ova runs) into the vcsim simulator of a standalone ESXi host and of
// a vCenter, with property values set, and powers the VM on. No real ESXi
// can run here, hence the simulator: it checks the descriptor, manifest,
// lease and upload protocol, not disk contents (qemu-img does that).
func TestSimulatorImport(t *testing.T) {
	dir := t.TempDir()
	_, ovaPath := buildOVA(t, dir, 64<<20, 0)
	values := map[string]string{
		"ksmg.hostname":        "mx1.example.com",
		"ksmg.network.mode":    "static",
		"ksmg.network.address": "192.0.2.10",
		"ksmg.network.prefix":  "24",
		"ksmg.network.gateway": "192.0.2.1",
		"ksmg.admin.password":  "s3cret-Passw0rd",
		"ksmg.cluster.role":    "control",
		"ksmg.eula.accepted":   "True",
	}
	for _, tc := range []struct {
		name  string
		model *simulator.Model
	}{
		{"ESX", simulator.ESX()},
		{"VPX", simulator.VPX()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			simulator.Test(func(ctx context.Context, c *vim25.Client) {
				deploy(ctx, t, c, ovaPath, values)
			}, tc.model)
		})
	}
}

func deploy(ctx context.Context, t *testing.T, c *vim25.Client, ovaPath string, values map[string]string) {
	finder := find.NewFinder(c)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	finder.SetDatacenter(dc)
	ds, err := finder.DefaultDatastore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := finder.HostSystemList(ctx, "*")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := hosts[0].ResourcePool(ctx)
	if err != nil {
		t.Fatal(err)
	}
	folders, err := dc.Folders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	imp := importer.Importer{
		Client:       c,
		Finder:       finder,
		Datacenter:   dc,
		Datastore:    ds,
		ResourcePool: pool,
		Host:         hosts[0],
		Folder:       folders.VmFolder,
		Archive:      simArchive{&importer.TapeArchive{Path: ovaPath, Opener: importer.Opener{Client: c}}},
		// vcsim's lease reports only SHA-1 digests of uploads, so the
		// importer cannot compare them with a SHA-256 manifest; Inspect's
		// tests verify the manifest instead.
		VerifyManifest: false,
		Log:            func(s string) (int, error) { t.Log(s); return len(s), nil },
	}
	var props []importer.Property
	for k, v := range values {
		props = append(props, importer.Property{KeyValue: importer.KeyValue{Key: k, Value: v}})
	}
	name := "ksmg-test"
	ovfName := filepath.Base(MemberNames("ksmg", "0.1.0").OVF)
	ref, err := imp.Import(ctx, ovfName, importer.Options{
		Name:             &name,
		DiskProvisioning: string(types.OvfCreateImportSpecParamsDiskProvisioningTypeThin),
		PropertyMapping:  props,
		NetworkMapping:   []importer.Network{{Name: NetworkName, Network: ""}},
	})
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	vm := object.NewVirtualMachine(c, *ref)
	task, err := vm.PowerOn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatalf("power on: %v", err)
	}

	var mvm mo.VirtualMachine
	if err := vm.Properties(ctx, vm.Reference(), []string{"config", "runtime.powerState"}, &mvm); err != nil {
		t.Fatal(err)
	}
	if mvm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		t.Errorf("power state %s", mvm.Runtime.PowerState)
	}
	cfg := mvm.Config
	if cfg.GuestId != GuestOSType || cfg.Hardware.NumCPU != 4 || cfg.Hardware.MemoryMB != 8192 {
		t.Errorf("guest %s, %d CPUs, %d MiB", cfg.GuestId, cfg.Hardware.NumCPU, cfg.Hardware.MemoryMB)
	}
	devices := object.VirtualDeviceList(cfg.Hardware.Device)
	if len(devices.SelectByType((*types.ParaVirtualSCSIController)(nil))) != 1 {
		t.Error("no PVSCSI controller")
	}
	if len(devices.SelectByType((*types.VirtualVmxnet3)(nil))) != 1 {
		t.Error("no VMXNET3 NIC")
	}
	if disks := devices.SelectByType((*types.VirtualDisk)(nil)); len(disks) != 1 {
		t.Errorf("%d disks", len(disks))
	} else if d := disks[0].(*types.VirtualDisk); d.CapacityInBytes != 64<<20 && d.CapacityInKB != 64<<10 {
		t.Errorf("disk capacity %d bytes / %d KiB", d.CapacityInBytes, d.CapacityInKB)
	}
	if cfg.VAppConfig == nil {
		t.Fatal("no vApp config")
	}
	got := map[string]types.VAppPropertyInfo{}
	for _, p := range cfg.VAppConfig.GetVmConfigInfo().Property {
		got[p.Id] = p
	}
	for k, v := range values {
		if got[k].Value != v {
			t.Errorf("property %s = %q, want %q", k, got[k].Value, v)
		}
	}
	if p := got["ksmg.ksn.consent"]; p.Value != "" || p.DefaultValue != "False" {
		t.Errorf("KSN consent value %q default %q: must stay off unless set", p.Value, p.DefaultValue)
	}
}

// simArchive adapts the descriptor to one vcsim limitation: it splits
// VirtualSystemType only on commas and rejects the DMTF whitespace-separated
// list ("vmx-15 vmx-17 ...") that vSphere and ovftool accept, so the
// simulator sees only the first (lowest) entry. Everything else is served
// unchanged.
type simArchive struct{ importer.Archive }

func (a simArchive) Open(name string) (io.ReadCloser, int64, error) {
	rc, size, err := a.Archive.Open(name)
	if err != nil || !strings.HasSuffix(name, ".ovf") {
		return rc, size, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, 0, err
	}
	first := strings.Fields(HardwareVersions)[0]
	b = bytes.Replace(b, []byte(">"+HardwareVersions+"<"), []byte(">"+first+"<"), 1)
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}
