package hyperv

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/pwsh/pwshtest"
	"github.com/ksmg-appliance/ksmg/firstboot/answers"
)

// assertNoSecretInScripts fails if any script the host ran carries the
// value of one of n's secret answers: script-block logging (event 4104)
// would record it. The values may only come on standard input.
func assertNoSecretInScripts(t *testing.T, h *pwshtest.Host, n deploy.Node) {
	t.Helper()
	for k, v := range n.Properties {
		if !answers.IsSecret(k) || v == "" {
			continue
		}
		for _, s := range h.Scripts() {
			if strings.Contains(s, v) {
				t.Errorf("a %s script carries the value of %s", stepRE.FindStringSubmatch(s)[1], k)
			}
		}
		for _, c := range h.Commands() {
			if strings.Contains(c, v) {
				t.Errorf("a command line carries the value of %s", k)
			}
		}
	}
}

// TestRemove: a guest shutdown first, the VM and its folder then; a VM
// ksmg did not make is refused; an absent one reported; a plan touches
// nothing.
func TestRemove(t *testing.T) {
	t.Parallel()
	d, f, _ := newTest(t)
	img := testImage(t)
	n := testNode(img)
	n.WaitIP = 0
	if _, err := d.Deploy(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	f.Steps()
	ctx := context.Background()
	if res, err := d.Remove(ctx, deploy.RemoveRequest{Name: "ksmg-1", Plan: true}); err != nil || res.Action != deploy.ActionRemove || f.vms["ksmg-1"] == nil {
		t.Fatalf("plan: %+v, %v", res, err)
	}
	// The node's VM, then its replaces' leftovers (AsideName, TempName).
	if got := f.Steps(); !reflect.DeepEqual(got, []string{"find-vm", "find-vm", "find-vm"}) {
		t.Errorf("plan steps %v", got)
	}
	res, err := d.Remove(ctx, deploy.RemoveRequest{Name: "ksmg-1"})
	if err != nil || res.Action != deploy.ActionRemove || len(f.vms) != 0 {
		t.Fatalf("remove: %+v, %v (VMs %v)", res, err, f.vms)
	}
	if got := f.Steps(); !reflect.DeepEqual(got, []string{"find-vm", "find-vm", "find-vm", "stop-vm", "remove-vm"}) {
		t.Errorf("remove steps %v, want a guest shutdown before the removal", got)
	}
	if f.turnedOff != 0 {
		t.Errorf("%d VMs turned off without a guest shutdown", f.turnedOff)
	}
	if res, err := d.Remove(ctx, deploy.RemoveRequest{Name: "ksmg-1"}); err != nil || res.Action != deploy.ActionAbsent {
		t.Errorf("remove again: %+v, %v", res, err)
	}
	f.vms["relay"] = &fakeVM{VM: VM{ID: "11111111-2222-4333-8444-555555555555", Name: "relay", Notes: "production relay", State: "Running"}}
	if _, err := d.Remove(ctx, deploy.RemoveRequest{Name: "relay"}); err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), "not deployed by ksmg") {
		t.Errorf("remove a foreign VM: %v", err)
	}
	if f.vms["relay"] == nil {
		t.Error("the foreign VM was removed")
	}
	vms, err := d.Deployed(ctx)
	if err != nil || len(vms) != 0 {
		t.Errorf("deployed after removal: %v, %v", vms, err)
	}
}

// TestScrub: without a wait the secrets stay; Scrub refuses before first
// boot signalled and removes them after.
func TestScrub(t *testing.T) {
	t.Parallel()
	d, f, h := newTest(t)
	n := testNode(testImage(t))
	n.WaitIP = 0
	res, err := d.Deploy(context.Background(), n)
	if err != nil || !res.SecretsLeft {
		t.Fatalf("%+v, %v", res, err)
	}
	if f.vms["ksmg-1"].kvp["ksmg.admin.password"] != testPassword {
		t.Fatal("the password did not reach the VM")
	}
	f.neverDone = true
	if _, err := d.Scrub(context.Background(), n); err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), "not reported completion") {
		t.Errorf("scrub before the signal: %v", err)
	}
	f.neverDone = false
	if res, err := d.Scrub(context.Background(), n); err != nil || res.Action != deploy.ActionScrub {
		t.Fatalf("scrub: %+v, %v", res, err)
	}
	if _, ok := f.vms["ksmg-1"].kvp["ksmg.admin.password"]; ok || f.vms["ksmg-1"].kvp["ksmg.hostname"] == "" {
		t.Errorf("KVP items after scrub: %v", f.vms["ksmg-1"].kvp)
	}
	assertNoSecretInScripts(t, h, n)
}

