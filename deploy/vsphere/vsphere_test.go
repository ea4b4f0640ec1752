package vsphere_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
	"gopkg.in/yaml.v3"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/vsphere"
	"github.com/ksmg-appliance/ksmg/deploy/vsphere/vspheretest"
	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/firstboot/sources"
)

// No ESXi or vCenter can run here: the tests use govmomi's vcsim, with
// its standalone ESXi model (ESX) and its vCenter model (VPX). It checks
// the API protocol (import spec, lease, upload, tasks, properties), not
// what a real host does with the disk.

const password = `Pa55 & "word" <x>-9`

func props(host string) map[string]string {
	return map[string]string{
		"ksmg.hostname":        host,
		"ksmg.network.mode":    "static",
		"ksmg.network.address": "192.0.2.10",
		"ksmg.network.prefix":  "24",
		"ksmg.network.gateway": "192.0.2.1",
		"ksmg.admin.password":  password,
		"ksmg.cluster.role":    "control",
		"ksmg.eula.accepted":   "true",
	}
}

func node(ovaPath, name string) deploy.Node {
	return deploy.Node{Name: name, Image: ovaPath, Properties: props(name + ".example.com"), PowerOn: true}
}

func models() []struct {
	name  string
	model func() *simulator.Model
} {
	return []struct {
		name  string
		model func() *simulator.Model
	}{{"ESX", simulator.ESX}, {"VPX", simulator.VPX}}
}

// newDeployer goes through the registry the way a fleet inventory does:
// YAML target keys decoded by the driver's opener, with login.
func newDeployer(ctx context.Context, t *testing.T, c *vim25.Client, extra map[string]any) deploy.Deployer {
	t.Helper()
	target := vspheretest.Target(t, c)
	for k, v := range extra {
		target[k] = v
	}
	y, err := yaml.Marshal(target)
	if err != nil {
		t.Fatal(err)
	}
	open, ok := deploy.Driver(vsphere.Kind)
	if !ok {
		t.Fatal("vsphere driver not registered")
	}
	d, err := open(ctx, deploy.TargetSpec{Name: "sim", Decode: func(v any) error {
		dec := yaml.NewDecoder(bytes.NewReader(y))
		dec.KnownFields(true)
		return dec.Decode(v)
	}})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return d
}

