//go:build windows

package hyperv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/microsoft/wmi/pkg/base/host"
	"github.com/microsoft/wmi/pkg/base/instance"
	"github.com/microsoft/wmi/pkg/constant"
	wmierrors "github.com/microsoft/wmi/pkg/errors"
	"github.com/microsoft/wmi/pkg/virtualization/core/memory"
	"github.com/microsoft/wmi/pkg/virtualization/core/processor"
	vmservice "github.com/microsoft/wmi/pkg/virtualization/core/service"
	storage "github.com/microsoft/wmi/pkg/virtualization/core/storage/service"
	"github.com/microsoft/wmi/pkg/virtualization/core/virtualsystem"
	"github.com/microsoft/wmi/pkg/virtualization/network/virtualswitch"
	wmi "github.com/microsoft/wmi/pkg/wmiinstance"
	v2 "github.com/microsoft/wmi/server2019/root/virtualization/v2"

	"github.com/ksmg-appliance/ksmg/deploy/hyperv/kvp"
)

// secureBootTemplateID is the ID of Hyper-V's "Microsoft UEFI Certificate
// Authority" Secure Boot template (Get-VMHost | Select-Object -Expand
// SecureBootTemplates), which WMI takes instead of the name.
const secureBootTemplateID = "272e7447-90a4-4563-a4b9-8e4ab00526ce"

const adapterName = "Network Adapter"

// WMIHost is the WMI driver (github.com/microsoft/wmi): DCOM to the
// root\virtualization\v2 namespace of this machine or of a remote host
// with credentials. Disks are copied with the Windows file APIs to the
// share (the caller's Windows logon reaches it), or straight to the
// host-local path when the host is this machine and no share is set.
//
// The library keeps per-host caches without locks, so calls are
// serialised.
type WMIHost struct {
	name  string
	wh    *host.WmiHost
	share string // UNC of path, "" on the local host
	path  string

	mu sync.Mutex
}

func openWMI(_ context.Context, cfg Config, password string) (Host, error) {
	var wh *host.WmiHost
	name := cfg.Host
	if isLocal(cfg.Host) {
		wh, name = host.NewWmiLocalHost(), "localhost"
	} else {
		user, domain := splitUser(cfg.User)
		wh = host.NewWmiHostWithCredential(cfg.Host, user, password, domain)
	}
	h := &WMIHost{name: name, wh: wh, share: cfg.Share, path: cfg.Path}
	if _, err := vmservice.GetVirtualSystemManagementService(wh); err != nil {
		return nil, fmt.Errorf("wmi %s: Hyper-V management service: %w", name, err)
	}
	return h, nil
}

func (h *WMIHost) vmms() (*vmservice.VirtualSystemManagementService, error) {
	s, err := vmservice.GetVirtualSystemManagementService(h.wh)
	if err != nil {
		return nil, fmt.Errorf("wmi %s: %w", h.name, err)
	}
	return s, nil
}

// Name implements Host.
func (h *WMIHost) Name() string { return h.name }

// Close implements Host.
func (h *WMIHost) Close() error { return nil }

// vm finds the VM by its GUID.
func (h *WMIHost) vm(id string) (*virtualsystem.VirtualMachine, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	vm, err := virtualsystem.GetVirtualMachineByVMId(h.wh, id)
	if err != nil {
		return nil, fmt.Errorf("VM %s: %w", id, err)
	}
	return vm, nil
}

