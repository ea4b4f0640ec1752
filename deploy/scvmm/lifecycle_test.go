package scvmm

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/pwsh"
)

// secretsInScripts fails if a script carries the admin password (the
// fake itself fails on the host password in a script; over WinRM see
// winrm_test.go).
func secretsInScripts(t *testing.T, rg *rig, n deploy.Node, scripts []string) {
	t.Helper()
	for _, s := range scripts {
		if strings.Contains(s, secretPassword) {
			t.Errorf("a %s script carries the admin password", stepRe.FindStringSubmatch(s)[1])
		}
	}
}

// scriptLog is the fake's runner that keeps every script it ran.
type scriptLog struct {
	r       runner
	scripts *[]string
}

func (l scriptLog) Run(ctx context.Context, s string, in pwsh.Input) (pwsh.Output, error) {
	l.r.f.mu.Lock()
	*l.scripts = append(*l.scripts, s)
	l.r.f.mu.Unlock()
	return l.r.Run(ctx, s, in)
}

func newRecordingRig(t *testing.T) (*rig, *[]string) {
	var scripts []string
	rg := newRig(t, nil)
	rg.d.opt.Runner = scriptLog{runner{rg.f}, &scripts}
	return rg, &scripts
}

// TestRemove: a guest shutdown first (turned off when it does not finish
// in time), a saved state discarded with -DiscardSavedState, the VM then
// removed; a VM ksmg did not make is refused; an absent one reported.
func TestRemove(t *testing.T) {
	t.Parallel()
	img := testVHDX(t)
	for _, tc := range []struct {
		name         string
		state        string
		ignore       bool
		wantForced   int
		wantTimedOut bool
	}{
		{"running", "Running", false, 0, false},
		{"shutdown ignored", "Running", true, 1, true},
		{"saved", "Saved", false, 0, false},
		{"off", "PowerOff", false, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rg, scripts := newRecordingRig(t)
			n := testNode(img, "ksmg-1")
			n.WaitIP = 0
			if _, err := rg.d.Deploy(context.Background(), n); err != nil {
				t.Fatal(err)
			}
			vm := rg.f.byName("ksmg-1")[0]
			vm.State = tc.state
			rg.f.ignoreShutdown = tc.ignore
			rg.f.resetSteps()
			res, err := rg.d.Remove(context.Background(), deploy.RemoveRequest{Name: "ksmg-1", Plan: true})
			// Look-ups only: the node's VM, then its replaces' leftovers.
			if err != nil || res.Action != deploy.ActionRemove || len(rg.f.byName("ksmg-1")) != 1 || !slices.Equal(rg.f.Steps(), []string{stepPlan, stepPlan, stepPlan}) {
				t.Fatalf("plan: %+v, %v, steps %v", res, err, rg.f.Steps())
			}
			res, err = rg.d.Remove(context.Background(), deploy.RemoveRequest{Name: "ksmg-1", ShutdownTimeout: 50 * time.Millisecond})
			if err != nil || res.Action != deploy.ActionRemove || len(rg.f.byName("ksmg-1")) != 0 {
				t.Fatalf("remove: %+v, %v", res, err)
			}
			if rg.f.forced != tc.wantForced {
				t.Errorf("%d VMs turned off, want %d", rg.f.forced, tc.wantForced)
			}
			steps := rg.f.Steps()
			if iStop, iRemove := slices.Index(steps, stepStop), slices.Index(steps, stepRemove); iStop < 0 || iRemove < iStop {
				t.Errorf("steps %v: want stop before remove", steps)
			}
			last := ""
			for _, s := range *scripts {
				if strings.Contains(s, "step=stop\n") {
					last = s
				}
			}
			if tc.wantTimedOut && (!strings.Contains(last, "$force = $true") || !strings.Contains(last, "Stop-SCJob")) {
				t.Errorf("after the timeout the VM was not turned off with the shutdown job cancelled:\n%s", last)
			}
			if res, err := rg.d.Remove(context.Background(), deploy.RemoveRequest{Name: "ksmg-1"}); err != nil || res.Action != deploy.ActionAbsent {
				t.Errorf("remove again: %+v, %v", res, err)
			}
		})
	}
	rg := newRig(t, nil)
	rg.f.vms["vm-x"] = &fakeVM{ID: "vm-x", Name: "relay", Desc: "Production relay", State: "Running"}
	if _, err := rg.d.Remove(context.Background(), deploy.RemoveRequest{Name: "relay"}); err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), "not deployed by ksmg") {
		t.Errorf("remove a foreign VM: %v", err)
	}
	if rg.f.vms["vm-x"] == nil || slices.Contains(rg.f.Steps(), stepStop) {
		t.Errorf("the foreign VM was touched: steps %v", rg.f.Steps())
	}
}

