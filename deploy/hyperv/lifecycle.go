package hyperv

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ksmg-appliance/ksmg/deploy"
)

// Remove implements deploy.Deployer.
func (d *Deployer) Remove(ctx context.Context, r deploy.RemoveRequest) (deploy.Result, error) {
	return deploy.Timed("remove", r.Name, d.Target(), func(res *deploy.Result) error { return d.remove(ctx, r, res) })
}

func (d *Deployer) remove(ctx context.Context, r deploy.RemoveRequest, res *deploy.Result) error {
	if err := deploy.ValidRemoveName(r.Name); err != nil {
		return deploy.Permanent(err)
	}
	defer d.lockName(r.Name)()
	vm, err := d.host.FindVM(ctx, r.Name)
	if err != nil {
		return err
	}
	if vm != nil && !vm.Record().Marked() {
		return deploy.Permanent(fmt.Errorf("VM %s (%s) is %w (no %s in its notes); it is left alone", r.Name, vm.ID, deploy.ErrNotOurs, deploy.MarkKey))
	}
	// What replaces left go with the node: an unproven replacement kept
	// turned off as TempName (the node's answers in its KVP items), an old
	// VM a swap could not remove, or, after a replace stopped between its
	// renames, the node's VM itself as AsideName. Ours only.
	var left []*VM
	for _, n := range []string{deploy.AsideName(r.Name), deploy.TempName(r.Name)} {
		x, err := d.host.FindVM(ctx, n)
		if err != nil {
			return err
		}
		if x != nil && x.Record().Marked() {
			left = append(left, x)
		}
	}
	if vm == nil {
		if len(left) == 0 {
			res.Action = deploy.ActionAbsent
			return nil
		}
		vm, left = left[0], left[1:]
	}
	res.ID, res.Action = vm.ID, deploy.ActionRemove
	for _, x := range left {
		d.log.Info("a replace's leftover goes with the node", "vm", r.Name, "leftover", x.Name, "id", x.ID, "plan", r.Plan)
	}
	if r.Plan {
		return nil
	}
	// The leftovers first: a failure leaves the node's VM for a retry to
	// find.
	for _, x := range left {
		if err := d.removeVM(ctx, "", x.ID, 0); err != nil {
			return fmt.Errorf("remove %s's leftover %s (%s): %w", r.Name, x.Name, x.ID, err)
		}
	}
	if err := d.removeVM(ctx, "", vm.ID, r.ShutdownTimeout); err != nil {
		return err
	}
	d.log.Info("removed", "vm", r.Name, "id", vm.ID)
	return nil
}

// removeVM shuts the guest down, turns the VM off after timeout (0:
// deploy.DefaultShutdownTimeout) and removes it with its disks and their
// folders.
func (d *Deployer) removeVM(ctx context.Context, folder, id string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = deploy.DefaultShutdownTimeout
	}
	if err := d.host.Stop(ctx, id, timeout); err != nil {
		return err
	}
	return d.host.Remove(ctx, folder, id)
}

// clearMarked removes a VM of name that ksmg made (an earlier swap's
// leftover); one that ksmg did not make is in the way.
func (d *Deployer) clearMarked(ctx context.Context, name string) error {
	vm, err := d.host.FindVM(ctx, name)
	if err != nil || vm == nil {
		return err
	}
	if !vm.Record().Marked() {
		return deploy.ErrNameTaken(name, vm.ID)
	}
	return d.removeVM(ctx, "", vm.ID, 0)
}

// Deployed implements deploy.Deployer.
func (d *Deployer) Deployed(ctx context.Context) ([]deploy.VM, error) {
	vms, err := d.host.ListVMs(ctx)
	if err != nil {
		return nil, err
	}
	var out []deploy.VM
	for _, vm := range vms {
		if rec := vm.Record(); rec.Marked() {
			out = append(out, deploy.VM{Name: vm.Name, ID: vm.ID, State: vm.State, Record: rec})
		}
	}
	return out, nil
}

// Scrub implements deploy.Deployer: once first boot signalled completion,
// the node's secret KVP items leave the VM's settings.
func (d *Deployer) Scrub(ctx context.Context, n deploy.Node) (deploy.Result, error) {
	res, err := deploy.Timed("scrub", n.Name, d.Target(), func(res *deploy.Result) error {
		res.Action = deploy.ActionScrub
		return d.scrubVM(ctx, n, res)
	})
	if err != nil {
		err = scrub(err, n.Properties)
		res.Err = err
	}
	return res, err
}

func (d *Deployer) scrubVM(ctx context.Context, n deploy.Node, res *deploy.Result) error {
	defer d.lockName(n.Name)()
	vm, err := d.host.FindVM(ctx, n.Name)
	if err != nil {
		return err
	}
	if vm == nil {
		return deploy.Permanent(fmt.Errorf("no VM %s on %s", n.Name, d.host.Name()))
	}
	res.ID = vm.ID
	if !vm.Record().Marked() {
		return deploy.Permanent(fmt.Errorf("VM %s (%s): %w", n.Name, vm.ID, deploy.ErrNotOurs))
	}
	done, err := d.firstbootDone(ctx, vm.ID)
	if err != nil {
		return err
	}
	if !done {
		res.SecretsLeft = true
		return deploy.Permanent(fmt.Errorf("VM %s (%s): first boot has not reported completion yet, so its secrets may still be needed; run again once it has", n.Name, vm.ID))
	}
	return d.removeSecrets(ctx, n, vm.ID)
}

// applyDrift changes a finished VM in place toward what the node asks for:
// disk growth and the network while it runs; CPUs and memory with the
// guest shut down and started again. What cannot change in place is left
// in res.Drift. The record in the notes follows what was applied.
func (d *Deployer) applyDrift(ctx context.Context, n deploy.Node, pre *preflight, vm *VM, res *deploy.Result) error {
	fields, rec, left := deploy.InPlace(vm.Record(), pre.want, res.Drift)
	res.Drift = left
	if len(fields) == 0 {
		return nil
	}
	var c Change
	if fields["cpus"] {
		c.CPUs = rec.CPUs
	}
	if fields["memory"] {
		c.MemoryMiB = rec.MemoryMiB
	}
	if fields["disk"] {
		c.DiskBytes = uint64(rec.DiskGiB) << 30
	}
	if fields["network"] {
		sw, vlanText, _ := strings.Cut(rec.Network, ":")
		c.Switch = sw
		c.VLAN, _ = strconv.Atoi(vlanText)
	}
	restart := fields["cpus"] || fields["memory"]
	running := vm.State == "Running"
	if restart && running {
		d.log.Info("shutting the guest down to change CPUs or memory", "node", n.Name, "id", vm.ID)
		if err := d.host.Stop(ctx, vm.ID, deploy.DefaultShutdownTimeout); err != nil {
			return err
		}
	}
	if err := d.host.Reconfigure(ctx, vm.ID, c); err != nil {
		return err
	}
	if restart && running {
		if err := d.host.Start(ctx, vm.ID); err != nil {
			return err
		}
	}
	if err := d.host.SetNotes(ctx, vm.ID, Notes(rec)); err != nil {
		return err
	}
	res.Action = deploy.ActionReconfigure
	d.log.Info("applied drift in place", "node", n.Name, "id", vm.ID, "changed", fields, "left", left)
	return nil
}