// FindVM implements Host.
func (h *WMIHost) FindVM(ctx context.Context, name string) (*VM, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, err := h.vmms()
	if err != nil {
		return nil, err
	}
	vms, err := s.GetVirtualMachines()
	if err != nil {
		return nil, fmt.Errorf("find VM %s: %w", name, err)
	}
	defer vms.Close()
	var found []*VM
	for _, vm := range vms {
		if vm.Name() != name {
			continue
		}
		v, err := vmOf(vm)
		if err != nil {
			return nil, fmt.Errorf("find VM %s: %w", name, err)
		}
		found = append(found, &v)
	}
	switch len(found) {
	case 0:
		return nil, nil
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("find VM %s: %d VMs have that name; ksmg needs it to be unique on the host", name, len(found))
}

// CopyDisk implements Host.
func (h *WMIHost) CopyDisk(ctx context.Context, local, folder string, progress func(done, total int64)) (string, error) {
	root := h.share
	if root == "" {
		root = h.path
	}
	dst := joinWin(root, folder, folder+".vhdx")
	if err := copyFile(ctx, local, dst, progress); err != nil {
		return "", fmt.Errorf("copy disk to %s: %w", dst, err)
	}
	return joinWin(h.path, folder, folder+".vhdx"), nil
}

// ListVMs implements Host.
func (h *WMIHost) ListVMs(ctx context.Context) ([]VM, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, err := h.vmms()
	if err != nil {
		return nil, err
	}
	vms, err := s.GetVirtualMachines()
	if err != nil {
		return nil, fmt.Errorf("list VMs: %w", err)
	}
	defer vms.Close()
	var out []VM
	for _, vm := range vms {
		v, err := vmOf(vm)
		if err != nil {
			return nil, fmt.Errorf("list VMs: %w", err)
		}
		if v.Record().Marked() {
			out = append(out, v)
		}
	}
	return out, nil
}

// vmOf is what the driver needs of vm: ID, name, state and notes.
func vmOf(vm *virtualsystem.VirtualMachine) (VM, error) {
	v := VM{ID: vm.ID(), Name: vm.Name()}
	if st, err := vm.State(); err == nil {
		v.State = fmt.Sprint(st)
	}
	vssd, err := vm.GetVirtualSystemSettingData()
	if err != nil {
		return v, fmt.Errorf("settings of %s: %w", v.Name, err)
	}
	notes, err := vssd.GetPropertyNotes()
	vssd.Close()
	if err != nil {
		return v, fmt.Errorf("notes of %s: %w", v.Name, err)
	}
	v.Notes = strings.Join(notes, "\n")
	return v, nil
}

// Stop implements Host: a guest shutdown, then turned off after timeout.
func (h *WMIHost) Stop(ctx context.Context, id string, timeout time.Duration) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	vm, err := h.vm(id)
	if err != nil {
		return fmt.Errorf("stop VM: %w", err)
	}
	defer vm.Close()
	st, err := vm.State()
	if err != nil {
		return fmt.Errorf("stop VM %s: %w", id, err)
	}
	if st == virtualsystem.Off {
		return nil
	}
	if err := vm.ChangeState(virtualsystem.Stopping, 0, int16(min(timeout/time.Second, 3600))); err == nil {
		if vm.WaitForState(virtualsystem.Off, int32(timeout/time.Second)) == nil {
			return nil
		}
	}
	if err := vm.Stop(true); err != nil {
		return fmt.Errorf("stop VM %s: turn off: %w", id, err)
	}
	return nil
}

// Rename implements Host.
func (h *WMIHost) Rename(ctx context.Context, id, name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	vmms, err := h.vmms()
	if err != nil {
		return err
	}
	vm, err := h.vm(id)
	if err != nil {
		return fmt.Errorf("rename VM: %w", err)
	}
	defer vm.Close()
	vssd, err := vm.GetVirtualSystemSettingData()
	if err != nil {
		return fmt.Errorf("rename VM %s: %w", id, err)
	}
	defer vssd.Close()
	if err := vssd.SetPropertyElementName(name); err != nil {
		return fmt.Errorf("rename VM %s: %w", id, err)
	}
	if err := vmms.ModifyVirtualSystemSettings(vssd, -1); err != nil {
		return fmt.Errorf("rename VM %s: %w", id, err)
	}
	return nil
}