// closeD logs out; deferred inside the simulator's function, which stops
// the simulator when it returns.
func closeD(t *testing.T, d deploy.Deployer) {
	if err := d.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

func vmProps(ctx context.Context, t *testing.T, c *vim25.Client, id string) mo.VirtualMachine {
	t.Helper()
	var m mo.VirtualMachine
	ref := types.ManagedObjectReference{Type: "VirtualMachine", Value: id}
	if err := object.NewVirtualMachine(c, ref).Properties(ctx, ref, []string{"name", "config", "runtime.powerState"}, &m); err != nil {
		t.Fatalf("VM %s: %v", id, err)
	}
	return m
}

func extraConfig(m mo.VirtualMachine) map[string]string {
	out := map[string]string{}
	for _, o := range m.Config.ExtraConfig {
		ov := o.GetOptionValue()
		s, _ := ov.Value.(string)
		out[ov.Key] = s
	}
	return out
}

func count(names []string, name string) int {
	n := 0
	for _, s := range names {
		if s == name {
			n++
		}
	}
	return n
}

// TestDeploy: a single deploy with properties, checked on the VM; then
// re-run idempotence and Replace.
//
//nolint:gocyclo // one scenario (deploy, read back, re-run, replace) checked step after step
func TestDeploy(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	for _, tc := range models() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			simulator.Test(func(ctx context.Context, c *vim25.Client) {
				d := newDeployer(ctx, t, c, nil)
				defer closeD(t, d)
				before := vspheretest.VMs(ctx, t, c)
				n := node(ovaPath, "ksmg-1")
				n.CPUs, n.MemoryMiB, n.DiskGiB = 3, 3072, 1
				var mu sync.Mutex
				var calls int
				var last, total int64
				n.Progress = func(stage string, done, tot int64) {
					mu.Lock()
					defer mu.Unlock()
					if stage != "upload" || done < last || done > tot {
						t.Errorf("progress %s %d/%d after %d", stage, done, tot, last)
					}
					calls, last, total = calls+1, done, tot
				}
				plan, err := d.Plan(ctx, n)
				if err != nil || plan.Action != deploy.ActionCreate {
					t.Fatalf("plan before deploy: %+v, %v", plan, err)
				}
				res, err := d.Deploy(ctx, n)
				if err != nil {
					t.Fatalf("deploy: %v", err)
				}
				if res.Action != deploy.ActionCreate || !strings.HasPrefix(res.ID, "vm-") && tc.name == "VPX" || res.ID == "" {
					t.Errorf("result %+v", res)
				}
				if calls == 0 || last != total || total == 0 {
					t.Errorf("progress: %d calls, last %d of %d", calls, last, total)
				}
				after := vspheretest.VMs(ctx, t, c)
				if len(after) != len(before)+1 || count(after, "ksmg-1") != 1 {
					t.Fatalf("VMs %v after deploy, before %v", after, before)
				}

				m := vmProps(ctx, t, c, res.ID)
				ec := extraConfig(m)
				if ec[deploy.MarkKey] != deploy.MarkComplete {
					t.Errorf("mark %q", ec[deploy.MarkKey])
				}
				if m.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
					t.Errorf("power state %s", m.Runtime.PowerState)
				}
				if m.Config.Hardware.NumCPU != 3 || m.Config.Hardware.MemoryMB != 3072 {
					t.Errorf("%d CPUs, %d MiB", m.Config.Hardware.NumCPU, m.Config.Hardware.MemoryMB)
				}
				disks := object.VirtualDeviceList(m.Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil))
				if len(disks) != 1 || disks[0].(*types.VirtualDisk).CapacityInKB != 1<<20 {
					t.Errorf("disks %d, want one of 1 GiB", len(disks))
				}

				if tc.name == "VPX" {
					got := map[string]string{}
					for _, p := range m.Config.VAppConfig.GetVmConfigInfo().Property {
						got[p.Id] = p.Value
					}
					for k, v := range n.Properties {
						if got[k] != v {
							t.Errorf("vApp property %s = %q, want %q", k, got[k], v)
						}
					}
					if _, ok := ec["guestinfo.ovfEnv"]; ok {
						t.Error("guestinfo.ovfEnv injected on vCenter, which delivers the environment itself")
					}
				} else {
					env, ok := ec["guestinfo.ovfEnv"]
					if !ok {
						t.Fatal("no guestinfo.ovfEnv on standalone ESXi")
					}
					kv, err := sources.ParseOVFEnv([]byte(env))
					if err != nil {
						t.Fatalf("first-boot parser rejects the injected environment: %v\n%s", err, env)
					}
					for k, v := range n.Properties {
						if kv[k] != v {
							t.Errorf("ovfEnv %s = %q, want %q", k, kv[k], v)
						}
					}
					if kv["ksmg.ksn.consent"] != "False" {
						t.Errorf("ovfEnv ksmg.ksn.consent = %q, want the OVF default False", kv["ksmg.ksn.consent"])
					}
					a, errs := answers.FromKeys(kv, "eth0")
					if len(errs) > 0 {
						t.Errorf("first-boot answers from the environment: %v", errs)
					}
					if a.Hostname != "ksmg-1.example.com" || a.AdminPassword != password || !a.EULAAccepted {
						t.Errorf("answers %q %v", a.Hostname, a.EULAAccepted)
					}
				}

				// Re-run: nothing changes.
				n.Progress = nil
				plan, err = d.Plan(ctx, n)
				if err != nil || plan.Action != deploy.ActionUnchanged || plan.ID != res.ID {
					t.Errorf("plan after deploy: %+v, %v", plan, err)
				}
				again, err := d.Deploy(ctx, n)
				if err != nil || again.Action != deploy.ActionUnchanged || again.ID != res.ID {
					t.Errorf("re-run: %+v, %v", again, err)
				}
				if got := vspheretest.VMs(ctx, t, c); len(got) != len(after) {
					t.Errorf("re-run changed the VMs: %v", got)
				}

				// Replace: a new VM in place of the old.
				n.Replace = true
				rep, err := d.Deploy(ctx, n)
				if err != nil || rep.Action != deploy.ActionReplace || rep.ID == res.ID {
					t.Fatalf("replace: %+v, %v", rep, err)
				}
				if got := vspheretest.VMs(ctx, t, c); len(got) != len(after) || count(got, "ksmg-1") != 1 {
					t.Errorf("VMs after replace: %v", got)
				}
			}, tc.model())
		})
	}
}

