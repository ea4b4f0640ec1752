package fleet_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
	"gopkg.in/yaml.v3"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/fleet"
	_ "github.com/ksmg-appliance/ksmg/deploy/vsphere" // registers kind vsphere
	"github.com/ksmg-appliance/ksmg/deploy/vsphere/vspheretest"
	"github.com/ksmg-appliance/ksmg/firstboot/sources"
)

// No vCenter or ESXi host can run here: these tests deploy fleets with the
// real vsphere driver into govmomi's simulator (vcsim), its vCenter model
// (VPX) and its standalone ESXi model (ESX).

const (
	simToken    = "sim-join-token-0123456789"
	controlAddr = "192.0.2.10"
)

var (
	ovaOnce sync.Once
	ovaPath string
)

// smallOVA is one small appliance OVA for all tests of the package.
func smallOVA(t *testing.T) string {
	ovaOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fleet-ova-")
		if err != nil {
			t.Fatal(err)
		}
		src := vspheretest.SmallOVA(t)
		ovaPath = filepath.Join(dir, "ksmg.ova")
		data, err := os.ReadFile(src)
		if err == nil {
			err = os.WriteFile(ovaPath, data, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	})
	return ovaPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if ovaPath != "" {
		os.RemoveAll(filepath.Dir(ovaPath))
	}
	os.Exit(code)
}