// Reconfigure implements Host.
func (h *WMIHost) Reconfigure(ctx context.Context, id string, c Change) error {
	h.mu.Lock()
	vmms, err := h.vmms()
	if err != nil {
		h.mu.Unlock()
		return err
	}
	vm, err := h.vm(id)
	if err != nil {
		h.mu.Unlock()
		return fmt.Errorf("reconfigure VM: %w", err)
	}
	defer vm.Close()
	step := "reconfigure VM " + id
	err = func() error {
		defer h.mu.Unlock()
		if c.CPUs > 0 {
			if err := vmms.SetProcessorCount(vm, uint64(c.CPUs)); err != nil {
				return fmt.Errorf("%s: processors: %w", step, err)
			}
		}
		if c.MemoryMiB > 0 {
			if err := vmms.SetMemoryMB(vm, uint64(c.MemoryMiB)); err != nil {
				return fmt.Errorf("%s: memory: %w", step, err)
			}
		}
		if c.Switch != "" {
			sw, err := virtualswitch.GetVirtualSwitch(h.wh, c.Switch)
			if err != nil {
				return fmt.Errorf("%s: vSwitch %q: %w", step, c.Switch, err)
			}
			defer sw.Close()
			if err := vmms.ConnectAdapterToVirtualSwitch(vm, adapterName, sw); err != nil {
				return fmt.Errorf("%s: connect to vSwitch %q: %w", step, c.Switch, err)
			}
			vna, err := vm.GetVirtualNetworkAdapterByName(adapterName)
			if err != nil {
				return fmt.Errorf("%s: network adapter: %w", step, err)
			}
			defer vna.Close()
			if err := vmms.SetVirtualNetworkAdapterAccessVLAN(vna, uint16(c.VLAN)); err != nil {
				return fmt.Errorf("%s: VLAN %d: %w", step, c.VLAN, err)
			}
		}
		return nil
	}()
	if err != nil || c.DiskBytes == 0 {
		return err
	}
	h.mu.Lock()
	disks, err := vm.GetAttachedVirtualHardDisks()
	h.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: disks: %w", step, err)
	}
	if len(disks) == 0 {
		return fmt.Errorf("%s: the VM has no disk to grow", step)
	}
	return h.ResizeDisk(ctx, disks[0], c.DiskBytes)
}