// TestLeftover: a VM marked pending (an interrupted run) is replaced; a
// VM that ksmg did not make is left alone unless Replace is asked.
func TestLeftover(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		d := newDeployer(ctx, t, c, nil)
		defer closeD(t, d)
		n := node(ovaPath, "ksmg-left")
		res, err := d.Deploy(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		vm := object.NewVirtualMachine(c, types.ManagedObjectReference{Type: "VirtualMachine", Value: res.ID})
		task, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{ExtraConfig: []types.BaseOptionValue{
			&types.OptionValue{Key: deploy.MarkKey, Value: vsphere.PendingMark}}})
		if err == nil {
			err = task.Wait(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		before := vspheretest.VMs(ctx, t, c)
		plan, err := d.Plan(ctx, n)
		if err != nil || plan.Action != deploy.ActionReplace || !strings.Contains(plan.Reason, "unfinished") {
			t.Fatalf("plan of a leftover: %+v, %v", plan, err)
		}
		again, err := d.Deploy(ctx, n)
		if err != nil || again.Action != deploy.ActionReplace || again.ID == res.ID {
			t.Fatalf("deploy over a leftover: %+v, %v", again, err)
		}
		if got := vspheretest.VMs(ctx, t, c); len(got) != len(before) {
			t.Errorf("VMs %v, before %v", got, before)
		}

		// vcsim's own VMs carry no mark: someone else's.
		foreign := before[0]
		if strings.HasPrefix(foreign, "ksmg") {
			foreign = before[len(before)-1]
		}
		fn := node(ovaPath, foreign)
		fn.Properties["ksmg.hostname"] = "foreign.example.com"
		if _, err := d.Plan(ctx, fn); err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), "not deployed by ksmg") {
			t.Errorf("plan over a foreign VM: %v", err)
		}
		if _, err := d.Deploy(ctx, fn); err == nil {
			t.Error("deploy over a foreign VM succeeded without Replace")
		}
		if got := vspheretest.VMs(ctx, t, c); count(got, foreign) != 1 {
			t.Errorf("foreign VM %s touched: %v", foreign, got)
		}
	}, simulator.VPX())
}

// TestRejected: bad input fails before anything is created.
func TestRejected(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	tampered := vspheretest.Tampered(t, ovaPath)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		d := newDeployer(ctx, t, c, nil)
		defer closeD(t, d)
		before := vspheretest.VMs(ctx, t, c)
		for _, tc := range []struct {
			name string
			edit func(*deploy.Node)
			want string
		}{
			{"tampered OVA", func(n *deploy.Node) { n.Image = tampered }, "digest check failed"},
			{"missing OVA", func(n *deploy.Node) { n.Image = "/nonexistent.ova" }, "no such file"},
			{"unknown property", func(n *deploy.Node) { n.Properties["ksmg.network.interface"] = "ens192" }, "ksmg.network.interface: not declared by the OVA"},
			{"wait without power", func(n *deploy.Node) { n.PowerOn = false; n.WaitIP = time.Second }, "needs power-on"},
			{"bad node", func(n *deploy.Node) { n.Role = "boss" }, `role "boss"`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				n := node(ovaPath, "ksmg-bad")
				tc.edit(&n)
				res, err := d.Deploy(ctx, n)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.want)
				}
				if !deploy.IsPermanent(err) || res.Err == nil {
					t.Errorf("err %v: want permanent and in the result", err)
				}
				if strings.Contains(err.Error(), password) {
					t.Error("error reveals the admin password")
				}
				if got := vspheretest.VMs(ctx, t, c); len(got) != len(before) {
					t.Errorf("VMs %v, before %v", got, before)
				}
			})
		}
	}, simulator.ESX())
}