// simInventory writes an inventory of one static control node and n DHCP
// secondaries on the simulator c is connected to.
func simInventory(t *testing.T, c *vim25.Client, n int) *fleet.Inventory {
	t.Helper()
	dir := t.TempDir()
	for name, v := range map[string]string{"token": simToken, "password": "Sim-Password-2026"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	target, err := yaml.Marshal(vspheretest.Target(t, c))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "images:\n  ova: %s\n", smallOVA(t))
	b.WriteString("defaults:\n  wait_ip: 0s\n  properties:\n    ksmg.eula.accepted: \"true\"\n    ksmg.network.ntp: ntp.example.com\n")
	b.WriteString("targets:\n  sim:\n    kind: vsphere\n")
	for _, l := range strings.Split(strings.TrimSpace(string(target)), "\n") {
		b.WriteString("    " + l + "\n")
	}
	b.WriteString("cluster:\n  join_token: {file: token}\n  admin_password: {file: password}\n")
	b.WriteString("nodes:\n  - {name: ksmg-control, target: sim, role: control, addresses: {ipv4: " + controlAddr + "/24, gateway: 192.0.2.1}}\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  - {name: ksmg-%03d, target: sim, role: secondary}\n", i)
	}
	p := filepath.Join(dir, "fleet.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := fleet.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func open(ctx context.Context, t *testing.T, inv *fleet.Inventory) *fleet.Fleet {
	t.Helper()
	f, err := fleet.Open(ctx, inv, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

type simVM struct {
	id        string
	extra     map[string]string
	vapp      map[string]string
	poweredOn bool
}

// simVMs lists the simulator's VMs by name (a name may occur more than once).
func simVMs(ctx context.Context, t *testing.T, c *vim25.Client) map[string][]simVM {
	t.Helper()
	v, err := view.NewManager(c).CreateContainerView(ctx, c.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = v.Destroy(ctx) }()
	var vms []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name", "config.extraConfig", "config.vAppConfig", "runtime.powerState"}, &vms); err != nil {
		t.Fatal(err)
	}
	out := map[string][]simVM{}
	for _, vm := range vms {
		s := simVM{id: vm.Self.Value, extra: map[string]string{}, vapp: map[string]string{}, poweredOn: vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn}
		if vm.Config != nil {
			for _, o := range vm.Config.ExtraConfig {
				ov := o.GetOptionValue()
				s.extra[ov.Key], _ = ov.Value.(string)
			}
			if vm.Config.VAppConfig != nil {
				for _, p := range vm.Config.VAppConfig.GetVmConfigInfo().Property {
					s.vapp[p.Id] = p.Value
				}
			}
		}
		out[vm.Name] = append(out[vm.Name], s)
	}
	return out
}

// properties are the first-boot answers a VM carries: vApp properties on
// vCenter, the injected OVF environment on a standalone host.
func properties(t *testing.T, vm simVM) map[string]string {
	if env, ok := vm.extra["guestinfo.ovfEnv"]; ok {
		kv, err := sources.ParseOVFEnv([]byte(env))
		if err != nil {
			t.Fatalf("VM %s: guestinfo.ovfEnv: %v", vm.id, err)
		}
		return kv
	}
	return vm.vapp
}

// checkFleet: every node exactly once, marked complete, powered on, with
// its role; secondaries carry the control address and the join token.
func checkFleet(t *testing.T, vms map[string][]simVM, inv *fleet.Inventory) {
	t.Helper()
	for _, n := range inv.Nodes {
		got := vms[n.Name]
		if len(got) != 1 {
			t.Errorf("%s: %d VMs, want exactly 1", n.Name, len(got))
			continue
		}
		vm := got[0]
		if vm.extra[deploy.MarkKey] != deploy.MarkComplete || !vm.poweredOn {
			t.Errorf("%s: mark %q, powered on %v", n.Name, vm.extra[deploy.MarkKey], vm.poweredOn)
		}
		p := properties(t, vm)
		if p["ksmg.cluster.role"] != n.Role || p["ksmg.hostname"] != n.Name {
			t.Errorf("%s: role %q hostname %q", n.Name, p["ksmg.cluster.role"], p["ksmg.hostname"])
		}
		if n.Role == deploy.RoleSecondary && (p["ksmg.cluster.control_address"] != controlAddr || p["ksmg.cluster.join_token"] != simToken) {
			t.Errorf("%s: control address %q, join token set %v", n.Name, p["ksmg.cluster.control_address"], p["ksmg.cluster.join_token"] == simToken)
		}
	}
}

func count(vms map[string][]simVM) int {
	n := 0
	for _, v := range vms {
		n += len(v)
	}
	return n
}

var simOpts = fleet.Options{Concurrency: 8, Retries: 3, Backoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}

// TestSimFleet100: a 100-node fleet (1 control, 99 secondaries) into the
// vCenter model; --plan before and after touches nothing; a re-run is all
// unchanged and makes no VM.
func TestSimFleet100(t *testing.T) {
	t.Parallel()
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		vspheretest.SafeFindChild(ctx, c)
		inv := simInventory(t, c, 99)
		f := open(ctx, t, inv)
		defer f.Close()
		before := simVMs(ctx, t, c)

		for _, r := range f.Plan(ctx, simOpts) {
			if r.Err != nil || r.Action != deploy.ActionCreate {
				t.Fatalf("plan %s: %s %v", r.Node, r.Action, r.Err)
			}
		}
		if got := count(simVMs(ctx, t, c)); got != count(before) {
			t.Fatalf("plan changed the VM count: %d -> %d", count(before), got)
		}

		start := time.Now()
		out := f.Run(ctx, simOpts)
		t.Logf("100-node fleet deployed in %s (concurrency %d)", time.Since(start).Round(time.Millisecond), simOpts.Concurrency)
		if n := fleet.Failed(out); n != 0 {
			var sb strings.Builder
			_ = fleet.WriteResults(&sb, out) // a strings.Builder takes every write
			t.Fatalf("%d nodes failed:\n%s", n, sb.String())
		}
		after := simVMs(ctx, t, c)
		if count(after) != count(before)+100 {
			t.Errorf("%d VMs, want %d + 100", count(after), count(before))
		}
		checkFleet(t, after, inv)

		for _, r := range f.Plan(ctx, simOpts) {
			if r.Err != nil || r.Action != deploy.ActionUnchanged {
				t.Errorf("plan after run %s: %s %v", r.Node, r.Action, r.Err)
			}
		}
		out = f.Run(ctx, simOpts)
		for i, o := range out {
			if o.Status != fleet.StatusOK || o.Action != deploy.ActionUnchanged || o.ID != after[o.Node][0].id {
				t.Errorf("re-run %s: %s %s %s (was %s) %v", o.Node, o.Status, o.Action, o.ID, after[o.Node][0].id, o.Err)
			}
			if i > 3 && t.Failed() {
				break
			}
		}
		if again := simVMs(ctx, t, c); count(again) != count(after) {
			t.Errorf("re-run changed the VM count: %d -> %d", count(after), count(again))
		}
	}, simulator.VPX())
}

