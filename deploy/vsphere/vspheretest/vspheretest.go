// Package vspheretest holds helpers for tests that deploy into govmomi's
// vcsim simulator through the vsphere driver (deploy/vsphere's own tests,
// the fleet runner's tests and its benchmark):
//
//   - SmallOVA builds a small appliance OVA (8 MiB disk) once per call;
//   - Tampered copies an OVA with a changed disk byte and the old manifest;
//   - Target gives the driver configuration keys for a running simulator
//     (url, username, password_file, insecure), as an inventory target
//     would hold them;
//   - Fail injects faults into simulator methods (ImportVApp,
//     PowerOnVM_Task, ...) through the simulator's FaultInjector;
//   - VMs lists the VM names of the simulator; SetGuestIP makes a VM
//     report a guest IP the way VMware Tools would.
//
// Typical use:
//
//	simulator.Test(func(ctx context.Context, c *vim25.Client) {
//		cfg := vspheretest.Target(t, c) // map for the inventory's target
//		ovaPath := vspheretest.SmallOVA(t)
//		vspheretest.Fail(ctx, "PowerOnVM_Task", 3)
//		...
//	}, simulator.VPX())
package vspheretest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ksmg-appliance/ksmg/firstboot/sources"
	"github.com/ksmg-appliance/ksmg/ova"
	"github.com/ksmg-appliance/ksmg/ova/ovatest"
)

// DiskCapacity is the virtual disk size of SmallOVA, in bytes.
const DiskCapacity = 8 << 20

// CPUs and MemoryMiB are SmallOVA's virtual hardware.
const (
	CPUs      = 2
	MemoryMiB = 2048
)

// SmallOVA writes a small appliance OVA with ova.Write (an 8 MiB sparse
// disk, the product's first-boot properties) to t.TempDir and returns its
// path.
//
// The OVA is exactly what ova.Write produced, including the list of
// acceptable hardware versions that the driver resolves for vcsim.
func SmallOVA(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	ovatest.SparseRaw(t, raw, DiskCapacity)
	p := filepath.Join(dir, "ksmg.ova")
	err := ova.Write(context.Background(), raw, p, ova.Options{
		Name:    "ksmg",
		Version: "0.1.0",
		Product: ova.ProductInfo{Name: "KSMG mail gateway", Vendor: "ksmg-appliance"},
		CPUs:    CPUs, MemoryMiB: MemoryMiB,
		EULA: "END USER LICENSE AGREEMENT (test)",
	})
	if err != nil {
		t.Fatalf("vspheretest: write OVA: %v", err)
	}
	if err := os.Remove(raw); err != nil {
		t.Fatal(err)
	}
	return p
}

// Tampered writes a copy of the OVA at p whose descriptor asks for 64
// CPUs instead of the original count, a well-formed change that only the
// manifest (which still lists the original digest) reveals, and returns
// its path.
func Tampered(t testing.TB, p string) string {
	t.Helper()
	ms := ovatest.ReadTar(t, p)
	i := ovatest.Find(ms, ".ovf")
	old := ms[i].Data
	ms[i].Data = bytes.Replace(old, []byte("<rasd:VirtualQuantity>"+strconv.Itoa(CPUs)+"<"), []byte("<rasd:VirtualQuantity>64<"), 1)
	if bytes.Equal(old, ms[i].Data) {
		t.Fatal("vspheretest: Tampered found no CPU count to change in the descriptor")
	}
	out := filepath.Join(t.TempDir(), "tampered.ova")
	ovatest.WriteTar(t, out, ms)
	return out
}

