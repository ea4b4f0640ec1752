package vsphere

import (
	"context"
	"fmt"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ksmg-appliance/ksmg/deploy"
)

// What the appliance needs of its VM, as its OVF asks for it: UEFI with
// Secure Boot (the disk boots only through the signed shim), disk UUIDs
// for the guest (disk.EnableUUID), its disk on PVSCSI and its NIC a
// VMXNET3 (the Debian cloud kernel has vmw_pvscsi and vmxnet3, no LSI
// Logic). A host or an import path may drop the OVF's vmw:Config (vcsim
// does), so the driver reads the VM back after the import.
const (
	wantFirmware   = string(types.GuestOsDescriptorFirmwareTypeEfi)
	enableUUIDKey  = "disk.EnableUUID"
	enableUUIDWant = "TRUE"
)

// hardware is what checkHardware reads of a VM.
type hardware struct {
	firmware   string
	secureBoot bool
	enableUUID string
	devices    object.VirtualDeviceList
}

func (d *Deployer) readHardware(ctx context.Context, vm *object.VirtualMachine) (hardware, error) {
	var m mo.VirtualMachine
	if err := vm.Properties(ctx, vm.Reference(), []string{"config.firmware", "config.bootOptions", "config.extraConfig", "config.hardware.device"}, &m); err != nil {
		return hardware{}, fmt.Errorf("read the configuration of %s: %w", vm.Reference().Value, err)
	}
	var h hardware
	if m.Config == nil {
		return h, fmt.Errorf("VM %s has no configuration", vm.Reference().Value)
	}
	h.firmware = m.Config.Firmware
	if b := m.Config.BootOptions; b != nil && b.EfiSecureBootEnabled != nil {
		h.secureBoot = *b.EfiSecureBootEnabled
	}
	for _, o := range m.Config.ExtraConfig {
		if ov := o.GetOptionValue(); ov != nil && ov.Key == enableUUIDKey {
			h.enableUUID, _ = ov.Value.(string)
		}
	}
	h.devices = object.VirtualDeviceList(m.Config.Hardware.Device)
	return h, nil
}

// problems lists what h lacks, and whether each can be set in place.
func (h hardware) problems() (fixable, permanent []string) {
	if h.firmware != wantFirmware {
		fixable = append(fixable, fmt.Sprintf("firmware %q, not %s", h.firmware, wantFirmware))
	}
	if !h.secureBoot {
		fixable = append(fixable, "Secure Boot off")
	}
	if !strings.EqualFold(h.enableUUID, enableUUIDWant) {
		fixable = append(fixable, enableUUIDKey+" not TRUE")
	}
	scsi := h.devices.SelectByType((*types.VirtualSCSIController)(nil))
	if len(scsi) == 0 {
		permanent = append(permanent, "no SCSI controller")
	}
	for _, c := range scsi {
		if _, ok := c.(*types.ParaVirtualSCSIController); !ok {
			permanent = append(permanent, fmt.Sprintf("SCSI controller %s, not PVSCSI (the disk sits on it and the appliance's kernel has no driver for it)", devType(c)))
		}
	}
	nics := h.devices.SelectByType((*types.VirtualEthernetCard)(nil))
	if len(nics) != 1 {
		permanent = append(permanent, fmt.Sprintf("%d network adapters, the appliance has one", len(nics)))
	}
	for _, nic := range nics {
		if _, ok := nic.(*types.VirtualVmxnet3); !ok {
			fixable = append(fixable, fmt.Sprintf("network adapter %s, not VMXNET3", devType(nic)))
		}
	}
	return fixable, permanent
}

// fixSpec is the reconfiguration that gives h what it lacks: firmware,
// Secure Boot and disk.EnableUUID set, a non-VMXNET3 adapter replaced by a
// VMXNET3 on the same network (the VM is off, before its first boot).
func (h hardware) fixSpec() types.VirtualMachineConfigSpec {
	var spec types.VirtualMachineConfigSpec
	if h.firmware != wantFirmware {
		spec.Firmware = wantFirmware
	}
	if !h.secureBoot {
		on := true
		spec.BootOptions = &types.VirtualMachineBootOptions{EfiSecureBootEnabled: &on}
	}
	if !strings.EqualFold(h.enableUUID, enableUUIDWant) {
		spec.ExtraConfig = append(spec.ExtraConfig, &types.OptionValue{Key: enableUUIDKey, Value: enableUUIDWant})
	}
	for _, dev := range h.devices.SelectByType((*types.VirtualEthernetCard)(nil)) {
		if _, ok := dev.(*types.VirtualVmxnet3); ok {
			continue
		}
		old := dev.(types.BaseVirtualEthernetCard).GetVirtualEthernetCard()
		nic := &types.VirtualVmxnet3{VirtualVmxnet: types.VirtualVmxnet{VirtualEthernetCard: types.VirtualEthernetCard{
			VirtualDevice: types.VirtualDevice{Key: -1, Backing: old.Backing, Connectable: old.Connectable},
			AddressType:   string(types.VirtualEthernetCardMacTypeGenerated),
		}}}
		spec.DeviceChange = append(spec.DeviceChange,
			&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationRemove, Device: dev},
			&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: nic})
	}
	return spec
}

// checkHardware reads the new VM back and makes sure it has what the
// appliance needs: what the host dropped is reconfigured and read back
// again; what cannot be set is a permanent error.
func (d *Deployer) checkHardware(ctx context.Context, vm *object.VirtualMachine) error {
	h, err := d.readHardware(ctx, vm)
	if err != nil {
		return err
	}
	fixable, permanent := h.problems()
	if len(permanent) > 0 {
		return deploy.Permanent(fmt.Errorf("VM %s as the host created it cannot run the appliance: %s", vm.Reference().Value, strings.Join(permanent, "; ")))
	}
	if len(fixable) == 0 {
		return nil
	}
	d.log.Info("the host dropped settings the OVF asks for; reconfiguring", "vm", vm.Reference().Value, "missing", fixable)
	if err := reconfigure(ctx, vm, h.fixSpec()); err != nil {
		return fmt.Errorf("reconfigure %s (%s): %w", vm.Reference().Value, strings.Join(fixable, "; "), err)
	}
	if h, err = d.readHardware(ctx, vm); err != nil {
		return err
	}
	if fixable, permanent = h.problems(); len(fixable)+len(permanent) > 0 {
		return deploy.Permanent(fmt.Errorf("VM %s: the host does not keep what the appliance needs: %s", vm.Reference().Value, strings.Join(append(fixable, permanent...), "; ")))
	}
	return nil
}

// devType names a device by its vSphere type, e.g. "E1000".
func devType(d types.BaseVirtualDevice) string {
	return strings.TrimPrefix(fmt.Sprintf("%T", d), "*types.Virtual")
}
