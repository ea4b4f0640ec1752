package vsphere

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ksmg-appliance/ksmg/deploy"
)

// applyDrift changes a finished VM in place toward what the node asks for,
// where that is safe: disk growth and the network while it runs; CPUs and
// memory with the guest shut down and started again. What cannot change
// in place (a smaller disk, other answers, another image) is left and
// reported in res.Drift; --replace deploys it anew. The record follows
// what the VM has once applied (e.have, the VM as it was, with the
// changes).
func (d *Deployer) applyDrift(ctx context.Context, n deploy.Node, pre *preflight, e *existing, res *deploy.Result) error {
	fields, rec, left := deploy.InPlace(e.have, pre.want, res.Drift)
	res.Drift = left
	if len(fields) == 0 {
		return nil
	}
	var spec types.VirtualMachineConfigSpec
	restart := fields["cpus"] || fields["memory"]
	if fields["cpus"] {
		spec.NumCPUs = int32(rec.CPUs)
	}
	if fields["memory"] {
		spec.MemoryMB = int64(rec.MemoryMiB)
	}
	if fields["disk"] {
		disks := e.devices.SelectByType((*types.VirtualDisk)(nil))
		if len(disks) != 1 {
			return fmt.Errorf("VM %s has %d disks, expected 1", res.ID, len(disks))
		}
		disk := disks[0].(*types.VirtualDisk)
		disk.CapacityInKB, disk.CapacityInBytes = int64(rec.DiskGiB)<<20, int64(rec.DiskGiB)<<30
		spec.DeviceChange = append(spec.DeviceChange, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationEdit, Device: disk})
	}
	if fields["network"] {
		change, err := d.nicChange(ctx, e, rec.Network)
		if err != nil {
			return err
		}
		spec.DeviceChange = append(spec.DeviceChange, change)
	}
	for _, kv := range rec.Pairs() {
		spec.ExtraConfig = append(spec.ExtraConfig, &types.OptionValue{Key: kv[0], Value: kv[1]})
	}
	vm := e.vm
	running := e.power == types.VirtualMachinePowerStatePoweredOn
	if restart && running {
		d.log.Info("shutting the guest down to change CPUs or memory", "node", n.Name, "vm", res.ID)
		if err := d.stopGuest(ctx, e, 0); err != nil {
			return err
		}
	}
	if err := reconfigure(ctx, vm, spec); err != nil {
		return fmt.Errorf("reconfigure %s (%s): %w", res.ID, strings.Join(slices.Sorted(maps.Keys(fields)), ", "), err)
	}
	if restart && running {
		t, err := vm.PowerOn(ctx)
		if err == nil {
			err = t.Wait(ctx)
		}
		if err != nil {
			return fmt.Errorf("power %s on again: %w", res.ID, err)
		}
	}
	res.Action = deploy.ActionReconfigure
	d.log.Info("applied drift in place", "node", n.Name, "vm", res.ID, "changed", slices.Sorted(maps.Keys(fields)), "left", left)
	return nil
}

// nicChange connects the VM's network adapter to the port group name.
func (d *Deployer) nicChange(ctx context.Context, e *existing, name string) (types.BaseVirtualDeviceConfigSpec, error) {
	nics := e.devices.SelectByType((*types.VirtualEthernetCard)(nil))
	if len(nics) != 1 {
		return nil, fmt.Errorf("VM %s has %d network adapters, expected 1", e.vm.Reference().Value, len(nics))
	}
	ref, err := d.network(ctx, name)
	if err != nil {
		return nil, deploy.Permanent(fmt.Errorf("network %q: %w", name, err))
	}
	nr, ok := object.NewReference(d.c, ref).(object.NetworkReference)
	if !ok {
		return nil, deploy.Permanent(fmt.Errorf("network %q is a %s", name, ref.Type))
	}
	backing, err := nr.EthernetCardBackingInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("network %q: %w", name, err)
	}
	nic := nics[0]
	nic.GetVirtualDevice().Backing = backing
	return &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationEdit, Device: nic}, nil
}

// stopGuest shuts the guest down and turns the VM off if it is not off
// within timeout.
func (d *Deployer) stopGuest(ctx context.Context, e *existing, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = deploy.DefaultShutdownTimeout
	}
	vm, id := e.vm, e.vm.Reference().Value
	if e.power != types.VirtualMachinePowerStatePoweredOn {
		return nil
	}
	if e.tools == string(types.VirtualMachineToolsRunningStatusGuestToolsRunning) {
		if err := vm.ShutdownGuest(ctx); err == nil {
			wctx, cancel := context.WithTimeout(ctx, timeout)
			err = vm.WaitForPowerState(wctx, types.VirtualMachinePowerStatePoweredOff)
			cancel()
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			d.log.Warn("the guest did not shut down in time; turning the VM off", "vm", id, "timeout", timeout)
		} else if !isFault[*types.InvalidPowerState](err) {
			d.log.Warn("guest shutdown refused; turning the VM off", "vm", id, "err", err)
		}
	}
	t, err := vm.PowerOff(ctx)
	if err == nil {
		err = t.Wait(ctx)
	}
	if err != nil && !isFault[*types.InvalidPowerState](err) {
		return fmt.Errorf("power off %s: %w", id, err)
	}
	return nil
}