// TestProvisioning: thin, thick and eager-zeroed thick reach the disk
// backing.
func TestProvisioning(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		for _, tc := range []struct {
			prov        string
			thin, scrub bool
		}{
			{vsphere.Thin, true, false},
			{vsphere.Thick, false, false},
			{vsphere.EagerZeroedThick, false, true},
		} {
			d := newDeployer(ctx, t, c, map[string]any{"disk_provisioning": tc.prov})
			defer closeD(t, d)
			res, err := d.Deploy(ctx, node(ovaPath, "ksmg-"+tc.prov))
			if err != nil {
				t.Fatalf("%s: %v", tc.prov, err)
			}
			m := vmProps(ctx, t, c, res.ID)
			disk := object.VirtualDeviceList(m.Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil))[0].(*types.VirtualDisk)
			b := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
			if b.ThinProvisioned == nil || *b.ThinProvisioned != tc.thin || b.EagerlyScrub == nil || *b.EagerlyScrub != tc.scrub {
				t.Errorf("%s: thin %v eagerlyScrub %v", tc.prov, b.ThinProvisioned, b.EagerlyScrub)
			}
		}
	}, simulator.VPX())
}

// TestWaitIP: the deploy waits for the guest's address and first boot's
// signal; without them in time it fails and leaves the VM running, marked
// pending, for inspection (the next run replaces it).
func TestWaitIP(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		d := newDeployer(ctx, t, c, nil)
		defer closeD(t, d)
		before := vspheretest.VMs(ctx, t, c)

		n := node(ovaPath, "ksmg-timeout")
		n.WaitIP = 300 * time.Millisecond
		if _, err := d.Deploy(ctx, n); err == nil || !strings.Contains(err.Error(), "no IPv4 address") {
			t.Errorf("deploy without a guest IP: %v", err)
		}
		left := vspheretest.VMsByName(ctx, t, c, "ksmg-timeout")
		if len(left) != 1 || vspheretest.ExtraConfig(left[0])[deploy.MarkKey] != deploy.MarkPending || left[0].Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
			t.Errorf("after a failed wait: %d VMs ksmg-timeout, want one left running, marked pending", len(left))
		}
		if p, err := d.Plan(ctx, n); err != nil || p.Action != deploy.ActionReplace {
			t.Errorf("plan after a failed wait: %+v, %v; want replace", p, err)
		}
		_ = before

		n = node(ovaPath, "ksmg-ip")
		n.WaitIP = time.Minute
		type out struct {
			res deploy.Result
			err error
		}
		ch := make(chan out, 1)
		go func() {
			res, err := d.Deploy(ctx, n)
			ch <- out{res, err}
		}()
		// Play VMware Tools and first boot: an address, then the signal.
		vspheretest.PlayGuest(ctx, t, c, "ksmg-ip", "192.0.2.77", false)
		o := <-ch
		if o.err != nil || o.res.IP != "192.0.2.77" {
			t.Fatalf("deploy with IP: %+v, %v", o.res, o.err)
		}
		again, err := d.Deploy(ctx, n)
		if err != nil || again.Action != deploy.ActionUnchanged || again.IP != "192.0.2.77" {
			t.Errorf("re-run: %+v, %v", again, err)
		}
	}, simulator.VPX())
}

// vmState returns the VM of name in DC0's VM folder and its power state.
func vmState(ctx context.Context, c *vim25.Client, name string) (types.ManagedObjectReference, types.VirtualMachinePowerState, error) {
	ref, err := object.NewSearchIndex(c).FindByInventoryPath(ctx, "/DC0/vm/"+name)
	if err != nil || ref == nil {
		return types.ManagedObjectReference{}, "", fmt.Errorf("VM %s not found (%w)", name, err)
	}
	vm := object.NewVirtualMachine(c, ref.Reference())
	state, err := vm.PowerState(ctx)
	return vm.Reference(), state, err
}