// copyFile copies through a temporary name and renames into place
// (MoveFileEx replaces an existing file).
func copyFile(ctx context.Context, src, dst string, progress func(done, total int64)) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".ksmg-tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(out.Name())
		}
	}()
	buf := make([]byte, 1<<20)
	var done int64
	for {
		if err = ctx.Err(); err != nil {
			return err
		}
		n, rerr := in.Read(buf)
		if n > 0 {
			if _, err = out.Write(buf[:n]); err != nil {
				return err
			}
			done += int64(n)
			if progress != nil {
				progress(done, st.Size())
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if err = out.Sync(); err != nil {
		return err
	}
	if err = out.Close(); err != nil {
		return err
	}
	return os.Rename(out.Name(), dst)
}

// CreateVM implements Host.
func (h *WMIHost) CreateVM(ctx context.Context, s VMSpec) (id string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	step := "create VM " + s.Name
	vmms, err := h.vmms()
	if err != nil {
		return "", err
	}
	settings, err := virtualsystem.GetVirtualSystemSettingData(h.wh, s.Name)
	if err != nil {
		return "", fmt.Errorf("%s: settings: %w", step, err)
	}
	defer settings.Close()
	for _, set := range []func() error{
		func() error { return settings.SetHyperVGeneration(virtualsystem.HyperVGeneration_V2) },
		func() error { return settings.SetPropertySecureBootEnabled(true) },
		func() error { return settings.SetPropertySecureBootTemplateId(secureBootTemplateID) },
		func() error { return settings.SetPropertyConfigurationDataRoot(joinWin(s.Path, s.Name)) },
		func() error { return settings.SetPropertyNotes([]string{s.Notes}) },
		// The gateway starts with its host and is shut down when it stops.
		func() error {
			return settings.SetPropertyAutomaticStartupAction(v2.VirtualSystemSettingData_AutomaticStartupAction_Always_startup)
		},
		func() error {
			return settings.SetPropertyAutomaticShutdownAction(v2.VirtualSystemSettingData_AutomaticShutdownAction_Shutdown)
		},
	} {
		if err := set(); err != nil {
			return "", fmt.Errorf("%s: settings: %w", step, err)
		}
	}
	mem, err := memory.GetDefaultMemorySettingData(h.wh)
	if err != nil {
		return "", fmt.Errorf("%s: memory settings: %w", step, err)
	}
	defer mem.Close()
	if err := mem.SetSizeMB(uint64(s.MemoryMiB)); err != nil {
		return "", fmt.Errorf("%s: memory: %w", step, err)
	}
	cpu, err := processor.GetDefaultProcessorSettingData(h.wh)
	if err != nil {
		return "", fmt.Errorf("%s: processor settings: %w", step, err)
	}
	defer cpu.Close()
	if err := cpu.SetCPUCount(uint64(s.CPUs)); err != nil {
		return "", fmt.Errorf("%s: processors: %w", step, err)
	}
	vm, err := vmms.CreateVirtualMachine(settings, mem, cpu)
	if err != nil {
		return "", fmt.Errorf("%s: %w", step, err)
	}
	if vm == nil {
		return "", fmt.Errorf("%s: DefineSystem returned no VM", step)
	}
	defer vm.Close()
	id = vm.ID()
	defer func() {
		if err != nil {
			_ = vmms.DeleteVirtualMachine(vm)
		}
	}()
	// DefineSystem makes a bare Generation 2 VM: no SCSI controller, no
	// adapter.
	if err := vmms.AddSCSIController(vm); err != nil {
		return "", fmt.Errorf("%s: SCSI controller: %w", step, err)
	}
	vhd, drv, err := vmms.AttachVirtualHardDisk(vm, s.VHDX, virtualsystem.VirtualHardDiskType_OS_VIRTUALHARDDISK)
	if err != nil {
		return "", fmt.Errorf("%s: attach %s: %w", step, s.VHDX, err)
	}
	vhd.Close()
	drv.Close()
	vna, err := vmms.AddVirtualNetworkAdapter(vm, adapterName)
	if err != nil {
		return "", fmt.Errorf("%s: network adapter: %w", step, err)
	}
	vna.Close()
	sw, err := virtualswitch.GetVirtualSwitch(h.wh, s.Switch)
	if err != nil {
		return "", fmt.Errorf("%s: vSwitch %q: %w", step, s.Switch, err)
	}
	defer sw.Close()
	if err := vmms.ConnectAdapterToVirtualSwitch(vm, adapterName, sw); err != nil {
		return "", fmt.Errorf("%s: connect to vSwitch %q: %w", step, s.Switch, err)
	}
	if s.VLAN > 0 {
		// Read the adapter again: the connection added its port settings.
		vna, err := vm.GetVirtualNetworkAdapterByName(adapterName)
		if err != nil {
			return "", fmt.Errorf("%s: network adapter: %w", step, err)
		}
		defer vna.Close()
		if err := vmms.SetVirtualNetworkAdapterAccessVLAN(vna, uint16(s.VLAN)); err != nil {
			return "", fmt.Errorf("%s: VLAN %d: %w", step, s.VLAN, err)
		}
	}
	return id, nil
}

// ResizeDisk implements Host.
func (h *WMIHost) ResizeDisk(ctx context.Context, path string, size uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	ims, err := storage.GetImageManagementService(h.wh)
	if err != nil {
		return fmt.Errorf("resize disk %s: %w", path, err)
	}
	if err := ims.ResizeDisk(path, size); err != nil {
		return fmt.Errorf("resize disk %s: %w", path, err)
	}
	return nil
}

// AddKVP implements Host with Msvm_VirtualSystemManagementService.AddKvpItems,
// which the library does not wrap.
func (h *WMIHost) AddKVP(ctx context.Context, id string, items []KVPItem) error {
	xmls := make([]string, len(items))
	for i, it := range items {
		xmls[i] = kvp.ItemXML(it.Key, it.Value)
	}
	return h.kvpItems("AddKvpItems", "add KVP items to VM "+id, id, xmls)
}

// RemoveKVP implements Host with Msvm_VirtualSystemManagementService.RemoveKvpItems
// (not wrapped by the library either); items carry the key and no value.
func (h *WMIHost) RemoveKVP(ctx context.Context, id string, keys []string) error {
	xmls := make([]string, len(keys))
	for i, k := range keys {
		xmls[i] = kvp.ItemXML(k, "")
	}
	return h.kvpItems("RemoveKvpItems", "remove KVP items from VM "+id, id, xmls)
}

// kvpItems calls the KVP method of the management service on VM id, at
// most 128 items per call (the method's limit).
func (h *WMIHost) kvpItems(method, step, id string, xmls []string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	vmms, err := h.vmms()
	if err != nil {
		return err
	}
	vm, err := h.vm(id)
	if err != nil {
		return fmt.Errorf("%s: %w", step, err)
	}
	defer vm.Close()
	for len(xmls) > 0 {
		n := min(128, len(xmls))
		if err := h.execJob(vmms.WmiInstance, method, wmi.WmiMethodParamCollection{
			wmi.NewWmiMethodParam("TargetSystem", vm.InstancePath()),
			wmi.NewWmiMethodParam("DataItems", xmls[:n]),
		}); err != nil {
			return fmt.Errorf("%s: %w", step, err)
		}
		xmls = xmls[n:]
	}
	return nil
}

// GuestKVP implements Host from the GuestExchangeItems of the VM's
// Msvm_KvpExchangeComponent.
func (h *WMIHost) GuestKVP(ctx context.Context, id string) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	step := "guest KVP items of VM " + id
	vm, err := h.vm(id)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", step, err)
	}
	defer vm.Close()
	inst, err := vm.GetRelated("Msvm_KvpExchangeComponent")
	if err != nil {
		if wmierrors.IsNotFound(err) {
			return nil, nil // no KVP component (yet): nothing reported
		}
		return nil, fmt.Errorf("%s: %w", step, err)
	}
	defer inst.Close()
	kvp, err := v2.NewMsvm_KvpExchangeComponentEx1(inst)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", step, err)
	}
	items, err := kvp.GetPropertyGuestExchangeItems()
	if err != nil {
		return nil, fmt.Errorf("%s: GuestExchangeItems: %w", step, err)
	}
	return items, nil
}

