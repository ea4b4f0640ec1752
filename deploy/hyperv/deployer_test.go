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
	vms     map[string]*VM
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
}

var (
	stepRE   = regexp.MustCompile(`^# ksmg-deploy: ([a-z-]+)\n`)
	nameRE2  = regexp.MustCompile(`(?m)(?:\$name = |-Name )'((?:[^']|'')*)'`)
	idRE     = regexp.MustCompile(`(?:-Id |\$id = |-f )'([0-9a-f-]{36})'`)
	notesRE  = regexp.MustCompile(`-Notes '((?:[^']|'')*)'`)
	dirRE    = regexp.MustCompile(`\$dir = '((?:[^']|'')*)'`)
	keysRE   = regexp.MustCompile(`(?m)^\$keys = @\((.*)\)$`)
	quotedRE = regexp.MustCompile(`'((?:[^']|'')*)'`)
	unquoteR = strings.NewReplacer("''", "'")
)

func (f *fakeHyperV) byID(id string) *VM {
	for _, vm := range f.vms {
		if vm.ID == id {
			return vm
		}
	}
	return nil
}

func (f *fakeHyperV) handle(script string) pwshtest.Reply {
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
	switch step {
	case "find-vm":
		vm := f.vms[arg(nameRE2)]
		b, _ := json.Marshal(vm)
		return pwshtest.Reply{Stdout: string(b) + "\r\n"}
	case "create-vm":
		f.next++
		vm := &VM{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", f.next), Name: arg(nameRE2), Notes: arg(notesRE), State: "Off"}
		f.vms[vm.Name] = vm
		return pwshtest.Reply{Stdout: vm.ID + "\r\n"}
	case "start-vm":
		if vm := f.byID(arg(idRE)); vm != nil {
			vm.State = "Running"
			return pwshtest.Reply{}
		}
	case "guest-ip":
		if f.ipCalls++; f.ipCalls > f.ipAfter {
			return pwshtest.Reply{Stdout: "192.0.2.10\r\n"}
		}
		return pwshtest.Reply{}
	case "set-notes":
		if vm := f.byID(arg(idRE)); vm != nil {
			vm.Notes = arg(notesRE)
			return pwshtest.Reply{}
		}
	case "remove-vm":
		if vm := f.byID(arg(idRE)); vm != nil {
			delete(f.vms, vm.Name)
		}
		dir := arg(dirRE)
		rel, ok := strings.CutPrefix(dir, testPath+`\`)
		if !ok {
			return pwshtest.Reply{Stderr: "fake Hyper-V: folder outside the share: " + dir, ExitCode: 1}
		}
		os.RemoveAll(filepath.Join(f.share, rel))
		return pwshtest.Reply{}
	case "guest-kvp":
		if f.byID(arg(idRE)) == nil {
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
	case "remove-kvp":
		if f.byID(arg(idRE)) == nil {
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
			f.removed = append(f.removed, unquoteR.Replace(k[1]))
		}
		return pwshtest.Reply{}
	case "resize-disk", "add-kvp":
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
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(raw, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(raw, 64<<20); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "ksmg.vhdx")
	if err := vhdx.Write(context.Background(), raw, out, vhdx.Options{Identity: "hyperv-test"}); err != nil {
		t.Fatal(err)
	}
	return out
}

func newTest(t *testing.T) (*Deployer, *fakeHyperV, *pwshtest.Host) {
	t.Helper()
	f := &fakeHyperV{share: t.TempDir(), vms: map[string]*VM{}, fail: map[string]pwshtest.Reply{}}
	h := pwshtest.NewHost(f.handle)
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
		Properties: map[string]string{"ksmg.hostname": "mx1.example.com", "ksmg.admin.password": "Pa55-w0rd!"},
		PowerOn:    true, WaitIP: 5 * time.Second,
	}
}

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
	want := []string{"find-vm", "create-vm", "resize-disk", "add-kvp", "start-vm", "guest-ip", "guest-ip", "guest-ip", "guest-kvp", "guest-kvp", "remove-kvp", "set-notes"}
	if got := f.Steps(); !reflect.DeepEqual(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
	if res.Action != deploy.ActionCreate || res.IP != "192.0.2.10" || res.ID == "" || res.Err != nil {
		t.Errorf("result %+v", res)
	}
	if vm := f.vms["ksmg-1"]; vm == nil || vm.Notes != "ksmg.deploy=complete" || vm.State != "Running" {
		t.Errorf("VM on the host: %+v", vm)
	}
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
	if i, j := strings.Index(kvp, "'ksmg.admin.password'; v = 'Pa55-w0rd!'"), strings.Index(kvp, "'ksmg.hostname'; v = 'mx1.example.com'"); i < 0 || j < i {
		t.Errorf("KVP script lacks the answers in key order:\n%s", kvp)
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
	f.vms["ksmg-1"] = &VM{ID: "11111111-2222-4333-8444-555555555555", Name: "ksmg-1", Notes: "ksmg.deploy=pending", State: "Running"}
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
	f.vms["ksmg-1"] = &VM{ID: "11111111-2222-4333-8444-555555555555", Name: "ksmg-1", Notes: "production mail relay", State: "Running"}
	_, err := d.Deploy(context.Background(), testNode(testImage(t)))
	if err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), "not deployed by ksmg") {
		t.Fatalf("deploy over a foreign VM: %v", err)
	}
	if got := f.Steps(); !reflect.DeepEqual(got, []string{"find-vm"}) {
		t.Errorf("steps %v, want only find-vm", got)
	}
}

// TestDeployFailures makes one step fail: the error names the step and
// carries the host's words (with secrets redacted), and what the deploy
// created is removed.
func TestDeployFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		step      string
		stderr    string
		wantSteps []string
		wantErr   string
	}{
		{"create-vm", "New-VM : The virtual switch 'DMZ' was not found.", []string{"find-vm", "create-vm", "remove-vm"},
			"create VM ksmg-1: PowerShell exited 1: New-VM : The virtual switch 'DMZ' was not found."},
		{"add-kvp", "AddKvpItems returned 32775 for value Pa55-w0rd!", []string{"find-vm", "create-vm", "resize-disk", "add-kvp", "remove-vm"},
			"AddKvpItems returned 32775 for value <secret>"},
		{"remove-kvp", "RemoveKvpItems returned 32773", []string{"find-vm", "create-vm", "resize-disk", "add-kvp", "start-vm", "guest-ip", "guest-kvp", "remove-kvp", "remove-vm"},
			"remove KVP items from VM 00000000-0000-4000-8000-000000000001: PowerShell exited 1: RemoveKvpItems returned 32773"},
		{"start-vm", "Start-VM : The virtual machine could not be started: not enough memory.", []string{"find-vm", "create-vm", "resize-disk", "add-kvp", "start-vm", "remove-vm"},
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
			if strings.Contains(err.Error(), "Pa55-w0rd!") || !errors.Is(res.Err, err) && res.Err.Error() != err.Error() {
				t.Errorf("secret in error or result: %v / %v", err, res.Err)
			}
			var se *pwsh.ScriptError
			if !errors.As(err, &se) || se.ExitCode != 1 {
				t.Errorf("error does not carry the *pwsh.ScriptError: %v", err)
			}
			if got := f.Steps(); !reflect.DeepEqual(got, tc.wantSteps) {
				t.Errorf("steps %v, want %v", got, tc.wantSteps)
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
	if steps[len(steps)-1] != "remove-vm" || len(f.vms) != 0 {
		t.Errorf("VM not removed after the timeout: steps %v", steps)
	}
}

// TestDeployFirstbootTimeout: the guest has an address but first boot
// never signals: the deploy fails retryably within WaitIP, no secret item
// is removed, the VM never gets the completion mark (and, as after a
// failed address wait, the VM is removed so a retry starts clean).
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
	if !slices.Contains(steps, "guest-kvp") || steps[len(steps)-1] != "remove-vm" || len(f.vms) != 0 || len(f.removed) != 0 {
		t.Errorf("steps %v, VMs %v, removed %v", steps, f.vms, f.removed)
	}
}

// TestDeployNoWaitKeepsItems: without WaitIP nothing says first boot is
// done: no poll, no removal, and the VM is marked complete.
func TestDeployNoWaitKeepsItems(t *testing.T) {
	t.Parallel()
	d, f, _ := newTest(t)
	n := testNode(testImage(t))
	n.WaitIP = 0
	if _, err := d.Deploy(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	want := []string{"find-vm", "create-vm", "resize-disk", "add-kvp", "start-vm", "set-notes"}
	if got := f.Steps(); !reflect.DeepEqual(got, want) || len(f.removed) != 0 {
		t.Errorf("steps %v (removed %v), want %v", got, f.removed, want)
	}
}

func TestDeployBadInput(t *testing.T) {
	t.Parallel()
	d, _, h := newTest(t)
	img := testImage(t)
	notVHDX := filepath.Join(t.TempDir(), "x.vhdx")
	os.WriteFile(notVHDX, []byte("not a disk"), 0o600)
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
	os.WriteFile(pf, []byte("from-file\n"), 0o600)
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
		if vm.Notes != "ksmg.deploy=complete" {
			t.Errorf("%s: notes %q", name, vm.Notes)
		}
	}
}