// Target returns the vsphere driver's configuration keys for the simulator
// c is connected to, as an inventory's target holds them: url (without
// credentials), username, password_file (a 0600 file in t.TempDir) and
// insecure (vcsim's certificate is self-signed); on the VPX model also
// cluster DC0_C0, since its datacenter has two resource pools (the
// cluster's and the standalone host's). vcsim accepts any non-empty
// credentials.
func Target(t testing.TB, c *vim25.Client) map[string]any {
	t.Helper()
	u := *c.URL()
	u.User = nil
	pw := filepath.Join(t.TempDir(), "vsphere-password")
	if err := os.WriteFile(pw, []byte("vcsim-pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	target := map[string]any{
		"url":           u.String(),
		"username":      "vcsim-user",
		"password_file": pw,
		"insecure":      true,
	}
	if c.IsVC() {
		target["cluster"] = "DC0_C0"
	}
	return target
}

// Fail makes the simulator fail the next count calls of method (the SOAP
// name, e.g. "ImportVApp", "PowerOnVM_Task", "ReconfigVM_Task") with a
// SystemError fault; count 0 fails every call until the returned stop
// function is called. It uses the simulator's FaultInjector; ctx is the
// context simulator.Test passes.
//
// The counting is done here under a mutex rather than with the rule's
// MaxCount: the injector updates its counters under a read lock, which
// races when calls arrive concurrently (a fleet deploys in parallel).
func Fail(ctx context.Context, method string, count int) (stop func()) {
	var mu sync.Mutex
	left, enabled := count, true
	simulator.ServiceFromContext(ctx).AddFaultRule(&simulator.FaultInjectionRule{
		MethodName:  method,
		ObjectType:  "*",
		ObjectName:  "*",
		Probability: 1,
		FaultType:   simulator.FaultTypeCustom,
		Fault:       &types.SystemError{RuntimeFault: types.RuntimeFault{}, Reason: "injected by vspheretest.Fail"},
		Message:     "injected by vspheretest.Fail",
		Enabled:     true,
		InclusionPropertyFilter: func(mo.Reference) bool {
			mu.Lock()
			defer mu.Unlock()
			if !enabled {
				return false
			}
			if count == 0 {
				return true
			}
			if left == 0 {
				return false
			}
			left--
			return true
		},
	})
	return func() {
		mu.Lock()
		enabled = false
		mu.Unlock()
	}
}

// VMs returns the sorted names of all virtual machines in the simulator.
func VMs(ctx context.Context, t testing.TB, c *vim25.Client) []string {
	t.Helper()
	m := view.NewManager(c)
	v, err := m.CreateContainerView(ctx, c.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = v.Destroy(ctx) }()
	var vms []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name"}, &vms); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(vms))
	for _, vm := range vms {
		names = append(names, vm.Name)
	}
	sort.Strings(names)
	return names
}

// SetGuestIP makes the simulator report ip as the guest's address of vm,
// what VMware Tools do in a real guest (vcsim's extraConfig alias
// SET.guest.ipAddress).
func SetGuestIP(ctx context.Context, c *vim25.Client, vm types.ManagedObjectReference, ip string) error {
	task, err := object.NewVirtualMachine(c, vm).Reconfigure(ctx, types.VirtualMachineConfigSpec{
		ExtraConfig: []types.BaseOptionValue{&types.OptionValue{Key: "SET.guest.ipAddress", Value: ip}},
	})
	if err != nil {
		return err
	}
	return task.Wait(ctx)
}

// Rewritten writes a copy of the OVA at p whose descriptor edit returns,
// with the manifest updated to match (a well-formed OVA that asks for
// something else, e.g. another NIC type), and returns its path.
func Rewritten(t testing.TB, p string, edit func(desc []byte) []byte) string {
	t.Helper()
	ms := ovatest.ReadTar(t, p)
	i := ovatest.Find(ms, ".ovf")
	old := ms[i].Data
	ms[i].Data = edit(bytes.Clone(old))
	if bytes.Equal(old, ms[i].Data) {
		t.Fatal("vspheretest: Rewritten: the edit changed nothing")
	}
	ms[ovatest.Find(ms, ".mf")].Data = ovatest.Manifest(ms)
	out := filepath.Join(t.TempDir(), "rewritten.ova")
	ovatest.WriteTar(t, out, ms)
	return out
}

// DoneKey is what first boot sets in a real guest, through VMware Tools,
// once it applied its answers.
const DoneKey = sources.GuestInfoDoneKey

// PlayGuest plays the guest of the VM called name: once the VM is powered
// on, it reports ip (as VMware Tools would) and, unless silent, first
// boot's completion (guestinfo.ksmg.firstboot=done, as cmd/ksmg-firstboot
// sets it through vmware-rpctool). It gives up after a minute or when ctx
// ends; errors go to t.
func PlayGuest(ctx context.Context, t testing.TB, c *vim25.Client, name, ip string, silent bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		for _, vm := range VMsByName(ctx, t, c, name) {
			if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
				continue
			}
			if err := SetGuestIP(ctx, c, vm.Self, ip); err != nil {
				t.Errorf("vspheretest: set guest IP of %s: %v", name, err)
				return
			}
			if !silent {
				if err := SetExtraConfig(ctx, c, vm.Self, DoneKey, "done"); err != nil {
					t.Errorf("vspheretest: signal first boot of %s: %v", name, err)
				}
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SetExtraConfig sets one extraConfig key of vm, as govc vm.change -e
// does.
func SetExtraConfig(ctx context.Context, c *vim25.Client, vm types.ManagedObjectReference, key, value string) error {
	task, err := object.NewVirtualMachine(c, vm).Reconfigure(ctx, types.VirtualMachineConfigSpec{
		ExtraConfig: []types.BaseOptionValue{&types.OptionValue{Key: key, Value: value}},
	})
	if err != nil {
		return err
	}
	return task.Wait(ctx)
}

// VMsByName reads the VMs called name the way govc vm.info -json reads
// them (config, runtime, guest).
func VMsByName(ctx context.Context, t testing.TB, c *vim25.Client, name string) []mo.VirtualMachine {
	t.Helper()
	v, err := view.NewManager(c).CreateContainerView(ctx, c.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = v.Destroy(ctx) }()
	var vms []mo.VirtualMachine
	if err := v.RetrieveWithFilter(ctx, []string{"VirtualMachine"}, []string{"name", "config", "runtime", "guest", "network"}, &vms, property.Match{"name": name}); err != nil {
		if strings.Contains(err.Error(), "object references is empty") {
			return nil
		}
		t.Fatal(err)
	}
	return vms
}

// ExtraConfig is vm's extraConfig as strings.
func ExtraConfig(vm mo.VirtualMachine) map[string]string {
	out := map[string]string{}
	if vm.Config == nil {
		return out
	}
	for _, o := range vm.Config.ExtraConfig {
		ov := o.GetOptionValue()
		s, _ := ov.Value.(string)
		out[ov.Key] = s
	}
	return out
}

// VAppProperties are vm's vApp property values by id.
func VAppProperties(vm mo.VirtualMachine) map[string]string {
	out := map[string]string{}
	if vm.Config == nil || vm.Config.VAppConfig == nil || vm.Config.VAppConfig.GetVmConfigInfo() == nil {
		return out
	}
	for _, p := range vm.Config.VAppConfig.GetVmConfigInfo().Property {
		out[p.Id] = p.Value
	}
	return out
}
