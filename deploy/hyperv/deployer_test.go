package hyperv

// No Hyper-V host can run here. These tests drive the real WinRM runner
// (pwsh.NewWinRM) against pwshtest, a fake host on
// github.com/dylanmei/winrmtest; fakeHyperV below plays Hyper-V's part for
// each script (which step it is, what it returns, what it changes) so the
// tests can assert the sequence of steps a deploy sends and how failures
// are handled. Disks are "copied" by dirCopier into a local folder that
// stands for the host's share (the real SMB copier is tested against smbd
// in deploy/pwsh).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/hyperv/kvp/kvptest"
	"github.com/ksmg-appliance/ksmg/deploy/pwsh"
	"github.com/ksmg-appliance/ksmg/deploy/pwsh/pwshtest"
	"github.com/ksmg-appliance/ksmg/vhdx"
)

const (
	testShare = `\\hv1\VMs$\ksmg`
	testPath  = `D:\VMs\ksmg`
)

type fakeHyperV struct {
	mu      sync.Mutex
	share   string // local folder standing for testShare
	vms     map[string]*fakeVM
	next    int
	steps   []string
	fail    map[string]pwshtest.Reply // step -> reply instead of success
	ipAfter int                       // guest-ip answers "" this many times
	ipCalls int
	// doneAfter is how many guest-kvp polls see no first-boot signal;
	// neverDone: the guest never signals.
	doneAfter, doneCalls int
	neverDone            bool
	signalled            bool     // a guest-kvp answer carried the signal
	removed              []string // keys remove-kvp scripts removed
	// ignoreShutdown: a guest shutdown does not stop the VM (only turning
	// it off does).
	ignoreShutdown bool
	turnedOff      int // VMs turned off after a shutdown did not stop them
}

// fakeVM is a VM on the fake host.
type fakeVM struct {
	VM
	disk      string // host path of its disk
	cpus, mem int
	sw        string
	vlan      int
	diskBytes uint64
	kvp       map[string]string // host-to-guest items
}

var (
	stepRE   = regexp.MustCompile(`^# ksmg-deploy: ([a-z-]+)\n`)
	nameRE2  = regexp.MustCompile(`(?m)(?:\$name = |-Name )'((?:[^']|'')*)'`)
	newName  = regexp.MustCompile(`-NewName '((?:[^']|'')*)'`)
	idRE     = regexp.MustCompile(`(?:-Id |\$id = |-f )'([0-9a-f-]{36})'`)
	notesRE  = regexp.MustCompile(`-Notes '((?:[^']|'')*)'`)
	vhdRE    = regexp.MustCompile(`-VHDPath '((?:[^']|'')*)'`)
	switchRE = regexp.MustCompile(`-SwitchName '((?:[^']|'')*)'`)
	cpuRE    = regexp.MustCompile(`-ProcessorCount (\d+)`)
	memRE    = regexp.MustCompile(`-MemoryStartupBytes (\d+)`)
	vlanRE   = regexp.MustCompile(`-VlanId (\d+)`)
	sizeRE   = regexp.MustCompile(`-SizeBytes (\d+)`)
	rootRE   = regexp.MustCompile(`\$root = '((?:[^']|'')*)'`)
	dirsRE   = regexp.MustCompile(`\$dirs = @\('((?:[^']|'')*)'\)`)
	keysRE   = regexp.MustCompile(`(?m)^\$keys = @\((.*)\)$`)
	kvpKeyRE = regexp.MustCompile(`k = '((?:[^']|'')*)'; v = \$KsmgInput\['((?:[^']|'')*)'\]`)
	quotedRE = regexp.MustCompile(`'((?:[^']|'')*)'`)
	unquoteR = strings.NewReplacer("''", "'")
)

func (f *fakeHyperV) byID(id string) *fakeVM {
	for _, vm := range f.vms {
		if vm.ID == id {
			return vm
		}
	}
	return nil
}

