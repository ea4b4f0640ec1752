package vsphere_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/vsphere/vspheretest"
)

// failOn makes the simulator fail every call of method on the VM named
// vm (by its name at the time of the call) after the first skip ones,
// until the returned stop is called.
func failOn(ctx context.Context, method, vm string, skip int) (stop func()) {
	var mu sync.Mutex
	enabled := true
	simulator.ServiceFromContext(ctx).AddFaultRule(&simulator.FaultInjectionRule{
		MethodName: method, ObjectType: "*", ObjectName: "*", Probability: 1,
		FaultType: simulator.FaultTypeCustom,
		Fault:     &types.SystemError{Reason: "injected by failOn"}, Message: "injected by failOn", Enabled: true,
		InclusionPropertyFilter: func(r mo.Reference) bool {
			v, ok := r.(*simulator.VirtualMachine)
			if !ok || v.Name != vm {
				return false
			}
			mu.Lock()
			defer mu.Unlock()
			if !enabled {
				return false
			}
			if skip > 0 {
				skip--
				return false
			}
			return true
		},
	})
	return func() { mu.Lock(); enabled = false; mu.Unlock() }
}

// TestReplaceFailsAtEachStep: a replace that fails at any step before the
// new VM is in service leaves the old VM running under its name and
// nothing running beside it: no VM under the aside name, and under the
// temporary name at most the unproven replacement, powered off and marked
// pending, for inspection (it would otherwise serve the same address and
// host name next to the VM in service). The next replace then swaps
// cleanly. A failure after the swap (the old VM cannot be removed) leaves
// the new one in service and the old one aside, marked, for a remove.
// (vcsim refuses any replace after a successful swap: it puts the
// replacement's disk in the datastore folder named after the temporary
// name, which the VM in service still uses; vSphere picks a new folder.)
func TestReplaceFailsAtEachStep(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	const name = "ksmg-rf"
	tmp, aside := deploy.TempName(name), deploy.AsideName(name)
	for _, tc := range []struct {
		step   string
		inject func(ctx context.Context) (stop func())
		silent bool // the replace waits for a guest that never reports
		after  bool // the failure comes after the swap
	}{
		{step: "import", inject: func(ctx context.Context) func() { return vspheretest.Fail(ctx, "ImportVApp", 0) }},
		{step: "upload", inject: func(ctx context.Context) func() { return vspheretest.Fail(ctx, "HttpNfcLeaseComplete", 0) }},
		{step: "hardware check", inject: func(ctx context.Context) func() { return failOn(ctx, "ReconfigVM_Task", tmp, 0) }},
		{step: "completion mark", inject: func(ctx context.Context) func() { return failOn(ctx, "ReconfigVM_Task", tmp, 1) }},
		{step: "power on", inject: func(ctx context.Context) func() { return failOn(ctx, "PowerOnVM_Task", tmp, 0) }},
		{step: "guest silent", silent: true, inject: func(context.Context) func() { return func() {} }},
		{step: "rename aside", inject: func(ctx context.Context) func() { return failOn(ctx, "Rename_Task", name, 0) }},
		{step: "rename into place", inject: func(ctx context.Context) func() { return failOn(ctx, "Rename_Task", tmp, 0) }},
		{step: "remove old", after: true, inject: func(ctx context.Context) func() { return failOn(ctx, "Destroy_Task", aside, 0) }},
	} {
		t.Run(tc.step, func(t *testing.T) {
			t.Parallel()
			simulator.Test(func(ctx context.Context, c *vim25.Client) {
				vspheretest.SafeFindChild(ctx, c)
				d := newDeployer(ctx, t, c, nil)
				defer closeD(t, d)
				n := node(ovaPath, name)
				n.WaitIP = 0
				old, err := d.Deploy(ctx, n)
				if err != nil {
					t.Fatal(err)
				}
				before := vspheretest.VMs(ctx, t, c)
				n.Replace = true
				stop := tc.inject(ctx)
				var res deploy.Result
				if tc.silent {
					wn := n
					wn.WaitIP = 2 * time.Second
					res, err = deployWithGuest(ctx, t, c, d, wn, tmp, true)
				} else {
					res, err = d.Deploy(ctx, n)
				}
				stop()
				if err == nil {
					t.Fatalf("replace with a failing %s succeeded: %+v", tc.step, res)
				}
				vm := oneVM(ctx, t, c, name)
				if tc.after {
					if vm.Self.Value == old.ID || len(vspheretest.VMsByName(ctx, t, c, aside)) != 1 {
						t.Errorf("after a failure to remove the old VM: %s is %s, aside %d", name, vm.Self.Value, len(vspheretest.VMsByName(ctx, t, c, aside)))
					}
				} else {
					if vm.Self.Value != old.ID || vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
						t.Errorf("after a failed %s, %s is %s (%s), want the old %s running", tc.step, name, vm.Self.Value, vm.Runtime.PowerState, old.ID)
					}
					for _, v := range vspheretest.VMsByName(ctx, t, c, aside) {
						t.Errorf("after a failed %s: %s (%s) left, %s", tc.step, aside, v.Self.Value, v.Runtime.PowerState)
					}
					for _, v := range vspheretest.VMsByName(ctx, t, c, tmp) {
						if v.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOff || vspheretest.ExtraConfig(v)[deploy.MarkKey] != deploy.MarkPending {
							t.Errorf("after a failed %s: %s (%s) left %s, marked %q; want it off and pending, if at all", tc.step, tmp, v.Self.Value, v.Runtime.PowerState, vspheretest.ExtraConfig(v)[deploy.MarkKey])
						}
					}
				}
				if tc.after {
					// The old VM, aside and marked, goes with a remove
					// (a fleet lists it as an orphan).
					if r, err := d.Remove(ctx, deploy.RemoveRequest{Name: aside}); err != nil || r.Action != deploy.ActionRemove {
						t.Fatalf("remove %s: %+v, %v", aside, r, err)
					}
				} else {
					// The next replace recovers from whatever was left.
					res, err = d.Deploy(ctx, n)
					if err != nil || res.Action != deploy.ActionReplace {
						t.Fatalf("replace after a failed %s: %+v, %v", tc.step, res, err)
					}
					if vm := oneVM(ctx, t, c, name); vm.Self.Value != res.ID {
						t.Errorf("%s is %s after the replace, want %s", name, vm.Self.Value, res.ID)
					}
				}
				if got := vspheretest.VMs(ctx, t, c); len(got) != len(before) {
					t.Errorf("VMs %v at the end, before %v", got, before)
				}
			}, simulator.VPX())
		})
	}
}