// TestFaults: failing vSphere calls give an error, leave no VM behind, and
// a retry then succeeds with exactly one VM.
func TestFaults(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	for _, method := range []string{"ImportVApp", "PowerOnVM_Task", "ReconfigVM_Task", "CreateImportSpec"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			simulator.Test(func(ctx context.Context, c *vim25.Client) {
				d := newDeployer(ctx, t, c, nil)
				defer closeD(t, d)
				before := vspheretest.VMs(ctx, t, c)
				n := node(ovaPath, "ksmg-fault")
				n.DiskGiB = 1
				vspheretest.Fail(ctx, method, 1)
				res, err := d.Deploy(ctx, n)
				if err == nil || res.Err == nil {
					t.Fatalf("deploy with a failing %s succeeded: %+v", method, res)
				}
				if !strings.Contains(err.Error(), "injected by vspheretest") {
					t.Errorf("error does not carry the fault: %v", err)
				}
				if deploy.IsPermanent(err) {
					t.Errorf("a server fault is marked permanent: %v", err)
				}
				if got := vspheretest.VMs(ctx, t, c); len(got) != len(before) {
					t.Errorf("VMs %v after the failure, before %v", got, before)
				}
				res, err = d.Deploy(ctx, n)
				if err != nil || res.Action != deploy.ActionCreate {
					t.Fatalf("retry: %+v, %v", res, err)
				}
				if got := vspheretest.VMs(ctx, t, c); len(got) != len(before)+1 || count(got, "ksmg-fault") != 1 {
					t.Errorf("VMs %v after the retry, before %v", got, before)
				}
			}, simulator.VPX())
		})
	}
}

// TestConcurrent: many deploys on one Deployer at once, two of them for
// the same name: each name ends up exactly once.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		vspheretest.SafeFindChild(ctx, c) // a vcsim bug, see there
		d := newDeployer(ctx, t, c, nil)
		defer closeD(t, d)
		before := vspheretest.VMs(ctx, t, c)
		names := []string{"c1", "c2", "c3", "c4", "c5", "c6", "c1", "c2"}
		var wg sync.WaitGroup
		var mu sync.Mutex
		actions := map[deploy.Action]int{}
		for _, name := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := d.Deploy(ctx, node(ovaPath, name))
				if err != nil {
					t.Errorf("%s: %v", name, err)
				}
				mu.Lock()
				actions[res.Action]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		if actions[deploy.ActionCreate] != 6 || actions[deploy.ActionUnchanged] != 2 {
			t.Errorf("actions %v, want 6 create and 2 unchanged", actions)
		}
		got := vspheretest.VMs(ctx, t, c)
		if len(got) != len(before)+6 {
			t.Errorf("VMs %v, before %v", got, before)
		}
	}, simulator.VPX())
}

// TestOpenErrors: configuration errors name the key and are permanent.
func TestOpenErrors(t *testing.T) {
	t.Parallel()
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		open, _ := deploy.Driver(vsphere.Kind)
		for _, tc := range []struct {
			name  string
			extra map[string]any
			want  string
		}{
			{"datastore", map[string]any{"datastore": "nope"}, `datastore "nope"`},
			{"network", map[string]any{"network": "nope"}, `network "nope"`},
			{"provisioning", map[string]any{"disk_provisioning": "sparse"}, `disk_provisioning "sparse"`},
			{"cluster", map[string]any{"cluster": "nope"}, `cluster "nope"`},
			{"unknown key", map[string]any{"pasword": "x"}, "field pasword not found"},
			{"password file", map[string]any{"password_file": "/nonexistent"}, "password_file"},
			{"password in url", map[string]any{"url": "https://u:p@vc.example.com/sdk"}, "must not carry a password"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				target := vspheretest.Target(t, c)
				for k, v := range tc.extra {
					target[k] = v
				}
				y, _ := yaml.Marshal(target)
				_, err := open(ctx, deploy.TargetSpec{Name: "sim", Decode: func(v any) error {
					dec := yaml.NewDecoder(bytes.NewReader(y))
					dec.KnownFields(true)
					return dec.Decode(v)
				}})
				if err == nil || !strings.Contains(err.Error(), tc.want) || !deploy.IsPermanent(err) {
					t.Errorf("open: %v, want a permanent error mentioning %q", err, tc.want)
				}
				if err != nil && strings.Contains(err.Error(), "vcsim-pass") {
					t.Error("error reveals the password")
				}
			})
		}
	}, simulator.VPX())
}