// execJob runs a Hyper-V method and waits for its job.
func (h *WMIHost) execJob(on *wmi.WmiInstance, name string, in wmi.WmiMethodParamCollection) error {
	method, err := on.GetWmiMethod(name)
	if err != nil {
		return err
	}
	defer method.Close()
	res, err := method.Execute(in, wmi.WmiMethodParamCollection{wmi.NewWmiMethodParam("Job", nil)})
	if err != nil {
		return err
	}
	switch res.ReturnValue {
	case 0:
		return nil
	case 4096:
	default:
		return fmt.Errorf("%s returned %d", name, res.ReturnValue)
	}
	val, ok := res.OutMethodParams["Job"]
	if !ok || val.Value == nil {
		return fmt.Errorf("%s: started a job but returned none", name)
	}
	job, err := instance.GetWmiJob(h.wh, string(constant.Virtualization), val.Value.(string))
	if err != nil {
		return fmt.Errorf("%s: job: %w", name, err)
	}
	defer job.Close()
	return job.WaitForJobCompletion(res.ReturnValue, -1)
}

// Start implements Host.
func (h *WMIHost) Start(ctx context.Context, id string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	vm, err := h.vm(id)
	if err != nil {
		return fmt.Errorf("start VM: %w", err)
	}
	defer vm.Close()
	if err := vm.Start(); err != nil {
		return fmt.Errorf("start VM %s: %w", id, err)
	}
	return nil
}

