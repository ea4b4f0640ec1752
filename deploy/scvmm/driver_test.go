package scvmm

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/pwsh"
	"github.com/ksmg-appliance/ksmg/internal/testsync"
	"github.com/ksmg-appliance/ksmg/ova/ovatest"
	"github.com/ksmg-appliance/ksmg/vhdx"
)

// testVHDX writes a small real VHDX (vhdx.Write of a sparse raw disk).
func testVHDX(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	ovatest.SparseRaw(t, raw, 64<<20)
	out := filepath.Join(dir, "ksmg.vhdx")
	if err := vhdx.Write(context.Background(), raw, out, vhdx.Options{Identity: "ksmg-test"}); err != nil {
		t.Fatal(err)
	}
	return out
}

func testConfig() Config {
	return Config{
		Server: "vmm.example.com", User: `EXAMPLE\deployer`, LibraryShare: testShare,
		HostGroup: `All Hosts\Prague`, Network: "Mail DMZ", VLAN: 120, PollInterval: time.Millisecond,
	}
}

const secretPassword = "S3cret'pass`$word"

// state is the deploy mark's value in a Description.
func state(desc string) string { return deploy.ParseRecordText(desc).State }

func testNode(img, name string) deploy.Node {
	return deploy.Node{
		Name: name, Role: deploy.RoleControl, Image: img, CPUs: 4, MemoryMiB: 8192, DiskGiB: 40,
		Properties: map[string]string{
			"ksmg.hostname":       name + ".example.com",
			"ksmg.eula.accepted":  "true",
			"ksmg.admin.password": secretPassword,
		},
		PowerOn: true, WaitIP: time.Minute,
	}
}

type rig struct {
	f    *fakeVMM
	cp   *fakeCopier
	d    *Deployer
	logs *testsync.Buffer
}

