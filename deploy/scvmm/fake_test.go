package scvmm

// No SCVMM (and no Windows host) can run in this project's tests, so
// fakeVMM plays the VMM server: it reads the scripts the driver sends —
// which step, which quoted values — keeps VMs, library disks, templates and
// jobs, and answers with the JSON result a real script would print. The
// library share is a real local directory that fakeCopier copies the VHDX
// into (no SMB server runs here either); a refresh lists it.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ksmg-appliance/ksmg/deploy/hyperv/kvp/kvptest"
	"github.com/ksmg-appliance/ksmg/deploy/pwsh"
	"github.com/ksmg-appliance/ksmg/firstboot/answers"
)

const testShare = `\\lib.example.com\MSSCVMMLibrary\ksmg`

type fakeVM struct {
	ID, Name, Desc, State, Host string
	CPUs, MemoryMiB, DiskGB     int
	Network, Subnet             string
	VLAN                        int
	KVP                         map[string]string
	IPs                         []string
	// Signalled: a firstboot answer carried ksmg.firstboot=done.
	Signalled bool
}

type fakeJob struct {
	Name    string
	Polls   int // "Running" answers before the end
	Fail    *jobFailure
	onDone  func()
	settled bool
}

type jobFailure struct{ Step, Problem, Action string }

type fakeVMM struct {
	t      *testing.T
	libDir string // the library share's folder, locally

	mu        sync.Mutex
	steps     []string
	seq       int
	vms       map[string]*fakeVM
	disks     map[string]string // share path -> disk ID (after a refresh)
	templates map[string]string // name -> ID
	profiles  map[string]bool
	jobs      map[string]*fakeJob
	// failJob makes the next job of a step fail.
	failJob map[string]*jobFailure
	// ipAfter is how many ip polls see no address yet.
	ipAfter int
	// hostGroup is the only host group there is.
	hostGroup string
	kvpCalls  int
	// removed are the KVP keys unkvp scripts removed, in order.
	removed []string
	// doneAfter is how many firstboot polls see no signal yet; neverDone:
	// the guest never signals.
	doneAfter int
	neverDone bool
	// ignoreShutdown: a guest shutdown job never finishes.
	ignoreShutdown bool
	// forced counts VMs turned off (-Force) after their shutdown.
	forced int
	// inputs are the standard inputs of the scripts, in order.
	inputs []pwsh.Input
}

func newFakeVMM(t *testing.T) *fakeVMM {
	return &fakeVMM{
		t: t, libDir: t.TempDir(), vms: map[string]*fakeVM{}, disks: map[string]string{},
		templates: map[string]string{}, profiles: map[string]bool{}, jobs: map[string]*fakeJob{},
		failJob: map[string]*jobFailure{}, hostGroup: `All Hosts\Prague`,
	}
}

var (
	stepRe     = regexp.MustCompile(`(?m)^# ksmg-scvmm step=(\w+)$`)
	quoted     = `('(?:[^']|'')*')`
	itemRe     = regexp.MustCompile(`(?m)^\$items\[` + quoted + `\] = \$KsmgInput\[` + quoted + `\]$`)
	cpuRe      = regexp.MustCompile(`CPUCount = (\d+)`)
	memRe      = regexp.MustCompile(`MemoryMB = (\d+)`)
	diskRe     = regexp.MustCompile(`-DiskSpaceGB (\d+)`)
	vlanRe     = regexp.MustCompile(`-VLanID (\d+)`)
	cpuCountRe = regexp.MustCompile(`-CPUCount (\d+)`)
	memMBRe    = regexp.MustCompile(`-MemoryMB (\d+)`)
	sizeRe     = regexp.MustCompile(`-VirtualHardDiskSizeGB (\d+)`)
	userRe     = regexp.MustCompile(`PSCredential\(` + quoted)
	keysRe     = regexp.MustCompile(`(?m)^\$keys = @\((.*)\)$`)
	qRe        = regexp.MustCompile(quoted)
	unquote    = strings.NewReplacer("''", "'")
)