// GuestIP implements Host from the guest's KVP intrinsic items, as
// Msvm_GuestNetworkAdapterConfiguration reports them.
func (h *WMIHost) GuestIP(ctx context.Context, id string) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	vm, err := h.vm(id)
	if err != nil {
		return "", fmt.Errorf("guest address: %w", err)
	}
	defer vm.Close()
	vnas, err := vm.GetVirtualNetworkAdapters()
	if err != nil {
		return "", fmt.Errorf("guest address of VM %s: %w", id, err)
	}
	defer vnas.Close()
	var v6 string
	for _, vna := range vnas {
		gc, err := vna.GetGuestNetworkAdapterConfiguration()
		if err != nil {
			continue // no guest data yet
		}
		ipv4s, ipv6s, err := gc.GetIPAddresses()
		gc.Close()
		if err != nil {
			continue
		}
		for _, ip := range ipv4s {
			if !strings.HasPrefix(ip, "169.254.") {
				return ip, nil
			}
		}
		for _, ip := range ipv6s {
			if v6 == "" && !strings.HasPrefix(strings.ToLower(ip), "fe80:") {
				v6 = ip
			}
		}
	}
	return v6, nil
}

// SetNotes implements Host.
func (h *WMIHost) SetNotes(ctx context.Context, id, notes string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	vmms, err := h.vmms()
	if err != nil {
		return err
	}
	vm, err := h.vm(id)
	if err != nil {
		return fmt.Errorf("set notes: %w", err)
	}
	defer vm.Close()
	vssd, err := vm.GetVirtualSystemSettingData()
	if err != nil {
		return fmt.Errorf("set notes of VM %s: %w", id, err)
	}
	defer vssd.Close()
	if err := vssd.SetPropertyNotes([]string{notes}); err != nil {
		return fmt.Errorf("set notes of VM %s: %w", id, err)
	}
	if err := vmms.ModifyVirtualSystemSettings(vssd, -1); err != nil {
		return fmt.Errorf("set notes of VM %s: %w", id, err)
	}
	return nil
}

// Remove implements Host.
func (h *WMIHost) Remove(ctx context.Context, folder, id string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	step := "remove VM " + id + " " + folder
	var dirs []string
	if folder != "" {
		dirs = append(dirs, joinWin(h.path, folder))
	}
	if id != "" {
		vmms, err := h.vmms()
		if err != nil {
			return err
		}
		vm, err := h.vm(id)
		if err != nil && !wmierrors.IsNotFound(err) {
			return fmt.Errorf("%s: %w", step, err)
		}
		if err == nil {
			defer vm.Close()
			if st, err := vm.State(); err == nil && st != virtualsystem.Off {
				if err := vm.Stop(true); err != nil {
					return fmt.Errorf("%s: turn off: %w", step, err)
				}
			}
			disks, err := vm.GetAttachedVirtualHardDisks()
			if err != nil {
				return fmt.Errorf("%s: disks: %w", step, err)
			}
			if err := vmms.DeleteVirtualMachine(vm); err != nil {
				return fmt.Errorf("%s: %w", step, err)
			}
			for _, d := range disks {
				if p, ok := h.reach(d); ok {
					if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
						return fmt.Errorf("%s: delete disk %s: %w", step, d, err)
					}
				}
				if i := strings.LastIndex(d, `\`); i > 0 {
					dirs = append(dirs, d[:i])
				}
			}
		}
	}
	for _, d := range dirs {
		// Only node folders inside the configured path (reach says so).
		if dir, ok := h.reach(d); ok && h.share != "" || ok && strings.HasPrefix(strings.ToLower(d), strings.ToLower(strings.TrimRight(h.path, `\`))+`\`) {
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("%s: delete folder %s: %w", step, dir, err)
			}
		}
	}
	return nil
}

// reach maps a host path to one this process can open: itself on the
// local host, its share path under the configured path otherwise. Disks
// outside the configured path of a remote host cannot be reached and are
// left (Remove-VM leaves disks too).
func (h *WMIHost) reach(hostPath string) (string, bool) {
	if h.share == "" {
		return hostPath, true
	}
	rel, ok := strings.CutPrefix(strings.ToLower(hostPath), strings.ToLower(strings.TrimRight(h.path, `\`))+`\`)
	if !ok {
		return "", false
	}
	return joinWin(h.share, hostPath[len(hostPath)-len(rel):]), true
}

var _ Host = (*WMIHost)(nil)
