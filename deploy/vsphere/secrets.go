package vsphere

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/firstboot/sources"
	"github.com/ksmg-appliance/ksmg/ova"
)

// secretsSpec is the reconfiguration that clears every secret answer e
// still carries: vApp property values (vCenter), extraConfig keys of that
// name (some hosts keep properties there) and the values in
// guestinfo.ovfEnv (standalone ESXi). Empty when there is none.
func secretsSpec(e *existing) (types.VirtualMachineConfigSpec, []string, error) {
	var spec types.VirtualMachineConfigSpec
	var where []string
	var props []types.VAppPropertySpec
	for _, p := range e.vapp {
		if answers.IsSecret(p.Id) && p.Value != "" {
			info := p
			info.Value = ""
			props = append(props, types.VAppPropertySpec{ArrayUpdateSpec: types.ArrayUpdateSpec{Operation: types.ArrayUpdateOperationEdit}, Info: &info})
			where = append(where, "vApp property "+p.Id)
		}
	}
	if len(props) > 0 {
		spec.VAppConfig = &types.VmConfigSpec{Property: props}
	}
	for _, k := range slices.Sorted(maps.Keys(e.extra)) {
		if answers.IsSecret(k) && e.extra[k] != "" {
			// An empty value removes the key.
			spec.ExtraConfig = append(spec.ExtraConfig, &types.OptionValue{Key: k, Value: ""})
			where = append(where, "extraConfig "+k)
		}
	}
	if env, ok := e.extra["guestinfo.ovfEnv"]; ok && env != "" {
		kv, err := sources.ParseOVFEnv([]byte(env))
		if err != nil {
			return spec, nil, fmt.Errorf("guestinfo.ovfEnv: %w", err)
		}
		changed := false
		declared := make([]ova.VMProperty, 0, len(kv))
		for _, k := range slices.Sorted(maps.Keys(kv)) {
			if answers.IsSecret(k) && kv[k] != "" {
				kv[k], changed = "", true
			}
			declared = append(declared, ova.VMProperty{Key: k})
		}
		if changed {
			about := types.AboutInfo{Name: envField(env, "Kind"), Version: envField(env, "Version"), Vendor: envField(env, "Vendor")}
			spec.ExtraConfig = append(spec.ExtraConfig, &types.OptionValue{Key: "guestinfo.ovfEnv", Value: OVFEnv(e.vm.Reference().Value, about, declared, kv)})
			where = append(where, "guestinfo.ovfEnv")
		}
	}
	return spec, where, nil
}

// envField is the text of the first <name> element of an OVF environment's
// PlatformSection.
func envField(env, name string) string {
	_, rest, ok := strings.Cut(env, "<"+name+">")
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, "</"+name+">")
	return v
}

// clearSecrets clears the secret answers from vm's settings and reads them
// back: none may remain.
func (d *Deployer) clearSecrets(ctx context.Context, vm *object.VirtualMachine) error {
	e, err := d.read(ctx, vm)
	if err != nil {
		return err
	}
	spec, where, err := secretsSpec(e)
	if err != nil || len(where) == 0 {
		return err
	}
	if err := reconfigure(ctx, vm, spec); err != nil {
		return err
	}
	if e, err = d.read(ctx, vm); err != nil {
		return err
	}
	_, left, err := secretsSpec(e)
	if err != nil {
		return fmt.Errorf("read the cleared settings back: %w", err)
	}
	if len(left) > 0 {
		return fmt.Errorf("secrets still in %s after clearing them", strings.Join(left, ", "))
	}
	d.log.Info("cleared the secret answers from the VM's settings", "vm", vm.Reference().Value, "from", where)
	return nil
}

// Scrub implements deploy.Deployer: once first boot of the node's VM
// reported completion, the secret answers leave its settings.
func (d *Deployer) Scrub(ctx context.Context, n deploy.Node) (deploy.Result, error) {
	return deploy.Timed("scrub", n.Name, d.Target(), func(res *deploy.Result) error {
		res.Action = deploy.ActionScrub
		return d.scrubVM(ctx, n.Name, res)
	})
}

func (d *Deployer) scrubVM(ctx context.Context, name string, res *deploy.Result) error {
	defer d.lockName(name)()
	e, err := d.find(ctx, name)
	if err != nil {
		return err
	}
	if e == nil {
		return deploy.Permanent(fmt.Errorf("no VM %s in folder %s", name, d.folder.InventoryPath))
	}
	res.ID, res.IP = e.vm.Reference().Value, e.ip
	if !e.rec.Marked() {
		return deploy.Permanent(fmt.Errorf("VM %s (%s): %w", name, res.ID, deploy.ErrNotOurs))
	}
	if _, where, err := secretsSpec(e); err != nil || len(where) == 0 {
		return err
	}
	if e.extra[DoneKey] != doneValue {
		res.SecretsLeft = true
		return deploy.Permanent(fmt.Errorf("VM %s (%s): first boot has not reported completion (%s=%s) yet, so its secrets may still be needed; run again once it has", name, res.ID, DoneKey, doneValue))
	}
	return d.clearSecrets(ctx, e.vm)
}