// TestSimFleetESX: on a standalone ESXi host the first-boot answers,
// including the control address, travel in the injected OVF environment.
func TestSimFleetESX(t *testing.T) {
	t.Parallel()
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		vspheretest.SafeFindChild(ctx, c)
		inv := simInventory(t, c, 4)
		f := open(ctx, t, inv)
		defer f.Close()
		if out := f.Run(ctx, simOpts); fleet.Failed(out) != 0 {
			t.Fatalf("%+v", out)
		}
		vms := simVMs(ctx, t, c)
		checkFleet(t, vms, inv)
		if _, ok := vms["ksmg-001"][0].extra["guestinfo.ovfEnv"]; !ok {
			t.Error("no guestinfo.ovfEnv on the standalone host")
		}
	}, simulator.ESX())
}

// TestSimFaults: the simulator fails some ImportVApp and PowerOnVM_Task
// calls: the attempts they cost are retried and succeed; a node whose
// power-on always fails is reported after its retries while the others
// succeed; no name exists twice.
func TestSimFaults(t *testing.T) {
	t.Parallel()
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		vspheretest.SafeFindChild(ctx, c)
		inv := simInventory(t, c, 29)
		f := open(ctx, t, inv)
		defer f.Close()
		before := count(simVMs(ctx, t, c))
		// one node whose VM can never be powered on
		simulator.ServiceFromContext(ctx).AddFaultRule(&simulator.FaultInjectionRule{
			MethodName: "PowerOnVM_Task", ObjectType: "*", ObjectName: "ksmg-013", Probability: 1, Enabled: true,
			FaultType: simulator.FaultTypeCustom, Fault: &types.SystemError{Reason: "injected: host cannot power on ksmg-013"},
			Message: "injected: host cannot power on ksmg-013",
		})
		const imports, powerOns = 5, 3
		vspheretest.Fail(ctx, "ImportVApp", imports)
		vspheretest.Fail(ctx, "PowerOnVM_Task", powerOns)
		opt := simOpts
		opt.Retries = imports + powerOns // enough even if every fault hits one node

		out := f.Run(ctx, opt)
		attempts := 0
		for _, o := range out {
			attempts += o.Attempts
			switch {
			case o.Node == "ksmg-013":
				if o.Status != fleet.StatusFailed || o.Attempts != opt.Retries+1 || !strings.Contains(o.Err.Error(), "host cannot power on ksmg-013") {
					t.Errorf("ksmg-013: %s after %d attempts: %v", o.Status, o.Attempts, o.Err)
				}
			case o.Status != fleet.StatusOK:
				t.Errorf("%s: %s %v", o.Node, o.Status, o.Err)
			}
		}
		// every injected fault cost exactly one attempt of some node
		if want := len(out) + imports + powerOns + opt.Retries; attempts != want {
			t.Errorf("%d attempts in all, want %d (one per node, one per injected fault, %d for ksmg-013's retries)", attempts, want, opt.Retries)
		}
		vms := simVMs(ctx, t, c)
		if count(vms) != before+len(out)-1 {
			t.Errorf("%d VMs, want %d + %d (all but the failed node)", count(vms), before, len(out)-1)
		}
		for name, v := range vms {
			if len(v) > 1 {
				t.Errorf("%s exists %d times", name, len(v))
			}
		}
		if len(vms["ksmg-013"]) != 0 {
			t.Errorf("the failed node left a VM behind: %+v", vms["ksmg-013"])
		}
	}, simulator.VPX())
}