func newRig(t *testing.T, r func(f *fakeVMM) pwsh.Runner) *rig {
	f := newFakeVMM(t)
	cp := &fakeCopier{f: f}
	logs := &testsync.Buffer{}
	var run pwsh.Runner = runner{f}
	if r != nil {
		run = r(f)
	}
	d, err := New(testConfig(), Options{
		Runner: run, Copier: cp, HostUser: `EXAMPLE\hvadmin`, HostPassword: hostPassword,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{f: f, cp: cp, d: d, logs: logs}
}

// The full sequence of a first deploy into an empty SCVMM (the second
// plan looks for the VM in service an interrupted replace left aside).
var firstDeploy = []string{
	stepPlan, stepPlan, stepDisk, stepRefresh, stepJob, stepJob, stepDisk, stepTemplate,
	stepCreate, stepJob, stepJob, stepJob, stepPlan, stepConfigure, stepKVP,
	stepStart, stepJob, stepJob, stepIP, stepIP, stepFirstboot, stepFirstboot, stepKVPRemove, stepMark,
}

//nolint:gocyclo // one scenario checked step after step
func TestDeployRerunAndSecondNode(t *testing.T) {
	t.Parallel()
	rg := newRig(t, nil)
	img := testVHDX(t)
	rg.f.ipAfter = 1
	rg.f.doneAfter = 1
	ctx := context.Background()
	n := testNode(img, "ksmg-1")

	p, err := rg.d.Plan(ctx, n)
	if err != nil || p.Action != deploy.ActionCreate {
		t.Fatalf("plan: %+v, %v", p, err)
	}
	rg.f.resetSteps()

	res, err := rg.d.Deploy(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if got := rg.f.Steps(); !slices.Equal(got, firstDeploy) {
		t.Errorf("steps:\n got  %v\n want %v", got, firstDeploy)
	}
	if res.Action != deploy.ActionCreate || res.IP != "192.0.2.10" || res.ID == "" {
		t.Errorf("result %+v", res)
	}
	vm := rg.f.vms[res.ID]
	if vm == nil {
		t.Fatalf("no VM %s in the fake", res.ID)
	}
	want := fakeVM{ID: res.ID, Name: "ksmg-1", Desc: "ksmg.deploy=complete", State: "Running", Host: "hv1.example.com",
		CPUs: 4, MemoryMiB: 8192, DiskGB: 40, Network: "Mail DMZ", VLAN: 120, IPs: []string{"192.0.2.10"}}
	got := *vm
	got.KVP = nil
	rec := deploy.ParseRecordText(got.Desc)
	if rec.CPUs != 4 || rec.MemoryMiB != 8192 || rec.DiskGiB != 40 || rec.Network != "Mail DMZ:120" || !strings.HasPrefix(rec.Image, "sha256:") {
		t.Errorf("record in the Description: %+v", rec)
	}
	got.Desc = deploy.Record{State: rec.State}.Text(" ")
	if !equalVM(got, want) {
		t.Errorf("VM\n got  %+v\n want %+v", got, want)
	}
	// The non-secret answers stay; the password left the VM's settings
	// once first boot signalled it is done with it.
	for k, v := range n.Properties {
		if k != "ksmg.admin.password" && vm.KVP[k] != v {
			t.Errorf("KVP %s = %q, want %q", k, vm.KVP[k], v)
		}
	}
	if _, left := vm.KVP["ksmg.admin.password"]; left || len(vm.KVP) != len(n.Properties)-1 {
		t.Errorf("KVP items after the deploy %v", vm.KVP)
	}
	if !slices.Equal(rg.f.removed, []string{"ksmg.admin.password"}) {
		t.Errorf("removed KVP items %v", rg.f.removed)
	}
	copies := rg.cp.Copies()
	if len(copies) != 1 || !strings.HasPrefix(copies[0], testShare+`\ksmg-`) || !strings.HasSuffix(copies[0], ".vhdx") {
		t.Errorf("copies %v", copies)
	}
	if strings.Contains(rg.logs.String(), "S3cret") || strings.Contains(rg.logs.String(), hostPassword) {
		t.Errorf("a password reached the log:\n%s", rg.logs.String())
	}

	// A re-run changes nothing: one look-up, no script that writes.
	rg.f.resetSteps()
	res2, err := rg.d.Deploy(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Action != deploy.ActionUnchanged || res2.ID != res.ID || res2.IP != "192.0.2.10" {
		t.Errorf("re-run result %+v", res2)
	}
	if got := rg.f.Steps(); !slices.Equal(got, []string{stepPlan}) {
		t.Errorf("re-run steps %v", got)
	}

	// A second node of the same image uses the disk and template in place.
	rg.f.resetSteps()
	n2 := testNode(img, "ksmg-2")
	n2.Properties = nil
	n2.WaitIP = 0
	n2.DiskGiB = 0
	if _, err := rg.d.Deploy(ctx, n2); err != nil {
		t.Fatal(err)
	}
	want2 := []string{stepPlan, stepPlan, stepCreate, stepJob, stepJob, stepJob, stepPlan, stepConfigure, stepStart, stepJob, stepJob, stepMark}
	if got := rg.f.Steps(); !slices.Equal(got, want2) {
		t.Errorf("second node steps:\n got  %v\n want %v", got, want2)
	}
	if len(rg.cp.Copies()) != 1 {
		t.Errorf("the VHDX was copied again: %v", rg.cp.Copies())
	}

	// A new Deployer (a new run) finds disk and template in the library.
	rg.d, _ = New(testConfig(), Options{Runner: runner{rg.f}, Copier: rg.cp, HostUser: "EXAMPLE\\hvadmin", HostPassword: hostPassword})
	rg.f.resetSteps()
	if _, err := rg.d.Deploy(ctx, testNode(img, "ksmg-3")); err != nil {
		t.Fatal(err)
	}
	if got := rg.f.Steps()[:4]; !slices.Equal(got, []string{stepPlan, stepPlan, stepDisk, stepTemplate}) {
		t.Errorf("new run steps start %v", got)
	}
	if len(rg.cp.Copies()) != 1 || len(rg.f.templates) != 1 {
		t.Errorf("copies %v templates %v", rg.cp.Copies(), rg.f.templates)
	}
}

func equalVM(a, b fakeVM) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Desc == b.Desc && a.State == b.State && a.Host == b.Host &&
		a.CPUs == b.CPUs && a.MemoryMiB == b.MemoryMiB && a.DiskGB == b.DiskGB && a.Network == b.Network &&
		a.VLAN == b.VLAN && slices.Equal(a.IPs, b.IPs)
}

func TestFailedJobThenRerun(t *testing.T) {
	t.Parallel()
	rg := newRig(t, nil)
	img := testVHDX(t)
	ctx := context.Background()
	n := testNode(img, "ksmg-1")
	rg.f.failJob[stepCreate] = &jobFailure{
		Step:    "Deploy file (using Fast File Copy)",
		Problem: "Not enough disk space is available on hv1.example.com.",
		Action:  "Free disk space or choose another host.",
	}
	res, err := rg.d.Deploy(ctx, n)
	var je *JobError
	if !errors.As(err, &je) {
		t.Fatalf("err = %v, want a JobError", err)
	}
	for _, s := range []string{"create VM ksmg-1", `"Create virtual machine"`, "failed at step \"Deploy file (using Fast File Copy)\"", "Not enough disk space", "(2912)", "Free disk space"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
	if deploy.IsPermanent(err) || res.Err == nil {
		t.Errorf("a failed job is worth a retry: permanent=%v res.Err=%v", deploy.IsPermanent(err), res.Err)
	}
	left := rg.f.byName("ksmg-1")
	if len(left) != 1 || state(left[0].Desc) != "pending" {
		t.Fatalf("leftover %+v, want one VM marked pending", left)
	}
	// The plan sees the leftover; the re-run replaces it.
	p, err := rg.d.Plan(ctx, n)
	if err != nil || p.Action != deploy.ActionReplace || p.ID != left[0].ID {
		t.Fatalf("plan after failure: %+v %v", p, err)
	}
	rg.f.resetSteps()
	res, err = rg.d.Deploy(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	steps := rg.f.Steps()
	if res.Action != deploy.ActionReplace || !slices.Equal(steps[:5], []string{stepPlan, stepStop, stepRemove, stepJob, stepJob}) {
		t.Errorf("re-run %+v steps %v", res, steps)
	}
	vms := rg.f.byName("ksmg-1")
	if len(vms) != 1 || state(vms[0].Desc) != "complete" || vms[0].ID == left[0].ID {
		t.Errorf("after re-run: %+v", vms)
	}
	if len(rg.cp.Copies()) != 1 {
		t.Errorf("copies %v", rg.cp.Copies())
	}
}

func TestInterruptedThenRerun(t *testing.T) {
	t.Parallel()
	rg := newRig(t, nil)
	img := testVHDX(t)
	n := testNode(img, "ksmg-1")
	// Cancel once the VM exists, before start: the run stops with an
	// unmarked VM.
	ctx, cancel := context.WithCancel(context.Background())
	rg.d.opt.Runner = cancelAt{runner{rg.f}, stepKVP, cancel}
	if _, err := rg.d.Deploy(ctx, n); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want canceled", err)
	}
	if vms := rg.f.byName("ksmg-1"); len(vms) != 1 || state(vms[0].Desc) != "pending" {
		t.Fatalf("after interruption: %+v, want one VM marked pending", vms)
	}
	rg.d.opt.Runner = runner{rg.f}
	res, err := rg.d.Deploy(context.Background(), n)
	if err != nil || res.Action != deploy.ActionReplace {
		t.Fatalf("re-run: %+v %v", res, err)
	}
	if vms := rg.f.byName("ksmg-1"); len(vms) != 1 || state(vms[0].Desc) != "complete" {
		t.Errorf("after re-run: %+v", vms)
	}
}

// cancelAt cancels the context when a script of step arrives, before it
// runs.
type cancelAt struct {
	r      pwsh.Runner
	step   string
	cancel func()
}

func (c cancelAt) Run(ctx context.Context, s string, in pwsh.Input) (pwsh.Output, error) {
	if strings.Contains(s, "# ksmg-scvmm step="+c.step+"\n") {
		c.cancel()
	}
	return c.r.Run(ctx, s, in)
}

func TestReplaceFinished(t *testing.T) {
	t.Parallel()
	rg := newRig(t, nil)
	img := testVHDX(t)
	ctx := context.Background()
	n := testNode(img, "ksmg-1")
	first, err := rg.d.Deploy(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	n.Replace = true
	p, err := rg.d.Plan(ctx, n)
	if err != nil || p.Action != deploy.ActionReplace || !strings.Contains(p.Reason, "deployed by ksmg; replace requested") {
		t.Fatalf("plan %+v %v", p, err)
	}
	res, err := rg.d.Deploy(ctx, n)
	if err != nil || res.Action != deploy.ActionReplace || res.ID == first.ID {
		t.Fatalf("replace: %+v %v", res, err)
	}
	if vms := rg.f.byName("ksmg-1"); len(vms) != 1 {
		t.Errorf("VMs %+v", vms)
	}
}

// TestExistingVMs plans and deploys over a VM of the node's name in each
// state the contract knows: only ksmg's own leftovers are replaced without
// Replace; a VM without the mark is someone else's and is never removed.
//
//nolint:gocyclo // a table of VM states, each checked through plan and deploy
func TestExistingVMs(t *testing.T) {
	t.Parallel()
	img := testVHDX(t)
	for _, tc := range []struct {
		name, desc string
		replace    bool
		action     deploy.Action
		reason     string // in the plan's reason, or in the error
	}{
		{"foreign", "Production mail relay, do not touch", false, "", "VM ksmg-1 exists (vm-0001 on hv9.example.com) and was not deployed by ksmg (no ksmg.deploy in its Description); it is left alone"},
		{"foreign empty", "", false, "", "was not deployed by ksmg"},
		{"foreign replace", "Production mail relay", true, deploy.ActionReplace, "not deployed by ksmg; replace of a foreign VM requested"},
		{"pending", "ksmg.deploy=pending", false, deploy.ActionReplace, `with ksmg.deploy="pending", not "complete": leftover of an unfinished deploy`},
		{"pending in a note", "moved by ops ksmg.deploy=pending", false, deploy.ActionReplace, "leftover of an unfinished deploy"},
		{"complete", "ksmg.deploy=complete", false, deploy.ActionUnchanged, "deployed by ksmg"},
		{"complete replace", "ksmg.deploy=complete", true, deploy.ActionReplace, "deployed by ksmg; replace requested"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rg := newRig(t, nil)
			old := &fakeVM{ID: rg.f.id("vm"), Name: "ksmg-1", Desc: tc.desc, State: "Running", Host: "hv9.example.com", IPs: []string{"192.0.2.99"}}
			rg.f.vms[old.ID] = old
			n := testNode(img, "ksmg-1")
			n.Replace = tc.replace
			n.ReplaceForeign = tc.replace && !strings.Contains(tc.desc, "ksmg.deploy=")
			ctx := context.Background()

			p, err := rg.d.Plan(ctx, n)
			if tc.action == "" {
				if err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), tc.reason) {
					t.Fatalf("plan: %+v, err %v; want a permanent error with %q", p, err, tc.reason)
				}
			} else if err != nil || p.Action != tc.action || p.ID != old.ID || !strings.Contains(p.Reason, tc.reason) {
				t.Fatalf("plan: %+v, err %v; want %s with %q", p, err, tc.action, tc.reason)
			}

			rg.f.resetSteps()
			res, err := rg.d.Deploy(ctx, n)
			steps := rg.f.Steps()
			vms := rg.f.byName("ksmg-1")
			switch tc.action {
			case "":
				if err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), tc.reason) {
					t.Fatalf("deploy: %+v, err %v; want a permanent error with %q", res, err, tc.reason)
				}
				if slices.Contains(steps, stepRemove) || !slices.Equal(steps, []string{stepPlan}) {
					t.Errorf("deploy over a foreign VM ran %v; only the look-up may run", steps)
				}
				if len(vms) != 1 || vms[0] != old || old.Desc != tc.desc {
					t.Errorf("the foreign VM was touched: %+v", vms)
				}
			case deploy.ActionUnchanged:
				if err != nil || res.Action != tc.action || res.ID != old.ID || !slices.Equal(steps, []string{stepPlan}) {
					t.Errorf("deploy: %+v %v, steps %v", res, err, steps)
				}
			case deploy.ActionReplace:
				if err != nil || res.Action != tc.action {
					t.Fatalf("deploy: %+v %v", res, err)
				}
				iStop, iRemove, iCreate := slices.Index(steps, stepStop), slices.Index(steps, stepRemove), slices.Index(steps, stepCreate)
				if strings.Contains(tc.desc, "pending") {
					// A leftover that never served: removed once the
					// image is ready, before the new VM is made.
					if iStop != 1+slices.Index(steps, stepTemplate) || iRemove > iCreate {
						t.Errorf("replace steps %v: want the removal after the image is ready and before the create", steps)
					}
				} else if iRename := slices.Index(steps, stepRename); iCreate > iRename || iRename > iStop || iStop > iRemove {
					// A VM in service: the new one made and swapped in
					// first, the old one removed last.
					t.Errorf("replace steps %v: want create, rename, stop, remove", steps)
				}
				if len(vms) != 1 || vms[0].ID == old.ID || state(vms[0].Desc) != "complete" || rg.f.vms[old.ID] != nil {
					t.Errorf("after replace: %+v", vms)
				}
			}
		})
	}
}

