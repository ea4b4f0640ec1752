package vsphere

import (
	"context"
	"fmt"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ksmg-appliance/ksmg/deploy"
)

// Remove implements deploy.Deployer.
func (d *Deployer) Remove(ctx context.Context, r deploy.RemoveRequest) (deploy.Result, error) {
	res, err := deploy.Timed("remove", r.Name, d.Target(), func(res *deploy.Result) error { return d.remove(ctx, r, res) })
	if err == nil && !r.Plan && res.Action == deploy.ActionRemove {
		d.log.Info("removed", "vm", r.Name, "id", res.ID, "elapsed", res.Elapsed.Round(time.Millisecond))
	}
	return res, err
}

func (d *Deployer) remove(ctx context.Context, r deploy.RemoveRequest, res *deploy.Result) error {
	if err := deploy.ValidRemoveName(r.Name); err != nil {
		return deploy.Permanent(err)
	}
	defer d.lockName(r.Name)()
	e, err := d.find(ctx, r.Name)
	if err != nil {
		return err
	}
	if e != nil && !e.rec.Marked() {
		return deploy.Permanent(fmt.Errorf("VM %s (%s) is %w (no %s in its extraConfig); it is left alone", r.Name, e.vm.Reference().Value, deploy.ErrNotOurs, deploy.MarkKey))
	}
	// What replaces left go with the node: an unproven replacement kept
	// turned off as TempName (the node's answers in its settings), an old
	// VM a swap could not remove, or, after a replace stopped between its
	// renames, the node's VM itself as AsideName. Ours only.
	var left []*existing
	for _, n := range []string{deploy.AsideName(r.Name), deploy.TempName(r.Name)} {
		x, err := d.find(ctx, n)
		if err != nil {
			return err
		}
		if x != nil && x.rec.Marked() {
			left = append(left, x)
		}
	}
	if e == nil {
		if len(left) == 0 {
			res.Action = deploy.ActionAbsent
			return nil
		}
		e, left = left[0], left[1:]
	}
	res.ID, res.Action = e.vm.Reference().Value, deploy.ActionRemove
	for _, x := range left {
		d.log.Info("a replace's leftover goes with the node", "vm", r.Name, "leftover", x.vm.Reference().Value, "plan", r.Plan)
	}
	if r.Plan {
		return nil
	}
	// The leftovers first: a failure leaves the node's VM for a retry to
	// find.
	for _, x := range left {
		if err := d.removeVM(ctx, x, 0); err != nil {
			return fmt.Errorf("remove %s's leftover %s: %w", r.Name, x.vm.Reference().Value, err)
		}
	}
	return d.removeVM(ctx, e, r.ShutdownTimeout)
}

// removeVM shuts the guest down (VMware Tools), turns the VM off when it
// is not off within timeout (0: deploy.DefaultShutdownTimeout), and
// deletes it with its disks.
func (d *Deployer) removeVM(ctx context.Context, e *existing, timeout time.Duration) error {
	if err := d.stopGuest(ctx, e, timeout); err != nil {
		return err
	}
	return d.destroy(ctx, e.vm)
}

// removeByID removes the VM id (the old VM of a swap, which may be one
// ksmg did not make when ReplaceForeign asked for it).
func (d *Deployer) removeByID(ctx context.Context, id string) error {
	e, err := d.read(ctx, object.NewVirtualMachine(d.c, types.ManagedObjectReference{Type: "VirtualMachine", Value: id}))
	if err != nil {
		return err
	}
	return d.removeVM(ctx, e, 0)
}

// clearMarked removes a VM of name that ksmg made (an earlier swap's
// leftover); a VM of that name that ksmg did not make is in the way.
func (d *Deployer) clearMarked(ctx context.Context, name string) error {
	e, err := d.find(ctx, name)
	if err != nil || e == nil {
		return err
	}
	if !e.rec.Marked() {
		return deploy.ErrNameTaken(name, e.vm.Reference().Value)
	}
	return d.removeVM(ctx, e, 0)
}

// recoverAside undoes what a replace stopped between its renames left:
// the VM in service (e, found as deploy.AsideName) gets its name back and
// an unfinished replacement under deploy.TempName, which would run beside
// it with the same answers, is removed (a VM of that name ksmg did not
// make is an error, and the old VM is back in service by then).
func (d *Deployer) recoverAside(ctx context.Context, name string, e *existing) error {
	id := e.vm.Reference().Value
	d.log.Warn("an interrupted replace left the VM in service under another name; renaming it back", "vm", name, "id", id, "as", deploy.AsideName(name))
	if err := d.rename(ctx, id, name); err != nil {
		return err
	}
	if err := d.clearMarked(ctx, deploy.TempName(name)); err != nil {
		return fmt.Errorf("remove %s, left by an interrupted replace: %w", deploy.TempName(name), err)
	}
	return nil
}

// rename renames the VM id.
func (d *Deployer) rename(ctx context.Context, id, name string) error {
	vm := object.NewVirtualMachine(d.c, types.ManagedObjectReference{Type: "VirtualMachine", Value: id})
	t, err := vm.Rename(ctx, name)
	if err == nil {
		err = t.Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("rename %s to %s: %w", id, name, err)
	}
	return nil
}

// powerOff turns vm off unless it is off.
func (d *Deployer) powerOff(ctx context.Context, vm *object.VirtualMachine) error {
	state, err := vm.PowerState(ctx)
	if err != nil {
		return fmt.Errorf("power state: %w", err)
	}
	if state == types.VirtualMachinePowerStatePoweredOff {
		return nil
	}
	t, err := vm.PowerOff(ctx)
	if err == nil {
		err = t.Wait(ctx)
	}
	if err != nil && !isFault[*types.InvalidPowerState](err) {
		return fmt.Errorf("power off: %w", err)
	}
	return nil
}

// destroy turns vm off if needed and deletes it with its disks.
func (d *Deployer) destroy(ctx context.Context, vm *object.VirtualMachine) error {
	if err := d.powerOff(ctx, vm); err != nil {
		return fmt.Errorf("destroy %s: %w", vm.Reference().Value, err)
	}
	t, err := vm.Destroy(ctx)
	if err == nil {
		err = t.Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("destroy %s: %w", vm.Reference().Value, err)
	}
	return nil
}

// Deployed implements deploy.Deployer: the marked VMs of the target's
// folder.
func (d *Deployer) Deployed(ctx context.Context) ([]deploy.VM, error) {
	v, err := view.NewManager(d.c).CreateContainerView(ctx, d.folder.Reference(), []string{"VirtualMachine"}, false)
	if err != nil {
		return nil, fmt.Errorf("list VMs of %s: %w", d.folder.InventoryPath, err)
	}
	defer func() { _ = v.Destroy(context.WithoutCancel(ctx)) }()
	var vms []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, vmProps, &vms); err != nil {
		return nil, fmt.Errorf("list VMs of %s: %w", d.folder.InventoryPath, err)
	}
	var out []deploy.VM
	for _, m := range vms {
		e := newExisting(object.NewVirtualMachine(d.c, m.Self), m)
		if e.rec.Marked() {
			out = append(out, deploy.VM{Name: m.Name, ID: m.Self.Value, State: string(e.power), Record: e.rec})
		}
	}
	return out, nil
}