// TestChangedAfterInspection: the OVA is inspected once per file version
// (size and mtime); bytes changed behind that are caught by the hash taken
// during the upload, and the half-imported VM is removed.
func TestChangedAfterInspection(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		d := newDeployer(ctx, t, c, nil)
		defer closeD(t, d)
		if _, err := d.Deploy(ctx, node(ovaPath, "ksmg-a")); err != nil {
			t.Fatal(err)
		}
		before := vspheretest.VMs(ctx, t, c)
		st, err := os.Stat(ovaPath)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(ovaPath)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)-4096] ^= 0xff // inside the last member, the disk
		if err := os.WriteFile(ovaPath, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(ovaPath, st.ModTime(), st.ModTime()); err != nil {
			t.Fatal(err)
		}
		_, err = d.Deploy(ctx, node(ovaPath, "ksmg-b"))
		if err == nil || !strings.Contains(err.Error(), "changed after inspection") {
			t.Fatalf("deploy of a changed OVA: %v", err)
		}
		if got := vspheretest.VMs(ctx, t, c); len(got) != len(before) {
			t.Errorf("VMs %v, before %v", got, before)
		}
	}, simulator.ESX())
}

// TestInterrupted: a deploy cancelled half-way (here while waiting for the
// guest's IP) removes its VM, and running it again simply deploys.
func TestInterrupted(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		d := newDeployer(ctx, t, c, nil)
		defer closeD(t, d)
		before := vspheretest.VMs(ctx, t, c)
		n := node(ovaPath, "ksmg-int")
		n.WaitIP = time.Minute
		cctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := d.Deploy(cctx, n)
			errc <- err
		}()
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, state, err := vmState(ctx, c, "ksmg-int"); err == nil && state == types.VirtualMachinePowerStatePoweredOn {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("VM never powered on")
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("interrupted deploy: %v, want context.Canceled", err)
		}
		if got := vspheretest.VMs(ctx, t, c); len(got) != len(before) {
			t.Errorf("VMs %v after the interruption, before %v", got, before)
		}
		n.WaitIP = 0
		if res, err := d.Deploy(ctx, n); err != nil || res.Action != deploy.ActionCreate {
			t.Errorf("second run: %+v, %v", res, err)
		}
	}, simulator.VPX())
}

// TestPlacement: explicit datacenter, folder, host, resource pool,
// datastore and network (target default and per node) are where the VM
// lands.
func TestPlacement(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		root, err := object.NewSearchIndex(c).FindByInventoryPath(ctx, "/DC0/vm")
		if err != nil || root == nil {
			t.Fatalf("vm folder: %v", err)
		}
		if _, err := root.(*object.Folder).CreateFolder(ctx, "ksmg"); err != nil {
			t.Fatal(err)
		}
		d := newDeployer(ctx, t, c, map[string]any{
			"datacenter":    "DC0",
			"folder":        "/DC0/vm/ksmg",
			"host":          "DC0_C0_H1",
			"resource_pool": "/DC0/host/DC0_C0/Resources",
			"datastore":     "LocalDS_0",
			"network":       "DC0_DVPG0",
		})
		defer closeD(t, d)
		for _, tc := range []struct{ node, network, want string }{
			{"ksmg-p1", "", "DC0_DVPG0"},
			{"ksmg-p2", "VM Network", "VM Network"},
		} {
			n := node(ovaPath, tc.node)
			n.Network = tc.network
			res, err := d.Deploy(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			ref := types.ManagedObjectReference{Type: "VirtualMachine", Value: res.ID}
			var m mo.VirtualMachine
			if err := object.NewVirtualMachine(c, ref).Properties(ctx, ref, []string{"parent", "resourcePool", "datastore", "network", "runtime.host"}, &m); err != nil {
				t.Fatal(err)
			}
			name := func(r types.ManagedObjectReference) string {
				n, err := object.NewCommon(c, r).ObjectName(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			if got := name(*m.Parent); got != "ksmg" {
				t.Errorf("%s: folder %s", tc.node, got)
			}
			if got := name(*m.Runtime.Host); got != "DC0_C0_H1" {
				t.Errorf("%s: host %s", tc.node, got)
			}
			if len(m.Datastore) != 1 || name(m.Datastore[0]) != "LocalDS_0" {
				t.Errorf("%s: datastores %v", tc.node, m.Datastore)
			}
			if len(m.Network) != 1 || name(m.Network[0]) != tc.want {
				t.Errorf("%s: networks %v, want %s", tc.node, m.Network, tc.want)
			}
		}
		n := node(ovaPath, "ksmg-p3")
		n.Network = "no-such-network"
		if _, err := d.Deploy(ctx, n); err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), `network "no-such-network"`) {
			t.Errorf("unknown node network: %v", err)
		}
	}, simulator.VPX())
}
