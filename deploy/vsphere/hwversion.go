package vsphere

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ksmg-appliance/ksmg/deploy"
)

// resolveHardwareVersion turns the OVF's list of acceptable virtual
// hardware versions (DMTF separates them with spaces, "vmx-15 vmx-17 …";
// VMware's own appliances use commas) into the newest one the target can
// create. vCenter resolves the list itself; vcsim copies it into the spec
// verbatim and then rejects it, so the driver states the choice and gets
// the same VM on both. A single version is left alone.
// vcsim also reduces a comma list to its first entry, so the list is read
// from the descriptor, not from the import spec.
func (d *Deployer) resolveHardwareVersion(ctx context.Context, desc []byte, cs *types.VirtualMachineConfigSpec) error {
	env, err := ovf.Unmarshal(bytes.NewReader(desc))
	if err != nil || env.VirtualSystem == nil || len(env.VirtualSystem.VirtualHardware) == 0 ||
		env.VirtualSystem.VirtualHardware[0].System == nil || env.VirtualSystem.VirtualHardware[0].System.VirtualSystemType == nil {
		return nil // nothing listed: the target's default, as vSphere does
	}
	list := *env.VirtualSystem.VirtualHardware[0].System.VirtualSystemType
	want := strings.FieldsFunc(list, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' })
	if len(want) < 2 {
		return nil
	}
	supported, err := d.creatableVersions(ctx)
	if err != nil {
		// Without the list, the oldest acceptable version is the one most
		// likely to be creatable; the import then says if it is not.
		d.log.Warn("cannot query the target's hardware versions; using the OVA's oldest", "err", err, "version", want[0])
		cs.Version = want[0]
		return nil
	}
	best, bestN := "", -1
	for _, v := range want {
		hv, err := types.ParseHardwareVersion(v)
		if err != nil || !supported[hv.String()] {
			continue
		}
		if int(hv) > bestN {
			best, bestN = hv.String(), int(hv)
		}
	}
	if best == "" {
		return deploy.Permanent(fmt.Errorf("the OVA accepts virtual hardware %s, none of which this target can create", strings.Join(want, ", ")))
	}
	cs.Version = best
	return nil
}

// creatableVersions asks the environment browser of the pool's compute
// resource which hardware versions it can create.
func (d *Deployer) creatableVersions(ctx context.Context) (map[string]bool, error) {
	owner, err := d.pool.Owner(ctx)
	if err != nil {
		return nil, fmt.Errorf("resource pool owner: %w", err)
	}
	var cr mo.ComputeResource
	if err := object.NewCommon(d.c, owner.Reference()).Properties(ctx, owner.Reference(), []string{"environmentBrowser"}, &cr); err != nil {
		return nil, fmt.Errorf("environment browser: %w", err)
	}
	if cr.EnvironmentBrowser == nil {
		return nil, fmt.Errorf("compute resource %s has no environment browser", owner.Reference())
	}
	descs, err := object.NewEnvironmentBrowser(d.c, *cr.EnvironmentBrowser).QueryConfigOptionDescriptor(ctx)
	if err != nil {
		return nil, fmt.Errorf("query config option descriptors: %w", err)
	}
	out := map[string]bool{}
	for _, o := range descs {
		if o.CreateSupported {
			out[o.Key] = true
		}
	}
	return out, nil
}