// arg returns the first quoted value after prefix in script.
func arg(t *testing.T, script, prefix string) string {
	t.Helper()
	m := regexp.MustCompile(regexp.QuoteMeta(prefix) + quoted).FindStringSubmatch(script)
	if m == nil {
		t.Errorf("script has no %s'...':\n%s", prefix, script)
		return ""
	}
	return unquote.Replace(m[1][1 : len(m[1])-1])
}

func num(t *testing.T, re *regexp.Regexp, script string) int {
	m := re.FindStringSubmatch(script)
	if m == nil {
		return 0
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		t.Errorf("%s: not a number: %v", re, err)
	}
	return n
}

func ok(v any) (string, int) {
	b, _ := json.Marshal(v)
	return "WARNING: noise a cmdlet printed\r\n" + string(b) + "\r\n", 0
}

func fail(msg, kind string) (string, int) {
	b, _ := json.Marshal(map[string]string{"error": msg, "kind": kind})
	return string(b) + "\n", 1
}

func (f *fakeVMM) id(kind string) string {
	f.seq++
	return fmt.Sprintf("%s-%04d", kind, f.seq)
}

func (f *fakeVMM) newJob(step, name string, polls int, onDone func()) string {
	id := f.id("job")
	j := &fakeJob{Name: name, Polls: polls, onDone: onDone}
	if fl := f.failJob[step]; fl != nil {
		j.Fail = fl
		delete(f.failJob, step)
	}
	f.jobs[id] = j
	return id
}

func (f *fakeVMM) Steps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.steps...)
}

func (f *fakeVMM) resetSteps() {
	f.mu.Lock()
	f.steps = nil
	f.mu.Unlock()
}

func (f *fakeVMM) byName(name string) []*fakeVM {
	var out []*fakeVM
	for _, vm := range f.vms {
		if vm.Name == name {
			out = append(out, vm)
		}
	}
	return out
}

// hostPassword is the Hyper-V hosts' password in the tests: it may only
// come on standard input.
const hostPassword = "hv-pass-0123"