// hostToShare maps a host path under testPath to the local share folder.
func (f *fakeHyperV) hostToShare(p string) (string, bool) {
	rel, ok := strings.CutPrefix(p, testPath+`\`)
	if !ok {
		return "", false
	}
	return filepath.Join(f.share, filepath.FromSlash(strings.ReplaceAll(rel, `\`, "/"))), true
}

//nolint:gocyclo // one case per script step the fake host plays
func (f *fakeHyperV) handle(script string, in pwsh.Input) pwshtest.Reply {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := stepRE.FindStringSubmatch(script)
	if m == nil {
		return pwshtest.Reply{Stderr: "fake Hyper-V: script without a step line", ExitCode: 1}
	}
	step := m[1]
	f.steps = append(f.steps, step)
	if r, ok := f.fail[step]; ok {
		return r
	}
	arg := func(re *regexp.Regexp) string {
		if m := re.FindStringSubmatch(script); m != nil {
			return unquoteR.Replace(m[1])
		}
		return ""
	}
	num := func(re *regexp.Regexp) int {
		n, _ := strconv.Atoi(arg(re))
		return n
	}
	vm := f.byID(arg(idRE))
	switch step {
	case "find-vm":
		var found *VM
		if vm := f.vms[arg(nameRE2)]; vm != nil {
			found = &vm.VM
		}
		b, _ := json.Marshal(found)
		return pwshtest.Reply{Stdout: string(b) + "\r\n"}
	case "list-vms":
		var vms []VM
		for _, vm := range f.vms {
			if vm.Record().Marked() {
				vms = append(vms, vm.VM)
			}
		}
		b, _ := json.Marshal(map[string]any{"vms": vms})
		return pwshtest.Reply{Stdout: string(b) + "\r\n"}
	case "create-vm":
		f.next++
		vm := &fakeVM{
			VM:   VM{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", f.next), Name: arg(nameRE2), Notes: arg(notesRE), State: "Off"},
			disk: arg(vhdRE), cpus: num(cpuRE), mem: num(memRE) >> 20, sw: arg(switchRE), vlan: num(vlanRE), kvp: map[string]string{},
		}
		if !strings.Contains(script, "-AutomaticStartAction Start") || !strings.Contains(script, "-AutomaticStopAction ShutDown") {
			return pwshtest.Reply{Stderr: "fake Hyper-V: the VM would not start with its host or would not be shut down with it", ExitCode: 1}
		}
		f.vms[vm.Name] = vm
		return pwshtest.Reply{Stdout: vm.ID + "\r\n"}
	case "start-vm":
		if vm != nil {
			vm.State = "Running"
			return pwshtest.Reply{}
		}
	case "stop-vm":
		if vm != nil {
			if f.ignoreShutdown && vm.State == "Running" {
				f.turnedOff++ // the script turns it off after the timeout
			}
			vm.State = "Off"
			return pwshtest.Reply{}
		}
	case "rename-vm":
		if vm != nil {
			name := arg(newName)
			if _, dup := f.vms[name]; dup {
				return pwshtest.Reply{Stderr: "fake Hyper-V: a VM named " + name + " exists", ExitCode: 1}
			}
			delete(f.vms, vm.Name)
			vm.Name = name
			f.vms[name] = vm
			return pwshtest.Reply{}
		}
	case "reconfigure-vm":
		if vm == nil {
			break
		}
		if (cpuRE.MatchString(script) || memRE.MatchString(script)) && vm.State != "Off" {
			return pwshtest.Reply{Stderr: "Set-VM : Cannot change the processor count or memory while the VM is running.", ExitCode: 1}
		}
		if n := num(cpuRE); n > 0 {
			vm.cpus = n
		}
		if n := num(memRE); n > 0 {
			vm.mem = n >> 20
		}
		if n := num(sizeRE); n > 0 {
			vm.diskBytes = uint64(n)
		}
		if sw := arg(switchRE); sw != "" {
			vm.sw, vm.vlan = sw, num(vlanRE)
		}
		return pwshtest.Reply{}
	case "guest-ip":
		if f.ipCalls++; f.ipCalls > f.ipAfter {
			return pwshtest.Reply{Stdout: "192.0.2.10\r\n"}
		}
		return pwshtest.Reply{}
	case "set-notes":
		if vm != nil {
			vm.Notes = arg(notesRE)
			return pwshtest.Reply{}
		}
	case "remove-vm":
		root := arg(rootRE)
		if root != testPath {
			return pwshtest.Reply{Stderr: "fake Hyper-V: remove-vm with root " + root, ExitCode: 1}
		}
		dirs := []string{arg(dirsRE)}
		if vm != nil {
			if vm.State != "Off" {
				f.turnedOff++
			}
			delete(f.vms, vm.Name)
			dirs = append(dirs, vm.disk[:strings.LastIndex(vm.disk, `\`)])
		}
		for _, dir := range dirs {
			if dir == "" {
				continue
			}
			// As the script: folders outside the path stay.
			if local, ok := f.hostToShare(dir); ok {
				os.RemoveAll(local)
			}
		}
		return pwshtest.Reply{}
	case "guest-kvp":
		if vm == nil {
			break
		}
		f.doneCalls++
		if f.neverDone || f.doneCalls <= f.doneAfter {
			// Another guest item, as a lone string (how Windows
			// PowerShell may write a one-element array).
			b, _ := json.Marshal(map[string]any{"items": kvptest.GuestXML("ksmg.other", "x")})
			return pwshtest.Reply{Stdout: string(b) + "\r\n"}
		}
		f.signalled = true
		b, _ := json.Marshal(map[string]any{"items": []string{kvptest.GuestXML("ksmg.other", "x"), kvptest.GuestXML("ksmg.firstboot", "done")}})
		return pwshtest.Reply{Stdout: string(b) + "\r\n"}
	case "add-kvp":
		if vm == nil {
			break
		}
		for _, m := range kvpKeyRE.FindAllStringSubmatch(script, -1) {
			k := unquoteR.Replace(m[1])
			v, ok := in[k]
			if !ok {
				return pwshtest.Reply{Stderr: "no value for KVP item " + k + " on standard input", ExitCode: 1}
			}
			vm.kvp[k] = v
		}
		return pwshtest.Reply{}
	case "remove-kvp":
		if vm == nil {
			break
		}
		if !f.signalled {
			return pwshtest.Reply{Stderr: "fake Hyper-V: secret KVP items removed before first boot signalled it is done", ExitCode: 1}
		}
		m := keysRE.FindStringSubmatch(script)
		if m == nil {
			return pwshtest.Reply{Stderr: "fake Hyper-V: remove-kvp script without a $keys line", ExitCode: 1}
		}
		for _, k := range quotedRE.FindAllStringSubmatch(m[1], -1) {
			key := unquoteR.Replace(k[1])
			f.removed = append(f.removed, key)
			delete(vm.kvp, key)
		}
		return pwshtest.Reply{}
	case "resize-disk":
		return pwshtest.Reply{}
	}
	return pwshtest.Reply{Stderr: "Get-VM : Hyper-V was unable to find a virtual machine with the given id", ExitCode: 1}
}

func (f *fakeHyperV) Steps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.steps
	f.steps = nil
	return s
}

// dirCopier stands in for SMB: it copies into a local folder for the share.
type dirCopier struct{ root string }

func (c dirCopier) Copy(ctx context.Context, local, remote string, progress func(done, total int64)) error {
	rel, ok := strings.CutPrefix(remote, testShare+`\`)
	if !ok {
		return fmt.Errorf("dirCopier: %s is outside %s", remote, testShare)
	}
	dst := filepath.Join(c.root, filepath.FromSlash(strings.ReplaceAll(rel, `\`, "/")))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(local)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, in)
	if progress != nil {
		progress(n, n)
	}
	if err2 := out.Close(); err == nil {
		err = err2
	}
	return err
}

// testImage is a small valid VHDX (64 MiB virtual).
func testImage(t *testing.T) string {
	t.Helper()
	return testImageOf(t, "hyperv-test")
}

// testImageOf is testImage with another identity (another build).
func testImageOf(t *testing.T, identity string) string {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(raw, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(raw, 64<<20); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "ksmg.vhdx")
	if err := vhdx.Write(context.Background(), raw, out, vhdx.Options{Identity: identity}); err != nil {
		t.Fatal(err)
	}
	return out
}

// testPassword is the nodes' admin password: no script may carry it.
const testPassword = "Pa55-w0rd!-Secret"

func newTest(t *testing.T) (*Deployer, *fakeHyperV, *pwshtest.Host) {
	t.Helper()
	f := &fakeHyperV{share: t.TempDir(), vms: map[string]*fakeVM{}, fail: map[string]pwshtest.Reply{}}
	h := pwshtest.NewHostInput(f.handle)
	t.Cleanup(h.Close)
	run, err := pwsh.NewWinRM(h.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Host: "hv1", User: `LAB\deploy`, Share: testShare, Path: testPath, Switch: "DMZ", PollInterval: 10 * time.Millisecond}
	d := New("lab", NewPSHost("hv1", run, dirCopier{f.share}, testShare, testPath), cfg)
	return d, f, h
}

func testNode(image string) deploy.Node {
	return deploy.Node{
		Name: "ksmg-1", Role: deploy.RoleControl, Image: image, DiskGiB: 1,
		Properties: map[string]string{"ksmg.hostname": "mx1.example.com", "ksmg.admin.password": testPassword},
		PowerOn:    true, WaitIP: 5 * time.Second,
	}
}

//nolint:gocyclo // one deploy checked step after step
func TestDeploySequence(t *testing.T) {
	t.Parallel()
	d, f, h := newTest(t)
	img := testImage(t)
	f.ipAfter = 2
	f.doneAfter = 1

	res, err := d.Deploy(context.Background(), testNode(img))
	if err != nil {
		t.Fatal(err)
	}
	// The address, then first boot's signal, then the secret items go,
	// and the completion mark is last.
	want := []string{"find-vm", "find-vm", "create-vm", "resize-disk", "add-kvp", "start-vm", "guest-ip", "guest-ip", "guest-ip", "guest-kvp", "guest-kvp", "remove-kvp", "set-notes"}
	if got := f.Steps(); !reflect.DeepEqual(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
	if res.Action != deploy.ActionCreate || res.IP != "192.0.2.10" || res.ID == "" || res.Err != nil {
		t.Errorf("result %+v", res)
	}
	vm := f.vms["ksmg-1"]
	if vm == nil || !vm.Record().Complete() || vm.State != "Running" {
		t.Fatalf("VM on the host: %+v", vm)
	}
	if rec := vm.Record(); rec.CPUs != 4 || rec.MemoryMiB != 8192 || rec.DiskGiB != 1 || rec.Network != "DMZ" || !strings.HasPrefix(rec.Image, "sha256:") || !strings.HasPrefix(rec.Answers, "sha256:") {
		t.Errorf("record in the notes: %+v", rec)
	}
	// The KVP values came on standard input; the secret one was removed.
	if vm.kvp["ksmg.hostname"] != "mx1.example.com" {
		t.Errorf("KVP items on the VM: %v", vm.kvp)
	}
	if _, ok := vm.kvp["ksmg.admin.password"]; ok {
		t.Error("the password KVP item stayed on the VM")
	}
	assertNoSecretInScripts(t, h, testNode(img))
	if _, err := os.Stat(filepath.Join(f.share, "ksmg-1", "ksmg-1.vhdx")); err != nil {
		t.Errorf("disk not on the share: %v", err)
	}
	// What the scripts said: the disk's host path, the KVP answers in
	// key order, the 1 GiB resize.
	if !reflect.DeepEqual(f.removed, []string{"ksmg.admin.password"}) {
		t.Errorf("removed KVP items %v, want only the secret one", f.removed)
	}
	var create, kvp, resize string
	for _, s := range h.Scripts() {
		switch stepRE.FindStringSubmatch(s)[1] {
		case "remove-kvp":
			// Key names only: no answer's value travels in the removal.
			for k, v := range testNode(img).Properties {
				if strings.Contains(s, v) {
					t.Errorf("remove-kvp script carries the value of %s:\n%s", k, s)
				}
			}
		case "create-vm":
			create = s
		case "add-kvp":
			kvp = s
		case "resize-disk":
			resize = s
		}
	}
	for _, w := range []string{`-VHDPath 'D:\VMs\ksmg\ksmg-1\ksmg-1.vhdx'`, `-SwitchName 'DMZ'`, "-ProcessorCount 4", "-MemoryStartupBytes 8589934592", "-Generation 2", "MicrosoftUEFICertificateAuthority"} {
		if !strings.Contains(create, w) {
			t.Errorf("create script lacks %q", w)
		}
	}
	if strings.Contains(create, "Set-VMNetworkAdapterVlan") {
		t.Error("VLAN set for an untagged node")
	}
	if i, j := strings.Index(kvp, "k = 'ksmg.admin.password'; v = $KsmgInput['ksmg.admin.password']"), strings.Index(kvp, "k = 'ksmg.hostname'; v = $KsmgInput['ksmg.hostname']"); i < 0 || j < i {
		t.Errorf("KVP script lacks the keys in order, their values from the input:\n%s", kvp)
	}
	if !strings.Contains(resize, "-SizeBytes 1073741824") {
		t.Errorf("resize script: %s", resize)
	}

	// A re-run changes nothing: one look, no other step.
	res, err = d.Deploy(context.Background(), testNode(img))
	if err != nil || res.Action != deploy.ActionUnchanged {
		t.Fatalf("re-run: %+v, %v", res, err)
	}
	if got := f.Steps(); !reflect.DeepEqual(got, []string{"find-vm"}) {
		t.Errorf("re-run steps %v, want [find-vm]", got)
	}
}

func TestDeployReplacesLeftover(t *testing.T) {
	t.Parallel()
	d, f, _ := newTest(t)
	f.vms["ksmg-1"] = &fakeVM{VM: VM{ID: "11111111-2222-4333-8444-555555555555", Name: "ksmg-1", Notes: "ksmg.deploy=pending", State: "Running"}, disk: testPath + `\ksmg-1\ksmg-1.vhdx`}
	n := testNode(testImage(t))
	n.WaitIP = 0
	p, err := d.Plan(context.Background(), n)
	if err != nil || p.Action != deploy.ActionReplace || !strings.Contains(p.Reason, "leftover") {
		t.Fatalf("plan %+v, %v", p, err)
	}
	f.Steps()
	res, err := d.Deploy(context.Background(), n)
	if err != nil || res.Action != deploy.ActionReplace {
		t.Fatalf("deploy %+v, %v", res, err)
	}
	want := []string{"find-vm", "remove-vm", "create-vm", "resize-disk", "add-kvp", "start-vm", "set-notes"}
	if got := f.Steps(); !reflect.DeepEqual(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
	if vm := f.vms["ksmg-1"]; vm == nil || vm.ID == "11111111-2222-4333-8444-555555555555" {
		t.Errorf("leftover not replaced: %+v", vm)
	}
}

func TestDeployLeavesForeignVM(t *testing.T) {
	t.Parallel()
	d, f, _ := newTest(t)
	f.vms["ksmg-1"] = &fakeVM{VM: VM{ID: "11111111-2222-4333-8444-555555555555", Name: "ksmg-1", Notes: "production mail relay", State: "Running"}, disk: `E:\prod\relay.vhdx`}
	_, err := d.Deploy(context.Background(), testNode(testImage(t)))
	if err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), "not deployed by ksmg") {
		t.Fatalf("deploy over a foreign VM: %v", err)
	}
	if got := f.Steps(); !reflect.DeepEqual(got, []string{"find-vm"}) {
		t.Errorf("steps %v, want only find-vm", got)
	}
}

// TestDeployFailures makes one step fail: the error names the step and
// carries the host's words (with secrets redacted); what the deploy
// created is removed unless the guest ran (then it is left for
// inspection, marked pending).
func TestDeployFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		step      string
		stderr    string
		wantSteps []string
		wantErr   string
	}{
		{"create-vm", "New-VM : The virtual switch 'DMZ' was not found.", []string{"find-vm", "find-vm", "create-vm", "remove-vm"},
			"create VM ksmg-1: PowerShell exited 1: New-VM : The virtual switch 'DMZ' was not found."},
		{"add-kvp", "AddKvpItems returned 32775 for value " + testPassword, []string{"find-vm", "find-vm", "create-vm", "resize-disk", "add-kvp", "remove-vm"},
			"AddKvpItems returned 32775 for value <secret>"},
		{"remove-kvp", "RemoveKvpItems returned 32773", []string{"find-vm", "find-vm", "create-vm", "resize-disk", "add-kvp", "start-vm", "guest-ip", "guest-kvp", "remove-kvp"},
			"remove KVP items from VM 00000000-0000-4000-8000-000000000001: PowerShell exited 1: RemoveKvpItems returned 32773"},
		{"start-vm", "Start-VM : The virtual machine could not be started: not enough memory.", []string{"find-vm", "find-vm", "create-vm", "resize-disk", "add-kvp", "start-vm", "remove-vm"},
			"start VM 00000000-0000-4000-8000-000000000001: PowerShell exited 1: Start-VM"},
	}
	for _, tc := range tests {
		t.Run(tc.step, func(t *testing.T) {
			t.Parallel()
			d, f, _ := newTest(t)
			f.fail[tc.step] = pwshtest.Reply{Stderr: tc.stderr, ExitCode: 1}
			res, err := d.Deploy(context.Background(), testNode(testImage(t)))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), ""+testPassword) || !errors.Is(res.Err, err) && res.Err.Error() != err.Error() {
				t.Errorf("secret in error or result: %v / %v", err, res.Err)
			}
			var se *pwsh.ScriptError
			if !errors.As(err, &se) || se.ExitCode != 1 {
				t.Errorf("error does not carry the *pwsh.ScriptError: %v", err)
			}
			if got := f.Steps(); !reflect.DeepEqual(got, tc.wantSteps) {
				t.Errorf("steps %v, want %v", got, tc.wantSteps)
			}
			if tc.step == "remove-kvp" {
				if vm := f.vms["ksmg-1"]; vm == nil || vm.Record().State != deploy.MarkPending || vm.State != "Running" {
					t.Errorf("the started VM is not left running, marked pending: %+v", vm)
				}
				return
			}
			if len(f.vms) != 0 {
				t.Errorf("VMs left on the host: %v", f.vms)
			}
			if _, err := os.Stat(filepath.Join(f.share, "ksmg-1")); !os.IsNotExist(err) {
				t.Errorf("node folder left on the share: %v", err)
			}
		})
	}
}

func TestDeployWaitIPTimeout(t *testing.T) {
	t.Parallel()
	d, f, _ := newTest(t)
	f.ipAfter = 1 << 30
	n := testNode(testImage(t))
	n.WaitIP = 100 * time.Millisecond
	_, err := d.Deploy(context.Background(), n)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "hv_kvp_daemon") {
		t.Fatalf("error %v, want a timeout naming hv_kvp_daemon", err)
	}
	steps := f.Steps()
	if slices.Contains(steps, "remove-vm") || f.vms["ksmg-1"] == nil || f.vms["ksmg-1"].Record().State != deploy.MarkPending {
		t.Errorf("after the timeout the VM should be left, marked pending: steps %v", steps)
	}
	// The re-run decides: the leftover is replaced.
	if p, err := d.Plan(context.Background(), n); err != nil || p.Action != deploy.ActionReplace {
		t.Errorf("plan after the timeout: %+v, %v", p, err)
	}
}

// TestDeployFirstbootTimeout: the guest has an address but first boot
// never signals: the deploy fails retryably within WaitIP, no secret item
// is removed, the VM never gets the completion mark and is left running
// for inspection (its console says why), not destroyed.
func TestDeployFirstbootTimeout(t *testing.T) {
	t.Parallel()
	d, f, _ := newTest(t)
	f.neverDone = true
	n := testNode(testImage(t))
	n.WaitIP = 300 * time.Millisecond
	res, err := d.Deploy(context.Background(), n)
	if err == nil || !strings.Contains(err.Error(), "first boot did not report completion") || !strings.Contains(err.Error(), "console shows why") ||
		!errors.Is(err, context.DeadlineExceeded) || deploy.IsPermanent(err) {
		t.Fatalf("error %v, want a retryable first-boot timeout", err)
	}
	if res.IP != "192.0.2.10" {
		t.Errorf("result %+v: the address was reported", res)
	}
	steps := f.Steps()
	for _, s := range []string{"remove-kvp", "set-notes"} {
		if slices.Contains(steps, s) {
			t.Errorf("step %s ran without first boot's signal: %v", s, steps)
		}
	}
	if !slices.Contains(steps, "guest-kvp") || slices.Contains(steps, "remove-vm") || len(f.vms) != 1 || len(f.removed) != 0 {
		t.Errorf("steps %v, VMs %v, removed %v", steps, f.vms, f.removed)
	}
}

// TestDeployNoWaitKeepsItems: without WaitIP nothing says first boot is
// done: no poll, no removal, the VM is marked complete and the result says
// the secrets remain.
func TestDeployNoWaitKeepsItems(t *testing.T) {
	t.Parallel()
	d, f, _ := newTest(t)
	n := testNode(testImage(t))
	n.WaitIP = 0
	if res, err := d.Deploy(context.Background(), n); err != nil || !res.SecretsLeft {
		t.Fatalf("%+v, %v; want SecretsLeft", res, err)
	}
	want := []string{"find-vm", "find-vm", "create-vm", "resize-disk", "add-kvp", "start-vm", "set-notes"}
	if got := f.Steps(); !reflect.DeepEqual(got, want) || len(f.removed) != 0 {
		t.Errorf("steps %v (removed %v), want %v", got, f.removed, want)
	}
}

func TestDeployBadInput(t *testing.T) {
	t.Parallel()
	d, _, h := newTest(t)
	img := testImage(t)
	notVHDX := filepath.Join(t.TempDir(), "x.vhdx")
	if err := os.WriteFile(notVHDX, []byte("not a disk"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*deploy.Node)
		want string
	}{
		{"not a vhdx", func(n *deploy.Node) { n.Image = notVHDX }, "image: vhdx"},
		{"missing image", func(n *deploy.Node) { n.Image = "/nonexistent.vhdx" }, "no such file"},
		{"dot-dot name", func(n *deploy.Node) { n.Name = ".." }, "letters, digits"},
		{"space in name", func(n *deploy.Node) { n.Name = "a b" }, "letters, digits"},
		{"long KVP value", func(n *deploy.Node) { n.Properties["ksmg.hostname"] = strings.Repeat("x", 2048) }, "KVP keys carry"},
		{"no switch", func(n *deploy.Node) { d.cfg.Switch = "" }, "no vSwitch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() { d.cfg.Switch = "DMZ" }()
			n := testNode(img)
			tc.edit(&n)
			before := len(h.Commands())
			_, err := d.Deploy(context.Background(), n)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !deploy.IsPermanent(err) {
				t.Fatalf("error %v, want a permanent one with %q", err, tc.want)
			}
			if n := len(h.Commands()) - before; n != 0 {
				t.Errorf("%d commands sent to the host for bad input", n)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := Config{Host: "hv1", User: `LAB\u`, Share: testShare, Path: testPath}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"valid", func(*Config) {}, ""},
		{"wmi local", func(c *Config) { *c = Config{Driver: "wmi", Path: testPath} }, ""},
		{"no host", func(c *Config) { c.Host = "" }, "host: must not be empty"},
		{"no user", func(c *Config) { c.User = "" }, "user: must not be empty"},
		{"basic over http", func(c *Config) { c.WinRM.HTTP = true }, "needs winrm.ntlm"},
		{"share not UNC", func(c *Config) { c.Share = `D:\VMs` }, "want a UNC folder"},
		{"path not local", func(c *Config) { c.Path = `\\hv1\VMs` }, "host's local folder"},
		{"driver", func(c *Config) { c.Driver = "ssh" }, `driver "ssh"`},
		{"vlan", func(c *Config) { c.VLAN = 4095 }, "vlan 4095"},
		{"generation 1", func(c *Config) { c.Generation = 1 }, "generation 2"},
		{"wmi remote without share", func(c *Config) { c.Driver = "wmi"; c.Share = "" }, "share: needed"},
		{"two password sources", func(c *Config) { c.PasswordEnv = "A"; c.PasswordFile = "/f" }, "give one"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := ok
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestOpenPassword(t *testing.T) {
	cfg := Config{Host: "hv1", User: `LAB\u`, Share: testShare, Path: testPath}
	t.Setenv(DefaultPasswordEnv, "")
	if _, err := Open(context.Background(), "lab", cfg); err == nil || !strings.Contains(err.Error(), DefaultPasswordEnv) || !deploy.IsPermanent(err) {
		t.Errorf("Open without a password: %v", err)
	}
	t.Setenv(DefaultPasswordEnv, "pw")
	d, err := Open(context.Background(), "lab", cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if d.Target() != "hyperv:lab" {
		t.Errorf("Target %q", d.Target())
	}
	pf := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pf, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.PasswordFile = pf
	if pw, err := cfg.password(func(string) string { return "" }); err != nil || pw != "from-file" {
		t.Errorf("password from file: %q, %v", pw, err)
	}
	if _, ok := deploy.Driver(Kind); !ok {
		t.Error("driver hyperv not registered")
	}
}

// TestDeployConcurrent deploys several nodes to one host at once through
// one Deployer.
func TestDeployConcurrent(t *testing.T) {
	t.Parallel()
	d, f, _ := newTest(t)
	img := testImage(t)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			n := testNode(img)
			n.Name = fmt.Sprintf("ksmg-%d", i)
			n.WaitIP = 0
			if res, err := d.Deploy(context.Background(), n); err != nil || res.Action != deploy.ActionCreate {
				t.Errorf("%s: %+v, %v", n.Name, res, err)
			}
		})
	}
	wg.Wait()
	if len(f.vms) != 6 {
		t.Errorf("%d VMs on the host, want 6", len(f.vms))
	}
	for name, vm := range f.vms {
		if !vm.Record().Complete() {
			t.Errorf("%s: notes %q", name, vm.Notes)
		}
	}
}