// TestSimInterrupted: a run cancelled midway leaves the fleet part-made;
// running it again finishes it with every name exactly once.
func TestSimInterrupted(t *testing.T) {
	t.Parallel()
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		vspheretest.SafeFindChild(ctx, c)
		inv := simInventory(t, c, 19)
		f := open(ctx, t, inv)
		defer f.Close()
		rctx, cancel := context.WithCancel(ctx)
		var once sync.Once
		opt := simOpts
		opt.Concurrency = 2
		// cancel as soon as a few nodes are done, mid-flight for others
		done := 0
		var mu sync.Mutex
		opt.Logger = loggerFunc(func() {
			mu.Lock()
			defer mu.Unlock()
			if done++; done == 5 {
				once.Do(cancel)
			}
		})
		out := f.Run(rctx, opt)
		cancel()
		ok := len(out) - fleet.Failed(out)
		if ok < 5 || ok == len(out) {
			t.Fatalf("interrupted run: %d of %d ok; the cancel did not land mid-run", ok, len(out))
		}
		out = f.Run(ctx, simOpts)
		if fleet.Failed(out) != 0 {
			t.Fatalf("second run: %+v", out)
		}
		checkFleet(t, simVMs(ctx, t, c), inv)
	}, simulator.VPX())
}

// loggerFunc is a logger that calls f for every "node deployed" record: a
// hook to act at a point of the run.
func loggerFunc(f func()) *slog.Logger { return slog.New(hookHandler{f}) }

type hookHandler struct{ f func() }

func (h hookHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h hookHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "node deployed" {
		h.f()
	}
	return nil
}
func (h hookHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h hookHandler) WithGroup(string) slog.Handler      { return h }

// TestSimDriftOrphanPrune: in the vCenter model, a node whose inventory
// entry changed shows drift with the fields (and is changed in place with
// ApplyDrift, read back on the VM); a node that left the inventory is an
// orphan, removed only with Prune.
func TestSimDriftOrphanPrune(t *testing.T) {
	t.Parallel()
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		vspheretest.SafeFindChild(ctx, c)
		inv := simInventory(t, c, 2)
		f := open(ctx, t, inv)
		defer f.Close()
		if out := f.Run(ctx, simOpts); fleet.Failed(out) != 0 {
			t.Fatalf("%+v", out)
		}
		inv.Nodes[1].CPUs, inv.Nodes[1].MemoryMiB = 4, 4096 // ksmg-001
		gone := inv.Nodes[2].Name
		inv.Nodes = inv.Nodes[:2]
		byNode := map[string]fleet.PlanRow{}
		for _, r := range f.Plan(ctx, simOpts) {
			if r.Err != nil {
				t.Fatalf("plan %s: %v", r.Node, r.Err)
			}
			byNode[r.Node] = r
		}
		if r := byNode["ksmg-001"]; r.Action != deploy.ActionDrift || strings.Join(r.Drift, "; ") != "cpus 2 → 4; memory 2048 → 4096" {
			t.Errorf("changed node: %+v", r)
		}
		if r := byNode["ksmg-control"]; r.Action != deploy.ActionUnchanged {
			t.Errorf("control: %+v", r)
		}
		if r := byNode[gone]; r.Action != deploy.ActionOrphan {
			t.Errorf("node that left the inventory: %+v", r)
		}

		opt := simOpts
		opt.ApplyDrift, opt.Prune = true, true
		out := f.Run(ctx, opt)
		if fleet.Failed(out) != 0 {
			t.Fatalf("%+v", out)
		}
		vms := vspheretest.VMsByName(ctx, t, c, "ksmg-001")
		if len(vms) != 1 || vms[0].Config.Hardware.NumCPU != 4 || vms[0].Config.Hardware.MemoryMB != 4096 {
			t.Errorf("ksmg-001 after apply: %+v", vms)
		}
		if len(vspheretest.VMsByName(ctx, t, c, gone)) != 0 {
			t.Errorf("%s not pruned", gone)
		}
		for _, r := range f.Plan(ctx, simOpts) {
			if r.Action != deploy.ActionUnchanged {
				t.Errorf("plan after apply and prune: %s %s %v", r.Node, r.Action, r.Err)
			}
		}
	}, simulator.VPX())
}
