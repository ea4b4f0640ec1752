package scvmm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ksmg-appliance/ksmg/deploy"
)

// rename renames the VM id.
func (d *Deployer) rename(ctx context.Context, id, name string) error {
	return d.script(ctx, stepRename, vars{VMID: id, NewName: name}, "rename VM "+id+" to "+name, nil, nil)
}

// errShutdownTimeout is a guest shutdown that did not finish in time.
var errShutdownTimeout = errors.New("the guest did not shut down in time")

// stop shuts the guest of VM id down (Stop-SCVirtualMachine -Shutdown) and
// turns it off (-Force) when that has not finished within timeout (0:
// deploy.DefaultShutdownTimeout); a saved state is discarded
// (-DiscardSavedState).
func (d *Deployer) stop(ctx context.Context, name, id string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = deploy.DefaultShutdownTimeout
	}
	what := "stop VM " + name + " (" + id + ")"
	var out struct {
		Job   string `json:"job"`
		State string `json:"state"`
	}
	if err := d.script(ctx, stepStop, vars{VMID: id}, what, &out, nil); err != nil {
		return err
	}
	if out.Job == "" {
		return nil
	}
	sctx, cancel := context.WithTimeoutCause(ctx, timeout, errShutdownTimeout)
	err := d.follow(sctx, what, out.Job)
	cancel()
	if err == nil || ctx.Err() != nil {
		return err
	}
	var je *JobError
	if !errors.As(err, &je) && !errors.Is(context.Cause(sctx), errShutdownTimeout) {
		return err
	}
	d.log.Warn("the guest did not shut down; turning the VM off", "vm", name, "id", id, "timeout", timeout, "err", err)
	var force struct {
		Job string `json:"job"`
	}
	if err := d.script(ctx, stepStop, vars{VMID: id, Force: true, JobID: out.Job}, what+": turn off", &force, nil); err != nil {
		return err
	}
	return d.follow(ctx, what+": turn off", force.Job)
}

// removeVM stops VM id and removes it with its files.
func (d *Deployer) removeVM(ctx context.Context, name, id string, timeout time.Duration) error {
	if err := d.stop(ctx, name, id, timeout); err != nil {
		return err
	}
	return d.jobScript(ctx, stepRemove, vars{VMID: id}, "remove VM "+name+" ("+id+")", nil)
}

// clearMarked removes a VM of name that ksmg made (an earlier swap's
// leftover); one that ksmg did not make is in the way.
func (d *Deployer) clearMarked(ctx context.Context, name string) error {
	vms, err := d.find(ctx, name)
	if err != nil {
		return err
	}
	for _, vm := range vms {
		if !vm.Record().Marked() {
			return deploy.ErrNameTaken(name, vm.ID)
		}
		if err := d.removeVM(ctx, name, vm.ID, 0); err != nil {
			return err
		}
	}
	return nil
}

// Remove implements deploy.Deployer.
func (d *Deployer) Remove(ctx context.Context, r deploy.RemoveRequest) (deploy.Result, error) {
	return deploy.Timed("remove", r.Name, d.Target(), func(res *deploy.Result) error { return d.remove(ctx, r, res) })
}

func (d *Deployer) remove(ctx context.Context, r deploy.RemoveRequest, res *deploy.Result) error {
	if err := deploy.ValidRemoveName(r.Name); err != nil {
		return deploy.Permanent(err)
	}
	defer d.lockName(r.Name)()
	vms, err := d.find(ctx, r.Name)
	if err != nil {
		return err
	}
	if len(vms) > 1 {
		return deploy.Permanent(fmt.Errorf("%d VMs are named %s; remove the one you mean in SCVMM", len(vms), r.Name))
	}
	if len(vms) == 1 && !vms[0].Record().Marked() {
		return deploy.Permanent(fmt.Errorf("VM %s (%s on %s) is %w (no %s in its Description); it is left alone", r.Name, vms[0].ID, vms[0].Host, deploy.ErrNotOurs, deploy.MarkKey))
	}
	// What replaces left go with the node: an unproven replacement kept
	// turned off as TempName (the node's answers with it), an old VM a
	// swap could not remove, or, after a replace stopped between its
	// renames, the node's VM itself as AsideName. Ours only.
	var left []vmInfo
	for _, n := range []string{deploy.AsideName(r.Name), deploy.TempName(r.Name)} {
		xs, err := d.find(ctx, n)
		if err != nil {
			return err
		}
		for _, x := range xs {
			if x.Record().Marked() {
				left = append(left, x)
			}
		}
	}
	if len(vms) == 0 {
		if len(left) == 0 {
			res.Action = deploy.ActionAbsent
			return nil
		}
		vms, left = left[:1], left[1:]
	}
	vm := vms[0]
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
		if err := d.removeVM(ctx, x.Name, x.ID, 0); err != nil {
			return fmt.Errorf("remove %s's leftover %s (%s): %w", r.Name, x.Name, x.ID, err)
		}
	}
	if err := d.removeVM(ctx, r.Name, vm.ID, r.ShutdownTimeout); err != nil {
		return err
	}
	d.log.Info("removed", "vm", r.Name, "id", vm.ID)
	return nil
}