// TestSecretKVPWithoutWaitIP: without waiting for the address nothing says
// the guest read its answers, so the secret items stay and no removal runs.
func TestSecretKVPWithoutWaitIP(t *testing.T) {
	t.Parallel()
	rg := newRig(t, nil)
	n := testNode(testVHDX(t), "ksmg-1")
	n.WaitIP = 0
	res, err := rg.d.Deploy(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(rg.f.Steps(), stepKVPRemove) || len(rg.f.removed) != 0 {
		t.Errorf("secret KVP items removed without waiting for the guest: steps %v", rg.f.Steps())
	}
	if vm := rg.f.vms[res.ID]; vm.KVP["ksmg.admin.password"] != secretPassword || state(vm.Desc) != "complete" {
		t.Errorf("VM %+v", vm)
	}
}

// TestSecretKVPRemovalFails: a failed removal fails the deploy before the
// completion mark, so the VM stays pending and the next run replaces it.
func TestSecretKVPRemovalFails(t *testing.T) {
	t.Parallel()
	rg := newRig(t, nil)
	n := testNode(testVHDX(t), "ksmg-1")
	rg.d.opt.Runner = failStep{runner{rg.f}, stepKVPRemove}
	_, err := rg.d.Deploy(context.Background(), n)
	var sf *ScriptFailure
	if !errors.As(err, &sf) || sf.Step != "remove secret KVP items of ksmg-1" || deploy.IsPermanent(err) {
		t.Fatalf("err = %v, want a retryable failure of the removal", err)
	}
	if vms := rg.f.byName("ksmg-1"); len(vms) != 1 || state(vms[0].Desc) != "pending" {
		t.Fatalf("after the failed removal: %+v, want one VM marked pending", vms)
	}
	rg.d.opt.Runner = runner{rg.f}
	res, err := rg.d.Deploy(context.Background(), n)
	if err != nil || res.Action != deploy.ActionReplace {
		t.Fatalf("re-run: %+v %v", res, err)
	}
	if vm := rg.f.vms[res.ID]; state(vm.Desc) != "complete" || len(rg.f.byName("ksmg-1")) != 1 {
		t.Errorf("after re-run: %+v", vm)
	}
}

// TestFirstbootNeverSignals: the guest gets an address but first boot
// never reports completion: the deploy fails retryably within WaitIP, no
// secret item is removed, the VM stays pending and a re-run replaces it.
func TestFirstbootNeverSignals(t *testing.T) {
	t.Parallel()
	rg := newRig(t, nil)
	rg.f.neverDone = true
	n := testNode(testVHDX(t), "ksmg-1")
	n.WaitIP = 50 * time.Millisecond
	res, err := rg.d.Deploy(context.Background(), n)
	if err == nil || !strings.Contains(err.Error(), "first boot did not report completion (ksmg.firstboot=done) within 50ms") || deploy.IsPermanent(err) {
		t.Fatalf("err = %v, want a retryable first-boot timeout", err)
	}
	steps := rg.f.Steps()
	if !slices.Contains(steps, stepFirstboot) || slices.Contains(steps, stepKVPRemove) || slices.Contains(steps, stepMark) || len(rg.f.removed) != 0 {
		t.Errorf("steps %v, removed %v: want polls for the signal and neither removal nor mark", steps, rg.f.removed)
	}
	if i, j := slices.Index(steps, stepIP), slices.Index(steps, stepFirstboot); i < 0 || j < i {
		t.Errorf("steps %v: want the signal polled after the address", steps)
	}
	vm := rg.f.vms[res.ID]
	if vm == nil || state(vm.Desc) != "pending" || vm.KVP["ksmg.admin.password"] != secretPassword {
		t.Fatalf("after the timeout: %+v, want the VM pending with its items", vm)
	}
	rg.f.neverDone = false
	n.WaitIP = time.Minute
	res, err = rg.d.Deploy(context.Background(), n)
	if err != nil || res.Action != deploy.ActionReplace {
		t.Fatalf("re-run: %+v %v", res, err)
	}
	if vm := rg.f.vms[res.ID]; state(vm.Desc) != "complete" || !slices.Equal(rg.f.removed, []string{"ksmg.admin.password"}) {
		t.Errorf("after re-run: %+v, removed %v", vm, rg.f.removed)
	}
}

// failStep answers a script of step with the failure a real script prints
// when Invoke-Command throws (the host refused it).
type failStep struct {
	r    pwsh.Runner
	step string
}

func (c failStep) Run(ctx context.Context, s string, in pwsh.Input) (pwsh.Output, error) {
	if strings.Contains(s, "# ksmg-scvmm step="+c.step+"\n") {
		out, code := fail("Invoke-Command: Connecting to remote server hv1.example.com failed: Access is denied.", "error")
		return pwsh.Output{Stdout: out, ExitCode: code}, nil
	}
	return c.r.Run(ctx, s, in)
}

func TestPermanentErrors(t *testing.T) {
	t.Parallel()
	img := testVHDX(t)
	notVHDX := filepath.Join(t.TempDir(), "disk.vhdx")
	if err := os.WriteFile(notVHDX, []byte("not a disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		setup  func(rg *rig, n *deploy.Node)
		want   string
		steps  int // scripts run before the error
		onPlan bool
	}{
		{"unknown host group", func(rg *rig, n *deploy.Node) { rg.d.cfg.HostGroup = "Nowhere" }, "0 host groups named Nowhere", -1, false},
		{"KVP value too long", func(rg *rig, n *deploy.Node) { n.Properties["ksmg.hostname"] = strings.Repeat("a", 2048) }, "property ksmg.hostname: a KVP item", 0, true},
		{"not a VHDX", func(rg *rig, n *deploy.Node) { n.Image = notVHDX }, "not a VHDX", 0, true},
		{"disk smaller than the image", func(rg *rig, n *deploy.Node) { n.DiskGiB = 4 }, "the image's disk is 8 GiB and cannot shrink", -1, false},
		{"bad name", func(rg *rig, n *deploy.Node) { n.Name = "a'b" }, "must not contain", 0, true},
		{"duplicate names", func(rg *rig, n *deploy.Node) {
			for range 2 {
				id := rg.f.id("vm")
				rg.f.vms[id] = &fakeVM{ID: id, Name: n.Name}
			}
		}, "2 VMs are named ksmg-1", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rg := newRig(t, nil)
			n := testNode(img, "ksmg-1")
			tc.setup(rg, &n)
			var err error
			if tc.onPlan {
				_, err = rg.d.Plan(context.Background(), n)
			} else {
				_, err = rg.d.Deploy(context.Background(), n)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !deploy.IsPermanent(err) {
				t.Fatalf("err = %v (permanent %v), want a permanent error with %q", err, deploy.IsPermanent(err), tc.want)
			}
			if tc.steps >= 0 && len(rg.f.Steps()) != tc.steps {
				t.Errorf("%d scripts ran before the error: %v", len(rg.f.Steps()), rg.f.Steps())
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{"ok", func(c *Config) {}, ""},
		{"no server", func(c *Config) { c.Server = "" }, "server:"},
		{"both placements", func(c *Config) { c.Cloud = "Mail" }, "host_group, cloud: give exactly one"},
		{"no placement", func(c *Config) { c.HostGroup = "" }, "host_group, cloud: give exactly one"},
		{"share not UNC", func(c *Config) { c.LibraryShare = `C:\Library` }, "library_share:"},
		{"share without share", func(c *Config) { c.LibraryShare = `\\lib` }, "library_share:"},
		{"http without ntlm", func(c *Config) { c.HTTP = true }, "http: plain HTTP needs ntlm"},
		{"vlan", func(c *Config) { c.VLAN = 5000 }, "vlan 5000"},
		{"two passwords", func(c *Config) { c.PasswordFile = "/x" }, "password_env and password_file"},
		{"prefix", func(c *Config) { c.TemplatePrefix = `a\b` }, "template_prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := testConfig()
			c.PasswordEnv = "X"
			tc.edit(&c)
			c.defaults()
			err := c.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCredentials(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(DefaultPasswordEnv, "from-env")
	t.Setenv("HV_PW", "hv-env")

	c := testConfig()
	c.defaults()
	u, pw, hu, hpw, err := c.credentials()
	if err != nil || u != c.User || pw != "from-env" || hu != c.User || hpw != "from-env" {
		t.Errorf("defaults: %q %q %q %q %v", u, pw, hu, hpw, err)
	}
	c = testConfig()
	c.PasswordFile, c.HostUser, c.HostPasswordEnv = pwFile, `EXAMPLE\hv`, "HV_PW"
	c.defaults()
	_, pw, hu, hpw, err = c.credentials()
	if err != nil || pw != "from-file" || hu != `EXAMPLE\hv` || hpw != "hv-env" {
		t.Errorf("file and host: %q %q %q %v", pw, hu, hpw, err)
	}
	c = testConfig()
	c.PasswordEnv = "KSMG_TEST_UNSET_PASSWORD"
	if _, _, _, _, err := c.credentials(); err == nil || !strings.Contains(err.Error(), "KSMG_TEST_UNSET_PASSWORD") {
		t.Errorf("unset env: %v", err)
	}
	if sc := smbConfig(`EXAMPLE\deployer`, "p"); sc.Domain != "EXAMPLE" || sc.User != "deployer" {
		t.Errorf("smb config %+v", sc)
	}
}

func TestConcurrentNodesShareOneUpload(t *testing.T) {
	t.Parallel()
	rg := newRig(t, nil)
	img := testVHDX(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			n := testNode(img, "ksmg-"+string(rune('a'+i)))
			_, errs[i] = rg.d.Deploy(context.Background(), n)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if len(rg.cp.Copies()) != 1 || len(rg.f.templates) != 1 || len(rg.f.vms) != 8 {
		t.Errorf("copies %d templates %d vms %d", len(rg.cp.Copies()), len(rg.f.templates), len(rg.f.vms))
	}
}

// TestRegisteredOpener opens a target the way the fleet runner does: the
// YAML settings decoded by the registered opener, the password from the
// environment. Open connects to nothing yet.
func TestRegisteredOpener(t *testing.T) {
	open, ok := deploy.Driver(Kind)
	if !ok {
		t.Fatal("scvmm is not registered")
	}
	const target = `
server: vmm.example.com
user: EXAMPLE\deployer
password_env: KSMG_TEST_SCVMM_PW
library_share: \\lib.example.com\MSSCVMMLibrary\ksmg
cloud: Mail
poll_interval: 2s
`
	decode := func(v any) error {
		dec := yaml.NewDecoder(strings.NewReader(target))
		dec.KnownFields(true)
		return dec.Decode(v)
	}
	t.Setenv("KSMG_TEST_SCVMM_PW", "")
	if _, err := open(context.Background(), deploy.TargetSpec{Name: "lab", Decode: decode}); err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), "KSMG_TEST_SCVMM_PW") {
		t.Errorf("without the password: %v", err)
	}
	t.Setenv("KSMG_TEST_SCVMM_PW", "pw")
	d, err := open(context.Background(), deploy.TargetSpec{Name: "lab", Decode: decode})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	sd := d.(*Deployer)
	if d.Target() != "scvmm:lab" || sd.cfg.PollInterval != 2*time.Second || sd.cfg.Cloud != "Mail" || sd.opt.HostUser != `EXAMPLE\deployer` {
		t.Errorf("opened %s with %+v", d.Target(), sd.cfg)
	}
}