// handle answers one script and its input: stdout and exit code.
//
//nolint:gocyclo // one case per script step the fake VMM server plays
func (f *fakeVMM) handle(script string, in pwsh.Input) (string, int) {
	t := f.t
	m := stepRe.FindStringSubmatch(script)
	if m == nil {
		t.Errorf("script without a step marker:\n%s", script)
		return "", 1
	}
	if !strings.Contains(script, "$vmm = Get-SCVMMServer -ComputerName 'localhost'") {
		t.Errorf("%s script does not connect to the VMM server", m[1])
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	step := m[1]
	f.steps = append(f.steps, step)
	f.inputs = append(f.inputs, in)
	if strings.Contains(script, hostPassword) {
		t.Errorf("%s script carries the host password", step)
	}
	if strings.Contains(script, "$cred = ") && in["host_password"] != hostPassword {
		t.Errorf("%s script reaches the host without its password on standard input", step)
	}
	switch step {
	case stepPlan:
		name := arg(t, script, "-Name ")
		vms := []map[string]any{}
		for _, vm := range f.byName(name) {
			vms = append(vms, map[string]any{"id": vm.ID, "description": vm.Desc, "state": vm.State, "host": vm.Host, "ips": vm.IPs})
		}
		return ok(map[string]any{"vms": vms})
	case stepDisk:
		p := arg(t, script, "$_.SharePath -eq ")
		id := f.disks[p]
		if id == "" {
			return ok(map[string]any{"id": ""})
		}
		return ok(map[string]any{"id": id, "name": filepath.Base(p), "size": int64(8) << 30})
	case stepRefresh:
		p := arg(t, script, "$p = ")
		if !strings.HasPrefix(p, testShare+`\`) {
			return fail("no SCVMM library share holds "+p, "config")
		}
		return ok(map[string]any{"job": f.newJob(step, "Refresh library share", 1, func() {
			ents, _ := os.ReadDir(f.libDir)
			for _, e := range ents {
				sp := testShare + `\` + e.Name()
				if f.disks[sp] == "" && strings.HasSuffix(e.Name(), ".vhdx") {
					f.disks[sp] = f.id("vhd")
				}
			}
		})})
	case stepTemplate:
		name := arg(t, script, "$_.Name -eq ")
		if id := f.templates[name]; id != "" {
			return ok(map[string]any{"id": id, "created": false})
		}
		disk := arg(t, script, "Get-SCVirtualHardDisk -VMMServer $vmm -ID ")
		known := false
		for _, id := range f.disks {
			known = known || id == disk
		}
		if !known {
			return fail("virtual hard disk "+disk+" is no longer in the library", "error")
		}
		if !strings.Contains(script, "-Generation 2") || !strings.Contains(script, "-SecureBootTemplate 'MicrosoftUEFICertificateAuthority'") {
			t.Errorf("template is not Generation 2 with the UEFI CA Secure Boot template:\n%s", script)
		}
		f.profiles[name+"-hw"] = true
		f.templates[name] = f.id("tmpl")
		return ok(map[string]any{"id": f.templates[name], "created": true})
	case stepCreate:
		name := arg(t, script, "Name = ")
		tid := arg(t, script, "Get-SCVMTemplate -VMMServer $vmm -ID ")
		hg := arg(t, script, "$_.Path -eq ")
		if hg != f.hostGroup {
			return fail(fmt.Sprintf("0 host groups named %s; expected one", hg), "config")
		}
		found := false
		for _, id := range f.templates {
			found = found || id == tid
		}
		if !found {
			return fail("template "+tid+" not found", "error")
		}
		if num(t, diskRe, script) < 8 {
			t.Errorf("host rating asked for %d GB, less than the disk", num(t, diskRe, script))
		}
		vm := &fakeVM{ID: f.id("vm"), Name: name, Desc: arg(t, script, "Description = "), State: "UnderCreation", Host: "hv1.example.com",
			CPUs: num(t, cpuRe, script), MemoryMiB: num(t, memRe, script), KVP: map[string]string{}}
		f.vms[vm.ID] = vm
		job := f.newJob(step, "Create virtual machine", 2, func() { vm.State = "PowerOff" })
		if f.jobs[job].Fail != nil {
			f.jobs[job].onDone = func() { vm.State = "CreationFailed" }
		}
		return ok(map[string]any{"job": job, "host": vm.Host})
	case stepJob:
		id := arg(t, script, "Get-SCJob -VMMServer $vmm -ID ")
		j := f.jobs[id]
		if j == nil {
			return fail("SCVMM job "+id+" not found", "error")
		}
		res := map[string]any{"name": j.Name, "status": "Running", "progress": "50 %", "step": "", "problem": "", "action": "", "code": ""}
		if j.Polls > 0 {
			j.Polls--
			return ok(res)
		}
		if !j.settled {
			j.settled = true
			if j.onDone != nil {
				j.onDone()
			}
		}
		if j.Fail != nil {
			res["status"], res["step"], res["problem"], res["action"], res["code"] = "Failed", j.Fail.Step, j.Fail.Problem, j.Fail.Action, "2912"
		} else {
			res["status"] = "Completed"
		}
		return ok(res)
	case stepRemove:
		id := arg(t, script, "-ID ")
		vm := f.vms[id]
		if vm == nil {
			return ok(map[string]any{"job": ""})
		}
		if vm.State == "Running" || vm.State == "Saved" {
			t.Errorf("VM %s removed while %s: stop first", id, vm.State)
		}
		return ok(map[string]any{"job": f.newJob(step, "Remove virtual machine", 1, func() { delete(f.vms, id) })})
	case stepStop:
		id := arg(t, script, "-ID ")
		vm := f.vms[id]
		if vm == nil {
			return ok(map[string]any{"job": "", "state": "absent"})
		}
		force := strings.Contains(script, "$force = $true")
		state := vm.State
		switch {
		case state == "Saved":
			if !strings.Contains(script, "-DiscardSavedState") {
				t.Errorf("a saved VM is not stopped with -DiscardSavedState:\n%s", script)
			}
			return ok(map[string]any{"job": f.newJob(step, "Discard saved state", 1, func() { vm.State = "PowerOff" }), "state": state})
		case state == "Running" && !force:
			polls := 1
			if f.ignoreShutdown {
				polls = 1 << 30
			}
			return ok(map[string]any{"job": f.newJob(step, "Shut down virtual machine", polls, func() { vm.State = "PowerOff" }), "state": state})
		case state == "Running" || state == "Paused":
			f.forced++
			return ok(map[string]any{"job": f.newJob(step, "Stop virtual machine", 1, func() { vm.State = "PowerOff" }), "state": state})
		}
		return ok(map[string]any{"job": "", "state": state})
	case stepRename:
		vm := f.vms[arg(t, script, "-ID ")]
		if vm == nil {
			return fail("VM disappeared", "error")
		}
		vm.Name = arg(t, script, "-Name ")
		return ok(map[string]any{"ok": true})
	case stepList:
		vms := []map[string]any{}
		for _, vm := range f.vms {
			if strings.Contains(vm.Desc, "ksmg.deploy=") {
				vms = append(vms, map[string]any{"id": vm.ID, "name": vm.Name, "description": vm.Desc, "state": vm.State, "host": vm.Host})
			}
		}
		return ok(map[string]any{"vms": vms})
	case stepConfigure:
		vm := f.vms[arg(t, script, "-ID ")]
		if vm == nil {
			return fail("VM disappeared", "error")
		}
		if (strings.Contains(script, "-CPUCount") || strings.Contains(script, "-MemoryMB")) && vm.State == "Running" {
			return fail("Set-SCVirtualMachine: the VM must be stopped to change processors or memory", "error")
		}
		if n := num(t, cpuCountRe, script); n > 0 {
			vm.CPUs = n
		}
		if n := num(t, memMBRe, script); n > 0 {
			vm.MemoryMiB = n
		}
		if strings.Contains(script, "Get-SCVMNetwork") {
			vm.Network = arg(t, script, "$_.Name -eq ")
			vm.VLAN = num(t, vlanRe, script)
			vm.Subnet = ""
			if strings.Contains(script, "Get-SCVMSubnet") {
				vm.Subnet = arg(t, script, "-VMNetwork $n[0] | Where-Object { $_.Name -eq ")
			}
		}
		if n := num(t, sizeRe, script); n > 0 {
			vm.DiskGB = n
		}
		return ok(map[string]any{"ok": true})
	case stepKVP:
		f.kvpCalls++
		vm := f.vms[arg(t, script, "-ID ")]
		if vm == nil {
			return fail("VM disappeared", "error")
		}
		if vm.State != "PowerOff" {
			t.Errorf("KVP items set while the VM is %s; first boot would race them", vm.State)
		}
		if u := userRe.FindStringSubmatch(script); u == nil || u[1] != `'EXAMPLE\hvadmin'` {
			t.Errorf("KVP script does not use the host credentials: %v", u)
		}
		for _, it := range itemRe.FindAllStringSubmatch(script, -1) {
			k := unquote.Replace(it[1][1 : len(it[1])-1])
			v, found := in[unquote.Replace(it[2][1:len(it[2])-1])]
			if !found {
				return fail("no value for KVP item "+k+" on standard input", "error")
			}
			if answers.IsSecret(k) && strings.Contains(script, v) {
				t.Errorf("KVP script carries the value of %s", k)
			}
			vm.KVP[k] = v
		}
		return ok(map[string]any{"count": len(vm.KVP)})
	case stepKVPRemove:
		vm := f.vms[arg(t, script, "-ID ")]
		if vm == nil {
			return fail("VM disappeared", "error")
		}
		if !vm.Signalled {
			t.Errorf("secret KVP items removed before first boot signalled it is done (VM %s, addresses %v)", vm.State, vm.IPs)
		}
		if u := userRe.FindStringSubmatch(script); u == nil || u[1] != `'EXAMPLE\hvadmin'` {
			t.Errorf("KVP removal script does not use the host credentials: %v", u)
		}
		if !strings.Contains(script, "RemoveKvpItems") {
			t.Errorf("KVP removal script does not call RemoveKvpItems:\n%s", script)
		}
		m := keysRe.FindStringSubmatch(script)
		if m == nil {
			t.Errorf("KVP removal script has no $keys line:\n%s", script)
			return "", 1
		}
		for _, k := range qRe.FindAllString(m[1], -1) {
			k = unquote.Replace(k[1 : len(k)-1])
			if v, ok := vm.KVP[k]; !ok {
				return fail("KVP item "+k+" was not removed on "+vm.Host, "error")
			} else if v != "" && strings.Contains(script, v) {
				t.Errorf("KVP removal script carries the value of %s", k)
			}
			delete(vm.KVP, k)
			f.removed = append(f.removed, k)
		}
		return ok(map[string]any{"count": len(f.removed)})
	case stepFirstboot:
		vm := f.vms[arg(t, script, "-ID ")]
		if vm == nil {
			return fail("VM disappeared", "error")
		}
		if u := userRe.FindStringSubmatch(script); u == nil || u[1] != `'EXAMPLE\hvadmin'` || !strings.Contains(script, "Invoke-Command") || !strings.Contains(script, "GuestExchangeItems") {
			t.Errorf("first-boot signal script does not read GuestExchangeItems on the host with its credentials:\n%s", script)
		}
		if vm.State != "Running" {
			return ok(map[string]any{"items": []string{}})
		}
		if f.neverDone || f.doneAfter > 0 {
			f.doneAfter--
			// Another item, as a lone string (ConvertTo-Json may write
			// a one-element array so).
			return ok(map[string]any{"items": kvptest.GuestXML("ksmg.other", "x")})
		}
		vm.Signalled = true
		return ok(map[string]any{"items": []string{kvptest.GuestXML("ksmg.other", "x"), kvptest.GuestXML("ksmg.firstboot", "done")}})
	case stepStart:
		vm := f.vms[arg(t, script, "-ID ")]
		if vm == nil {
			return fail("VM disappeared", "error")
		}
		if vm.State == "Running" {
			return ok(map[string]any{"job": ""})
		}
		return ok(map[string]any{"job": f.newJob(step, "Start virtual machine", 1, func() { vm.State = "Running" })})
	case stepIP:
		vm := f.vms[arg(t, script, "-ID ")]
		if vm == nil {
			return fail("VM disappeared", "error")
		}
		if f.ipAfter > 0 {
			f.ipAfter--
			return ok(map[string]any{"ips": []string{"169.254.10.1"}}) // link-local: not yet
		}
		vm.IPs = []string{"192.0.2.10"}
		return ok(map[string]any{"ips": "192.0.2.10"}) // a lone string, as ConvertTo-Json may write it
	case stepMark:
		vm := f.vms[arg(t, script, "-ID ")]
		if vm == nil {
			return fail("VM disappeared", "error")
		}
		vm.Desc = arg(t, script, "-Description ")
		return ok(map[string]any{"ok": true})
	}
	t.Errorf("unknown step %q", step)
	return "", 1
}

// runner is an in-process pwsh.Runner on the fake (the WinRM path is
// tested separately through pwshtest).
type runner struct{ f *fakeVMM }

func (r runner) Run(ctx context.Context, script string, in pwsh.Input) (pwsh.Output, error) {
	if err := ctx.Err(); err != nil {
		return pwsh.Output{}, err
	}
	out, code := r.f.handle(script, in)
	return pwsh.Output{Stdout: out, ExitCode: code}, nil
}

// fakeCopier copies into the fake library's folder: a stand-in for SMB,
// which cannot run here.
type fakeCopier struct {
	f      *fakeVMM
	mu     sync.Mutex
	copies []string
}

func (c *fakeCopier) Copy(ctx context.Context, local, remote string, progress func(done, total int64)) error {
	dir, file, okk := strings.Cut(remote, testShare+`\`)
	if !okk || dir != "" || strings.Contains(file, `\`) {
		return fmt.Errorf("copy to %s: not in the library share %s", remote, testShare)
	}
	c.mu.Lock()
	c.copies = append(c.copies, remote)
	c.mu.Unlock()
	in, err := os.Open(local)
	if err != nil {
		return err
	}
	defer in.Close()
	st, _ := in.Stat()
	out, err := os.Create(filepath.Join(c.f.libDir, file))
	if err != nil {
		return err
	}
	n, err := io.Copy(out, in)
	if err != nil {
		return err
	}
	if progress != nil {
		progress(n, st.Size())
	}
	return out.Close()
}

func (c *fakeCopier) Copies() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.copies...)
}