// Deployed implements deploy.Deployer.
func (d *Deployer) Deployed(ctx context.Context) ([]deploy.VM, error) {
	var out struct {
		VMs []vmInfo `json:"vms"`
	}
	if err := d.script(ctx, stepList, vars{}, "list VMs", &out, nil); err != nil {
		return nil, err
	}
	var vms []deploy.VM
	for _, vm := range out.VMs {
		if rec := vm.Record(); rec.Marked() {
			vms = append(vms, deploy.VM{Name: vm.Name, ID: vm.ID, State: vm.State, Record: rec})
		}
	}
	return vms, nil
}

// Scrub implements deploy.Deployer.
func (d *Deployer) Scrub(ctx context.Context, n deploy.Node) (deploy.Result, error) {
	return deploy.Timed("scrub", n.Name, d.Target(), func(res *deploy.Result) error {
		res.Action = deploy.ActionScrub
		return d.scrubVM(ctx, n, res)
	})
}

func (d *Deployer) scrubVM(ctx context.Context, n deploy.Node, res *deploy.Result) error {
	defer d.lockName(n.Name)()
	vms, err := d.find(ctx, n.Name)
	if err != nil {
		return err
	}
	if len(vms) != 1 {
		return deploy.Permanent(fmt.Errorf("%d VMs named %s", len(vms), n.Name))
	}
	vm := vms[0]
	res.ID = vm.ID
	if !vm.Record().Marked() {
		return deploy.Permanent(fmt.Errorf("VM %s (%s): %w", n.Name, vm.ID, deploy.ErrNotOurs))
	}
	done, err := d.firstbootDone(ctx, n.Name, vm.ID)
	if err != nil {
		return err
	}
	if !done {
		res.SecretsLeft = true
		return deploy.Permanent(fmt.Errorf("VM %s (%s): first boot has not reported completion yet, so its secrets may still be needed; run again once it has", n.Name, vm.ID))
	}
	return d.removeSecrets(ctx, n, vm.ID)
}

// applyDrift changes a finished VM in place toward what the node asks
// for: disk growth and the network while it runs; CPUs and memory with
// the guest shut down and started again. What cannot change in place is
// left in res.Drift; the record in the Description follows what was
// applied.
func (d *Deployer) applyDrift(ctx context.Context, n deploy.Node, pre *preflight, vm vmInfo, res *deploy.Result) error {
	fields, rec, left := deploy.InPlace(vm.Record(), pre.want, res.Drift)
	res.Drift = left
	if len(fields) == 0 {
		return nil
	}
	v := vars{Name: n.Name, VMID: vm.ID}
	if fields["cpus"] {
		v.CPUs = rec.CPUs
	}
	if fields["memory"] {
		v.MemoryMiB = rec.MemoryMiB
	}
	if fields["disk"] {
		v.DiskGB = rec.DiskGiB
	}
	if fields["network"] {
		v.Network, v.VMSubnet, v.VLAN = d.network(n)
	}
	restart := fields["cpus"] || fields["memory"]
	running := strings.EqualFold(vm.State, "Running")
	if restart && running {
		d.log.Info("shutting the guest down to change CPUs or memory", "node", n.Name, "id", vm.ID)
		if err := d.stop(ctx, n.Name, vm.ID, 0); err != nil {
			return err
		}
	}
	if err := d.script(ctx, stepConfigure, v, "reconfigure VM "+n.Name, nil, nil); err != nil {
		return err
	}
	if restart && running {
		if err := d.jobScript(ctx, stepStart, vars{VMID: vm.ID}, "start VM "+n.Name, nil); err != nil {
			return err
		}
	}
	if err := d.script(ctx, stepMark, vars{VMID: vm.ID, Description: description(rec)}, "record the changes of VM "+n.Name, nil, nil); err != nil {
		return err
	}
	res.Action = deploy.ActionReconfigure
	d.log.Info("applied drift in place", "node", n.Name, "id", vm.ID, "changed", fields, "left", left)
	return nil
}