// TestDriftAndApply: the notes' record shows drift and an outdated image;
// ApplyDrift shuts the guest down for CPUs and memory, grows the disk,
// moves the network, starts it again and records it.
func TestDriftAndApply(t *testing.T) {
	t.Parallel()
	d, f, _ := newTest(t)
	img := testImage(t)
	n := testNode(img)
	n.WaitIP = 0
	res, err := d.Deploy(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	changed := n
	changed.CPUs, changed.MemoryMiB, changed.DiskGiB, changed.Network, changed.VLAN = 8, 16384, 2, "Mail", 120
	p, err := d.Plan(ctx, changed)
	if err != nil || p.Action != deploy.ActionDrift || strings.Join(p.Drift, "; ") != "cpus 4 → 8; memory 8192 → 16384; disk 1 → 2; network DMZ → Mail:120" {
		t.Fatalf("plan: %+v, %v", p, err)
	}
	other := n
	other.Image = testImageOf(t, "hyperv-test-0.2.0")
	if p, err := d.Plan(ctx, other); err != nil || p.Action != deploy.ActionOutdated {
		t.Errorf("plan with another image: %+v, %v", p, err)
	}
	f.Steps()
	changed.ApplyDrift = true
	r, err := d.Deploy(ctx, changed)
	if err != nil || r.Action != deploy.ActionReconfigure || r.ID != res.ID || len(r.Drift) != 0 {
		t.Fatalf("apply: %+v, %v", r, err)
	}
	if got := f.Steps(); !reflect.DeepEqual(got, []string{"find-vm", "stop-vm", "reconfigure-vm", "start-vm", "set-notes"}) {
		t.Errorf("apply steps %v", got)
	}
	vm := f.vms["ksmg-1"]
	if vm.cpus != 8 || vm.mem != 16384 || vm.diskBytes != 2<<30 || vm.sw != "Mail" || vm.vlan != 120 || vm.State != "Running" {
		t.Errorf("VM after apply: %+v", vm)
	}
	if p, err := d.Plan(ctx, changed); err != nil || p.Action != deploy.ActionUnchanged {
		t.Errorf("plan after apply: %+v, %v", p, err)
	}
}

// TestReplaceSwap: a replace deploys under a temporary name into a fresh
// folder and swaps; a replacement that fails leaves the VM in service
// untouched; a foreign VM needs ReplaceForeign.
func TestReplaceSwap(t *testing.T) {
	t.Parallel()
	d, f, h := newTest(t)
	img := testImage(t)
	n := testNode(img)
	old, err := d.Deploy(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	n.Replace = true
	f.signalled = false
	f.fail["start-vm"] = pwshtest.Reply{Stderr: "Start-VM : not enough memory", ExitCode: 1}
	if _, err := d.Deploy(context.Background(), n); err == nil || !strings.Contains(err.Error(), "is untouched") {
		t.Fatalf("failed replace: %v", err)
	}
	delete(f.fail, "start-vm")
	if vm := f.vms["ksmg-1"]; vm == nil || vm.ID != old.ID || vm.State != "Running" || len(f.vms) != 1 {
		t.Fatalf("after a failed replace: %v", f.vms)
	}
	f.Steps()
	res, err := d.Deploy(context.Background(), n)
	if err != nil || res.Action != deploy.ActionReplace || res.ID == old.ID {
		t.Fatalf("replace: %+v, %v", res, err)
	}
	steps := f.Steps()
	iCreate, iRename, iStop := slices.Index(steps, "create-vm"), slices.Index(steps, "rename-vm"), slices.Index(steps, "stop-vm")
	if iCreate < 0 || iRename < iCreate || iStop < iRename {
		t.Errorf("steps %v: want the new VM made, then renames, then the old one stopped", steps)
	}
	vm := f.vms["ksmg-1"]
	if vm == nil || vm.ID != res.ID || len(f.vms) != 1 || !strings.Contains(vm.disk, `\ksmg-1.ksmg-new-`) {
		t.Errorf("after the swap: %v (disk %q)", f.vms, vm.disk)
	}
	assertNoSecretInScripts(t, h, n)

	f.vms["relay"] = &fakeVM{VM: VM{ID: "11111111-2222-4333-8444-555555555555", Name: "relay", Notes: "prod", State: "Running"}, disk: `E:\prod\relay.vhdx`}
	fn := testNode(img)
	fn.Name, fn.Replace, fn.WaitIP = "relay", true, 0
	if _, err := d.Deploy(context.Background(), fn); err == nil || !deploy.IsPermanent(err) {
		t.Errorf("replace of a foreign VM without ReplaceForeign: %v", err)
	}
	fn.ReplaceForeign = true
	if res, err := d.Deploy(context.Background(), fn); err != nil || f.vms["relay"].ID != res.ID {
		t.Errorf("replace of a foreign VM: %+v, %v", res, err)
	}
}

// TestInterruptedSwap: a replace stopped between its renames leaves the
// VM in service as <name>.ksmg-old and the replacement as <name>.ksmg-new.
// The next run puts the old VM back under its name and removes the
// replacement; it never creates a third VM beside the one in service.
func TestInterruptedSwap(t *testing.T) {
	t.Parallel()
	d, f, _ := newTest(t)
	img := testImage(t)
	n := testNode(img)
	old := interruptedSwap(t, d, f, img, n)

	p, err := d.Plan(context.Background(), n)
	if err != nil || p.Action == deploy.ActionCreate || p.ID != old.ID {
		t.Fatalf("plan after an interrupted swap: %+v, %v; want the VM in service %s", p, err, old.ID)
	}
	res, err := d.Deploy(context.Background(), n)
	if err != nil || res.ID != old.ID || res.Action != deploy.ActionUnchanged {
		t.Fatalf("run after an interrupted swap: %+v, %v", res, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if vm := f.vms[n.Name]; vm == nil || vm.ID != old.ID || vm.State != "Running" || len(f.vms) != 1 {
		t.Errorf("after the recovery: %v", f.vms)
	}
}

// TestReplaceSilentGuest: a replacement whose first boot never reports is
// not left running beside the VM in service (it has its address and host
// name): it is turned off and kept, marked pending, for inspection, and
// the next replace removes it and swaps.
func TestReplaceSilentGuest(t *testing.T) {
	t.Parallel()
	d, f, _ := newTest(t)
	img := testImage(t)
	n := testNode(img)
	old, err := d.Deploy(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.neverDone = true
	f.mu.Unlock()
	n.Replace, n.WaitIP = true, 300*time.Millisecond
	if _, err := d.Deploy(context.Background(), n); err == nil || !strings.Contains(err.Error(), "is untouched") {
		t.Fatalf("replace with a silent guest: %v", err)
	}
	f.mu.Lock()
	if vm := f.vms["ksmg-1"]; vm == nil || vm.ID != old.ID || vm.State != "Running" {
		t.Errorf("the VM in service after the failed replace: %+v", vm)
	}
	if vm := f.vms[deploy.TempName("ksmg-1")]; vm != nil && (vm.State != "Off" || vm.Record().State != deploy.MarkPending) {
		t.Errorf("the unproven replacement is left %s, marked %q; want it off and pending, if at all", vm.State, vm.Record().State)
	}
	f.neverDone = false
	f.mu.Unlock()
	res, err := d.Deploy(context.Background(), n)
	if err != nil || res.Action != deploy.ActionReplace {
		t.Fatalf("replace after the silent guest: %+v, %v", res, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if vm := f.vms["ksmg-1"]; vm == nil || vm.ID != res.ID || len(f.vms) != 1 {
		t.Errorf("after the replace: %v", f.vms)
	}
}

// TestRemoveInterruptedSwap: removing a node after a replace stopped
// between its renames removes the VM in service (<name>.ksmg-old) and its
// replacement (<name>.ksmg-new), and the plan says so; it does not say
// "absent" while both run.
func TestRemoveInterruptedSwap(t *testing.T) {
	t.Parallel()
	d, f, _ := newTest(t)
	img := testImage(t)
	n := testNode(img)
	old := interruptedSwap(t, d, f, img, n)

	p, err := d.Remove(context.Background(), deploy.RemoveRequest{Name: n.Name, Plan: true})
	if err != nil || p.Action != deploy.ActionRemove || p.ID != old.ID {
		t.Errorf("remove plan after an interrupted swap: %+v, %v; want remove %s", p, err, old.ID)
	}
	res, err := d.Remove(context.Background(), deploy.RemoveRequest{Name: n.Name, ShutdownTimeout: time.Second})
	if err != nil || res.Action != deploy.ActionRemove {
		t.Fatalf("remove after an interrupted swap: %+v, %v", res, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.vms) != 0 {
		t.Errorf("VMs left after the remove: %v", f.vms)
	}
}

// TestRemoveTakesLeftovers: removing a node removes what its replaces
// left (<name>.ksmg-new, an unproven replacement kept turned off with the
// node's secrets in its KVP items; <name>.ksmg-old, an old VM a swap could
// not remove), ours only: a foreign VM of such a name stays.
func TestRemoveTakesLeftovers(t *testing.T) {
	t.Parallel()
	d, f, _ := newTest(t)
	img := testImage(t)
	n := testNode(img)
	if _, err := d.Deploy(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	deployAs(t, d, f, img, deploy.TempName(n.Name))
	f.mu.Lock()
	f.vms[deploy.AsideName(n.Name)] = &fakeVM{VM: VM{ID: "11111111-2222-4333-8444-555555555555", Name: deploy.AsideName(n.Name), Notes: "someone's VM", State: "Running"}}
	f.mu.Unlock()
	res, err := d.Remove(context.Background(), deploy.RemoveRequest{Name: n.Name, ShutdownTimeout: time.Second})
	if err != nil || res.Action != deploy.ActionRemove {
		t.Fatalf("remove: %+v, %v", res, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.vms) != 1 || f.vms[deploy.AsideName(n.Name)] == nil {
		t.Errorf("VMs after the remove: %v; want only the foreign %s", f.vms, deploy.AsideName(n.Name))
	}
}

// deployAs makes the VM a replace leaves under name (deploy.TempName,
// deploy.AsideName), which no node may have: deployed under a plain name,
// then renamed.
func deployAs(t *testing.T, d *Deployer, f *fakeHyperV, img, name string) {
	t.Helper()
	n := testNode(img)
	n.Name = strings.ReplaceAll(name, ".ksmg-", "-ksmg-")
	if _, err := d.Deploy(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	vm := f.vms[n.Name]
	delete(f.vms, n.Name)
	vm.Name = name
	f.vms[name] = vm
}

// TestPlanReplaceNameTaken: the plan of a replace whose <name>.ksmg-new is
// a VM ksmg did not make fails as the run does (permanently), instead of
// promising a replace.
func TestPlanReplaceNameTaken(t *testing.T) {
	t.Parallel()
	d, f, _ := newTest(t)
	n := testNode(testImage(t))
	if _, err := d.Deploy(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.vms[deploy.TempName(n.Name)] = &fakeVM{VM: VM{ID: "11111111-2222-4333-8444-555555555555", Name: deploy.TempName(n.Name), Notes: "someone's VM", State: "Off"}}
	f.mu.Unlock()
	n.Replace = true
	if _, err := d.Deploy(context.Background(), n); err == nil || !deploy.IsPermanent(err) {
		t.Fatalf("replace with a foreign %s: %v; want a permanent error", deploy.TempName(n.Name), err)
	}
	if p, err := d.Plan(context.Background(), n); err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), deploy.TempName(n.Name)) {
		t.Errorf("plan of that replace: %+v, %v; want the run's error", p, err)
	}
}

// interruptedSwap deploys n and leaves what a replace stopped after its
// first rename leaves: the VM in service (old) as deploy.AsideName, a
// replacement as deploy.TempName.
func interruptedSwap(t *testing.T, d *Deployer, f *fakeHyperV, img string, n deploy.Node) (old deploy.Result) {
	t.Helper()
	old, err := d.Deploy(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	deployAs(t, d, f, img, deploy.TempName(n.Name))
	f.mu.Lock()
	defer f.mu.Unlock()
	vm := f.vms[n.Name]
	delete(f.vms, n.Name)
	vm.Name = deploy.AsideName(n.Name)
	f.vms[vm.Name] = vm
	return old
}