// TestScrubAndDeployed: without a wait the secrets stay (the result says
// so); Scrub refuses before first boot signalled and removes them after;
// Deployed lists the marked VMs with their records.
func TestScrubAndDeployed(t *testing.T) {
	t.Parallel()
	rg, scripts := newRecordingRig(t)
	n := testNode(testVHDX(t), "ksmg-1")
	n.WaitIP, n.Cluster = 0, "prague"
	res, err := rg.d.Deploy(context.Background(), n)
	if err != nil || !res.SecretsLeft {
		t.Fatalf("%+v, %v", res, err)
	}
	rg.f.vms["vm-x"] = &fakeVM{ID: "vm-x", Name: "relay", Desc: "Production relay"}
	vms, err := rg.d.Deployed(context.Background())
	if err != nil || len(vms) != 1 || vms[0].Name != "ksmg-1" || vms[0].Record.Cluster != "prague" {
		t.Fatalf("deployed: %+v, %v", vms, err)
	}
	rg.f.neverDone = true
	if _, err := rg.d.Scrub(context.Background(), n); err == nil || !deploy.IsPermanent(err) {
		t.Errorf("scrub before the signal: %v", err)
	}
	rg.f.neverDone = false
	if res, err := rg.d.Scrub(context.Background(), n); err != nil || res.Action != deploy.ActionScrub {
		t.Fatalf("scrub: %+v, %v", res, err)
	}
	if _, left := rg.f.byName("ksmg-1")[0].KVP["ksmg.admin.password"]; left {
		t.Error("the password stayed after scrub")
	}
	secretsInScripts(t, rg, n, *scripts)
}

// TestDriftApplyAndSwap: drift shown and applied in place (the VM stopped
// for CPUs and memory, the VM subnet set); a replace swaps a new VM in,
// and a failed replacement leaves the old one in service.
func TestDriftApplyAndSwap(t *testing.T) {
	t.Parallel()
	rg, scripts := newRecordingRig(t)
	img := testVHDX(t)
	n := testNode(img, "ksmg-1")
	ctx := context.Background()
	old, err := rg.d.Deploy(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	changed := n
	changed.CPUs, changed.Network, changed.VLAN = 8, "Mail", 0
	p, err := rg.d.Plan(ctx, changed)
	if err != nil || p.Action != deploy.ActionDrift || strings.Join(p.Drift, "; ") != "cpus 4 → 8; network Mail DMZ:120 → Mail" {
		t.Fatalf("plan: %+v, %v", p, err)
	}
	changed.ApplyDrift = true
	rg.f.resetSteps()
	r, err := rg.d.Deploy(ctx, changed)
	if err != nil || r.Action != deploy.ActionReconfigure || r.ID != old.ID {
		t.Fatalf("apply: %+v, %v", r, err)
	}
	vm := rg.f.vms[old.ID]
	if vm.CPUs != 8 || vm.Network != "Mail" || vm.VLAN != 0 || vm.State != "Running" {
		t.Errorf("VM after apply: %+v", vm)
	}
	if steps := rg.f.Steps(); slices.Index(steps, stepStop) > slices.Index(steps, stepConfigure) || slices.Index(steps, stepStart) < slices.Index(steps, stepConfigure) {
		t.Errorf("apply steps %v: want stop, configure, start", steps)
	}
	if p, err := rg.d.Plan(ctx, changed); err != nil || p.Action != deploy.ActionUnchanged {
		t.Errorf("plan after apply: %+v, %v", p, err)
	}

	changed.ApplyDrift, changed.Replace = false, true
	rg.f.failJob[stepStart] = &jobFailure{Step: "Start virtual machine", Problem: "not enough memory"}
	if _, err := rg.d.Deploy(ctx, changed); err == nil || !strings.Contains(err.Error(), "is untouched") {
		t.Fatalf("failed replace: %v", err)
	}
	if vms := rg.f.byName("ksmg-1"); len(vms) != 1 || vms[0].ID != old.ID || vms[0].State != "Running" {
		t.Fatalf("after a failed replace: %+v", vms)
	}
	res, err := rg.d.Deploy(ctx, changed)
	if err != nil || res.Action != deploy.ActionReplace || res.ID == old.ID {
		t.Fatalf("replace: %+v, %v", res, err)
	}
	if vms := rg.f.byName("ksmg-1"); len(vms) != 1 || vms[0].ID != res.ID || rg.f.vms[old.ID] != nil {
		t.Errorf("after the swap: %+v", vms)
	}
	for _, name := range []string{deploy.TempName("ksmg-1"), deploy.AsideName("ksmg-1")} {
		if len(rg.f.byName(name)) != 0 {
			t.Errorf("%s left after the swap", name)
		}
	}
	secretsInScripts(t, rg, n, *scripts)
}

// TestVMSubnet: the target's VM subnet is set with its network.
func TestVMSubnet(t *testing.T) {
	t.Parallel()
	rg := newRig(t, nil)
	rg.d.cfg.VMSubnet = "DMZ Prague"
	n := testNode(testVHDX(t), "ksmg-1")
	n.WaitIP = 0
	res, err := rg.d.Deploy(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	if vm := rg.f.vms[res.ID]; vm.Network != "Mail DMZ" || vm.Subnet != "DMZ Prague" || deploy.ParseRecordText(vm.Desc).Network != "Mail DMZ/DMZ Prague:120" {
		t.Errorf("VM %+v", vm)
	}
}

// TestInterruptedSwap: a replace stopped between its renames leaves the
// VM in service as <name>.ksmg-old and the replacement as <name>.ksmg-new;
// the next run puts the old VM back and removes the replacement, never
// creating a third VM beside the one in service.
func TestInterruptedSwap(t *testing.T) {
	t.Parallel()
	rg, _ := newRecordingRig(t)
	img := testVHDX(t)
	n := testNode(img, "ksmg-1")
	ctx := context.Background()
	old := interruptedSwap(t, rg, img, "ksmg-1")

	p, err := rg.d.Plan(ctx, n)
	if err != nil || p.Action == deploy.ActionCreate || p.ID != old.ID {
		t.Fatalf("plan after an interrupted swap: %+v, %v; want the VM in service %s", p, err, old.ID)
	}
	res, err := rg.d.Deploy(ctx, n)
	if err != nil || res.ID != old.ID || res.Action != deploy.ActionUnchanged {
		t.Fatalf("run after an interrupted swap: %+v, %v", res, err)
	}
	if vms := rg.f.byName("ksmg-1"); len(vms) != 1 || vms[0].ID != old.ID || vms[0].State != "Running" {
		t.Errorf("after the recovery: %+v", vms)
	}
	for _, name := range []string{deploy.TempName("ksmg-1"), deploy.AsideName("ksmg-1")} {
		if len(rg.f.byName(name)) != 0 {
			t.Errorf("%s left after the recovery", name)
		}
	}
}

// TestReplaceSilentGuest: a replacement whose first boot never reports is
// not left running beside the VM in service (it has its address and host
// name): it is turned off and kept, marked pending, for inspection, and
// the next replace removes it and swaps.
func TestReplaceSilentGuest(t *testing.T) {
	t.Parallel()
	rg, _ := newRecordingRig(t)
	img := testVHDX(t)
	n := testNode(img, "ksmg-1")
	ctx := context.Background()
	old, err := rg.d.Deploy(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	rg.f.mu.Lock()
	rg.f.neverDone = true
	rg.f.mu.Unlock()
	n.Replace, n.WaitIP = true, 50*time.Millisecond
	if _, err := rg.d.Deploy(ctx, n); err == nil || !strings.Contains(err.Error(), "is untouched") {
		t.Fatalf("replace with a silent guest: %v", err)
	}
	if vms := rg.f.byName("ksmg-1"); len(vms) != 1 || vms[0].ID != old.ID || vms[0].State != "Running" {
		t.Errorf("the VM in service after the failed replace: %+v", vms)
	}
	for _, vm := range rg.f.byName(deploy.TempName("ksmg-1")) {
		if vm.State == "Running" || state(vm.Desc) != "pending" {
			t.Errorf("the unproven replacement is left %s, marked %q; want it off and pending, if at all", vm.State, state(vm.Desc))
		}
	}
	rg.f.mu.Lock()
	rg.f.neverDone = false
	rg.f.mu.Unlock()
	n.WaitIP = time.Minute
	res, err := rg.d.Deploy(ctx, n)
	if err != nil || res.Action != deploy.ActionReplace {
		t.Fatalf("replace after the silent guest: %+v, %v", res, err)
	}
	if vms := rg.f.byName("ksmg-1"); len(vms) != 1 || vms[0].ID != res.ID || len(rg.f.byName(deploy.TempName("ksmg-1"))) != 0 {
		t.Errorf("after the replace: %+v", rg.f.vms)
	}
}

// TestRemoveInterruptedSwap: removing a node after a replace stopped
// between its renames removes the VM in service (<name>.ksmg-old) and its
// replacement (<name>.ksmg-new), and the plan says so; it does not say
// "absent" while both run.
func TestRemoveInterruptedSwap(t *testing.T) {
	t.Parallel()
	rg, _ := newRecordingRig(t)
	img := testVHDX(t)
	ctx := context.Background()
	old := interruptedSwap(t, rg, img, "ksmg-1")

	p, err := rg.d.Remove(ctx, deploy.RemoveRequest{Name: "ksmg-1", Plan: true})
	if err != nil || p.Action != deploy.ActionRemove || p.ID != old.ID {
		t.Errorf("remove plan after an interrupted swap: %+v, %v; want remove %s", p, err, old.ID)
	}
	res, err := rg.d.Remove(ctx, deploy.RemoveRequest{Name: "ksmg-1", ShutdownTimeout: time.Second})
	if err != nil || res.Action != deploy.ActionRemove {
		t.Fatalf("remove after an interrupted swap: %+v, %v", res, err)
	}
	for _, name := range []string{"ksmg-1", deploy.TempName("ksmg-1"), deploy.AsideName("ksmg-1")} {
		if len(rg.f.byName(name)) != 0 {
			t.Errorf("%s left after the remove", name)
		}
	}
}

// TestRemoveTakesLeftovers: removing a node removes what its replaces
// left (<name>.ksmg-new, an unproven replacement kept turned off with the
// node's secrets; <name>.ksmg-old, an old VM a swap could not remove),
// ours only: a foreign VM of such a name stays.
func TestRemoveTakesLeftovers(t *testing.T) {
	t.Parallel()
	rg, _ := newRecordingRig(t)
	img := testVHDX(t)
	ctx := context.Background()
	if _, err := rg.d.Deploy(ctx, testNode(img, "ksmg-1")); err != nil {
		t.Fatal(err)
	}
	deployAs(t, rg, img, deploy.TempName("ksmg-1"))
	rg.f.mu.Lock()
	rg.f.vms["vm-foreign"] = &fakeVM{ID: "vm-foreign", Name: deploy.AsideName("ksmg-1"), Desc: "someone's VM", State: "Running"}
	rg.f.mu.Unlock()
	res, err := rg.d.Remove(ctx, deploy.RemoveRequest{Name: "ksmg-1", ShutdownTimeout: time.Second})
	if err != nil || res.Action != deploy.ActionRemove {
		t.Fatalf("remove: %+v, %v", res, err)
	}
	for _, name := range []string{"ksmg-1", deploy.TempName("ksmg-1")} {
		if len(rg.f.byName(name)) != 0 {
			t.Errorf("%s left after the remove", name)
		}
	}
	if len(rg.f.byName(deploy.AsideName("ksmg-1"))) != 1 {
		t.Errorf("the foreign %s was removed", deploy.AsideName("ksmg-1"))
	}
}

// deployAs makes the VM a replace leaves under name (deploy.TempName,
// deploy.AsideName), which no node may have: deployed under a plain name,
// then renamed.
func deployAs(t *testing.T, rg *rig, img, name string) {
	t.Helper()
	res, err := rg.d.Deploy(context.Background(), testNode(img, strings.ReplaceAll(name, ".ksmg-", "-ksmg-")))
	if err != nil {
		t.Fatal(err)
	}
	rg.f.mu.Lock()
	defer rg.f.mu.Unlock()
	rg.f.vms[res.ID].Name = name
}

// TestPlanReplaceNameTaken: the plan of a replace whose <name>.ksmg-new is
// a VM ksmg did not make fails as the run does (permanently), instead of
// promising a replace.
func TestPlanReplaceNameTaken(t *testing.T) {
	t.Parallel()
	rg, _ := newRecordingRig(t)
	img := testVHDX(t)
	ctx := context.Background()
	n := testNode(img, "ksmg-1")
	if _, err := rg.d.Deploy(ctx, n); err != nil {
		t.Fatal(err)
	}
	rg.f.mu.Lock()
	rg.f.vms["vm-foreign"] = &fakeVM{ID: "vm-foreign", Name: deploy.TempName("ksmg-1"), Desc: "someone's VM", State: "PowerOff"}
	rg.f.mu.Unlock()
	n.Replace = true
	if _, err := rg.d.Deploy(ctx, n); err == nil || !deploy.IsPermanent(err) {
		t.Fatalf("replace with a foreign %s: %v; want a permanent error", deploy.TempName("ksmg-1"), err)
	}
	if p, err := rg.d.Plan(ctx, n); err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), deploy.TempName("ksmg-1")) {
		t.Errorf("plan of that replace: %+v, %v; want the run's error", p, err)
	}
}

// interruptedSwap deploys node name and leaves what a replace stopped
// after its first rename leaves: the VM in service (old) as
// deploy.AsideName, a replacement as deploy.TempName.
func interruptedSwap(t *testing.T, rg *rig, img, name string) (old deploy.Result) {
	t.Helper()
	old, err := rg.d.Deploy(context.Background(), testNode(img, name))
	if err != nil {
		t.Fatal(err)
	}
	deployAs(t, rg, img, deploy.TempName(name))
	rg.f.mu.Lock()
	defer rg.f.mu.Unlock()
	rg.f.vms[old.ID].Name = deploy.AsideName(name)
	return old
}
