// Package scvmm deploys the appliance through System Center Virtual Machine
// Manager: PowerShell with SCVMM's VirtualMachineManager cmdlets, run over
// WinRM (deploy/pwsh) on a Windows host that has the module, usually the VMM
// server itself.
//
// A deploy of one node:
//
//  0. pre-flight (also all of Plan before it reads): the node and its
//     answers checked as first boot will, the VHDX inspected before any
//     server is reached, the disk size.
//  1. plan: Get-SCVirtualMachine -Name, read the deploy package's mark and
//     record (deploy.Record) from the VM's Description: no VM is created;
//     one marked complete is left alone, or shows drift or an outdated
//     image (changed in place with Node.ApplyDrift, replaced with
//     Node.Replace through deploy.SwapIn, never destroyed first); one
//     marked pending is the leftover of an interrupted run and is removed
//     and made again; one without any mark was not made by ksmg and is
//     never removed unless Node.ReplaceForeign is set: the plan and the
//     deploy fail with a permanent error naming the VM, so a re-run cannot
//     destroy someone's VM that happens to share the name.
//  2. image (once per VHDX and Deployer): the VHDX, named by its SHA-256,
//     is copied over SMB to the library share unless SCVMM already knows
//     it there, the share is refreshed (Read-SCLibraryShare) and the disk
//     found (Get-SCVirtualHardDisk); a Generation 2 hardware profile with
//     Secure Boot, the MicrosoftUEFICertificateAuthority template and an
//     explicit SCSI adapter (a Generation 2 profile gets none by itself and
//     the boot disk sits on SCSI 0:0), and a VM template on that disk are
//     created unless they exist.
//  3. New-SCVirtualMachine from the template, on the best-rated host of the
//     host group (Get-SCVMHostRating) or in a cloud (Get-SCCloud,
//     New-SCVMConfiguration), with the node's CPUs and memory, automatic
//     start with its host and a guest shutdown when the host stops, and the
//     Description ksmg.deploy=pending (with the record) in the same call,
//     so the VM is never on the target unmarked; network, VM subnet, VLAN
//     and disk size are set on the new VM.
//  4. The first-boot answers become host-to-guest KVP items: SCVMM has no
//     cmdlet for them, so the script reaches the VM's Hyper-V host
//     (Invoke-Command) and calls Msvm_VirtualSystemManagementService
//     AddKvpItems with Source 0, which the guest's hv_kvp_daemon writes to
//     pool 0 where firstboot/sources.KVP reads them. The values and the
//     host password travel on the remote shell's standard input, never in
//     script text (script-block logging would record it) or on a command
//     line.
//  5. Start and wait for the guest's IPv4 address (Read-SCVirtualMachine).
//  6. When the deploy waits (Node.WaitIP > 0), it also waits, within the
//     same deadline, for first boot's own signal: after applying its
//     answers and scrubbing them in the guest, cmd/ksmg-firstboot writes
//     the guest-to-host item ksmg.firstboot=done (firstboot/sources.DoneKey)
//     to its pool 1, which the host shows in the VM's
//     Msvm_KvpExchangeComponent.GuestExchangeItems; SCVMM does not, so the
//     script reads them on the VM's Hyper-V host (the same Invoke-Command
//     path). Only then are the secret items (answers.IsSecret: admin
//     password, password hash, join token) removed from the VM's
//     host-to-guest exchange (RemoveKvpItems, key names only), so they do
//     not stay in the VM's configuration on the host (HostExchangeItems,
//     which exports and backups of the VM carry too). An address alone
//     would not do: a DHCP lease can come before first boot read its pool.
//     If the signal does not come in time the deploy fails (retryable;
//     the VM's console shows why first boot did not finish) and the VM
//     stays marked pending. Without WaitIP nothing tells the driver first
//     boot is done, so the items stay (Result.SecretsLeft) until Scrub.
//  7. Last, the Description becomes ksmg.deploy=complete.
//
// Remove stops the VM with a guest shutdown (Stop-SCVirtualMachine
// -Shutdown), turns it off (-Force) when that does not finish in time,
// discards a saved state with the documented -DiscardSavedState parameter
// set, and then removes it with its files.
//
// Long operations run with -RunAsynchronously -JobVariable and their SCVMM
// job is followed with Get-SCJob -ID from here, so a failure reports the
// job's own error (ErrorInfo) and the step it failed at (Get-SCStep).
// Every script prints one JSON object (ConvertTo-Json) as its last line,
// also when it fails, and that is what the driver decodes.
//
// The scripts are text/template files in scripts/, every value quoted with
// pwsh.Quote; testdata/ holds their rendered golden forms (go test
// -update rewrites them). No SCVMM or Windows host can run in the tests:
// they check the golden scripts and drive the driver through the real WinRM
// client against github.com/dylanmei/winrmtest, whose fake host plays
// SCVMM's part.
package scvmm

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/hyperv/kvp"
	"github.com/ksmg-appliance/ksmg/deploy/pwsh"
	"github.com/ksmg-appliance/ksmg/firstboot/sources"
	"github.com/ksmg-appliance/ksmg/vhdx"
)

// Kind is the driver's name in inventories.
const Kind = "scvmm"

// Options are what a Deployer runs with besides its Config.
type Options struct {
	Name   string      // target name in tables, default the server
	Runner pwsh.Runner // runs scripts on cfg.Server
	Copier pwsh.Copier // copies the VHDX to the library share
	// HostUser and HostPassword reach the Hyper-V hosts for KVP.
	HostUser, HostPassword string
	Logger                 *slog.Logger
}

// Deployer deploys nodes through one SCVMM server. It is safe for
// concurrent use.
type Deployer struct {
	cfg     Config
	opt     Options
	log     *slog.Logger
	digests deploy.Digests
	mu      sync.Mutex
	imgs    map[imageKey]*image
	names   map[string]*sync.Mutex
}

var _ deploy.Deployer = (*Deployer)(nil)

// New returns a Deployer for cfg (defaults applied, then validated).
func New(cfg Config, opt Options) (*Deployer, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, deploy.Permanent(fmt.Errorf("scvmm %s: %w", cfg.Server, err))
	}
	if opt.Runner == nil || opt.Copier == nil {
		return nil, errors.New("scvmm: a Runner and a Copier are required")
	}
	if opt.Name == "" {
		opt.Name = cfg.Server
	}
	if opt.HostUser == "" {
		return nil, deploy.Permanent(fmt.Errorf("scvmm %s: host_user: the Hyper-V hosts need credentials for the KVP items", cfg.Server))
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Deployer{cfg: cfg, opt: opt, log: log.With("target", "scvmm:"+opt.Name), imgs: map[imageKey]*image{}, names: map[string]*sync.Mutex{}}, nil
}

// Open makes a Deployer that reaches cfg.Server over WinRM and the library
// share over SMB, with the passwords from the environment or files.
func Open(ctx context.Context, name string, cfg Config, log *slog.Logger) (*Deployer, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, deploy.Permanent(fmt.Errorf("scvmm target %s: %w", name, err))
	}
	user, pw, hostUser, hostPW, err := cfg.credentials()
	if err != nil {
		return nil, deploy.Permanent(fmt.Errorf("scvmm target %s: %w", name, err))
	}
	wc, err := cfg.winrmConfig(user, pw)
	if err != nil {
		return nil, deploy.Permanent(fmt.Errorf("scvmm target %s: %w", name, err))
	}
	run, err := pwsh.NewWinRM(wc)
	if err != nil {
		return nil, deploy.Permanent(fmt.Errorf("scvmm target %s: %w", name, err))
	}
	cp, err := pwsh.NewSMB(smbConfig(user, pw))
	if err != nil {
		return nil, deploy.Permanent(fmt.Errorf("scvmm target %s: %w", name, err))
	}
	return New(cfg, Options{Name: name, Runner: run, Copier: cp, HostUser: hostUser, HostPassword: hostPW, Logger: log})
}

func init() {
	deploy.Register(Kind, func(ctx context.Context, t deploy.TargetSpec) (deploy.Deployer, error) {
		var cfg Config
		if err := t.Decode(&cfg); err != nil {
			return nil, deploy.Permanent(fmt.Errorf("scvmm target %s: %w", t.Name, err))
		}
		cfg.PasswordFile = deploy.Path(t.Dir, cfg.PasswordFile)
		cfg.HostPasswordFile = deploy.Path(t.Dir, cfg.HostPasswordFile)
		cfg.CACert = deploy.Path(t.Dir, cfg.CACert)
		return Open(ctx, t.Name, cfg, t.Logger)
	})
}

// Target implements deploy.Deployer.
func (d *Deployer) Target() string { return "scvmm:" + d.opt.Name }

// Close implements deploy.Deployer; the WinRM runner holds no connection
// between scripts.
func (d *Deployer) Close() error { return nil }

type vmInfo struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	State       string `json:"state"`
	Host        string `json:"host"`
	IPs         strs   `json:"ips"`
}

// Record is the deploy record in the VM's Description.
func (v vmInfo) Record() deploy.Record { return deploy.ParseRecordText(v.Description) }

// description is the Description carrying rec.
func description(rec deploy.Record) string { return rec.Text(" ") }

// maxName leaves room for the name of a replacement.
const maxName = 64 - len(".ksmg-new")

func (d *Deployer) validate(n deploy.Node) error {
	err := n.Validate()
	for k, v := range n.Properties {
		if len(k) >= sources.KVPKeySize || len(v) >= sources.KVPValueSize || strings.ContainsRune(v, 0) {
			err = errors.Join(err, fmt.Errorf("property %s: a KVP item holds a key under %d and a value under %d bytes, without NUL", k, sources.KVPKeySize, sources.KVPValueSize))
		}
	}
	if n.CPUs > 240 {
		err = errors.Join(err, fmt.Errorf("cpus %d: SCVMM allows at most 240", n.CPUs))
	}
	if len(n.Name) > maxName {
		err = errors.Join(err, fmt.Errorf("name: at most %d characters (a replacement is deployed as %s)", maxName, deploy.TempName(n.Name)))
	}
	if err != nil {
		return deploy.Permanent(fmt.Errorf("node %s: %w", n.Name, err))
	}
	return nil
}

// CheckImage inspects the VHDX at p (headers, region tables, metadata,
// BAT) without reaching any server; its error is deploy.Permanent.
func CheckImage(p string) (*vhdx.Report, error) {
	rep, err := vhdx.Inspect(p)
	if err != nil {
		return nil, deploy.Permanent(fmt.Errorf("image: %w", err))
	}
	return rep, nil
}

// preflight is what the checks before any change found out.
type preflight struct {
	rep  *vhdx.Report
	want deploy.Record
}

// network is the node's VM network, subnet and VLAN, else the target's.
func (d *Deployer) network(n deploy.Node) (network, subnet string, vlan int) {
	if n.Network != "" {
		return n.Network, "", n.VLAN
	}
	return d.cfg.Network, d.cfg.VMSubnet, d.cfg.VLAN
}

// netRecord is a network as the record keeps it: network[/subnet][:vlan].
func netRecord(network, subnet string, vlan int) string {
	if subnet != "" {
		network += "/" + subnet
	}
	if vlan != 0 {
		network += ":" + strconv.Itoa(vlan)
	}
	return network
}

// preflight checks the node, its answers and the VHDX before the server
// is reached, and says what a deploy would record.
func (d *Deployer) preflight(ctx context.Context, n deploy.Node) (*preflight, error) {
	if err := d.validate(n); err != nil {
		return nil, err
	}
	rep, err := CheckImage(n.Image)
	if err != nil {
		return nil, err
	}
	if imgGB := int((rep.VirtualSize + 1<<30 - 1) >> 30); n.DiskGiB > 0 && n.DiskGiB < imgGB {
		return nil, deploy.Permanent(fmt.Errorf("disk %d GiB: the image's disk is %d GiB and cannot shrink", n.DiskGiB, imgGB))
	}
	digest, err := d.digests.Digest(ctx, n.Image)
	if err != nil {
		return nil, deploy.Permanent(err)
	}
	network, subnet, vlan := d.network(n)
	// DiskGiB 0 (the image's size) is not compared: the record says the
	// size the VM got.
	want := deploy.Record{
		State: deploy.MarkPending, Image: digest, Version: deploy.VersionFromName(n.Image),
		CPUs: cmp.Or(n.CPUs, d.cfg.CPUs), MemoryMiB: cmp.Or(n.MemoryMiB, d.cfg.MemoryMiB), DiskGiB: n.DiskGiB,
		Network: netRecord(network, subnet, vlan), Answers: deploy.AnswersDigest(n.Properties), Cluster: n.Cluster,
		Control: n.Properties["ksmg.cluster.control_address"],
	}
	return &preflight{rep: rep, want: want}, nil
}

// find returns the VMs called name.
func (d *Deployer) find(ctx context.Context, name string) ([]vmInfo, error) {
	var out struct {
		VMs []vmInfo `json:"vms"`
	}
	if err := d.script(ctx, stepPlan, vars{Name: name}, "look up VM "+name, &out, nil); err != nil {
		return nil, err
	}
	return out.VMs, nil
}

// findNode returns the VMs called name or, when there is none, the VM in
// service that a replace stopped between its renames left as
// deploy.AsideName (aside set): it is put back, never duplicated.
func (d *Deployer) findNode(ctx context.Context, name string) (vms []vmInfo, aside bool, err error) {
	if vms, err = d.find(ctx, name); err != nil || len(vms) > 0 {
		return vms, false, err
	}
	old, err := d.find(ctx, deploy.AsideName(name))
	if err != nil || len(old) != 1 || !old[0].Record().Marked() {
		return nil, false, err
	}
	return old, true, nil
}

// Plan implements deploy.Deployer: the pre-flight, then what a deploy
// would do; it only reads.
func (d *Deployer) Plan(ctx context.Context, n deploy.Node) (deploy.Plan, error) {
	pre, err := d.preflight(ctx, n)
	if err != nil {
		return deploy.Plan{}, err
	}
	vms, aside, err := d.findNode(ctx, n.Name)
	if err != nil {
		return deploy.Plan{}, err
	}
	p, err := d.plan(n, pre, vms, aside)
	if err != nil {
		return p, err
	}
	return p, d.namesFree(ctx, n, p, vms, aside)
}

// namesFree fails, as the run would, when a name the deploy planned as p
// clears (deploy.SwapNames) is a VM ksmg did not make.
func (d *Deployer) namesFree(ctx context.Context, n deploy.Node, p deploy.Plan, vms []vmInfo, aside bool) error {
	if len(vms) != 1 {
		return nil
	}
	for _, name := range deploy.SwapNames(n.Name, p, vms[0].Record(), aside) {
		xs, err := d.find(ctx, name)
		if err != nil {
			return err
		}
		for _, x := range xs {
			if !x.Record().Marked() {
				return deploy.ErrNameTaken(name, x.ID)
			}
		}
	}
	return nil
}

func (d *Deployer) plan(n deploy.Node, pre *preflight, vms []vmInfo, aside bool) (p deploy.Plan, _ error) {
	p = deploy.Plan{Node: n.Name, Target: d.Target()}
	if aside {
		defer func() {
			p.Reason = fmt.Sprintf("an interrupted replace left VM %s (%s) as %s: it is renamed back and an unfinished replacement %s removed first; then: %s",
				n.Name, vms[0].ID, vms[0].Name, deploy.TempName(n.Name), p.Reason)
		}()
	}
	switch len(vms) {
	case 0:
		p.Action, p.Reason = deploy.ActionCreate, "no VM named "+n.Name
		return p, nil
	case 1:
	default:
		ids := make([]string, len(vms))
		for i, v := range vms {
			ids[i] = v.ID
		}
		return p, deploy.Permanent(fmt.Errorf("%d VMs are named %s (%s); SCVMM allows duplicates, this driver does not: remove or rename the extra ones", len(vms), n.Name, strings.Join(ids, ", ")))
	}
	vm := vms[0]
	p.ID = vm.ID
	if ips := usable(vm.IPs); len(ips) > 0 {
		p.IP = ips[0]
	}
	rec := vm.Record()
	drift, outdated := deploy.Differences(rec, pre.want)
	switch {
	case rec.Complete() && n.Replace:
		p.Action, p.Reason = deploy.ActionReplace, fmt.Sprintf("VM %s exists (%s on %s), deployed by ksmg; replace requested: a new VM is deployed as %s and swapped in", n.Name, vm.ID, vm.Host, deploy.TempName(n.Name))
	case rec.Complete() && outdated:
		p.Action, p.Drift = deploy.ActionOutdated, drift
		p.Reason = fmt.Sprintf("VM %s (%s on %s) runs image %s, the node asks for %s; --replace deploys it", n.Name, vm.ID, vm.Host, orDash(rec.Version), orDash(pre.want.Version))
	case rec.Complete() && len(drift) > 0:
		p.Action, p.Drift = deploy.ActionDrift, drift
		p.Reason = fmt.Sprintf("VM %s (%s on %s), deployed by ksmg, differs: %s", n.Name, vm.ID, vm.Host, strings.Join(drift, ", "))
	case rec.Complete():
		p.Action, p.Reason = deploy.ActionUnchanged, fmt.Sprintf("VM %s exists (%s on %s), deployed by ksmg", n.Name, vm.ID, vm.Host)
	case rec.Marked():
		p.Action, p.Reason = deploy.ActionReplace, fmt.Sprintf("VM %s exists (%s, %s) with %s=%q, not %q: leftover of an unfinished deploy", n.Name, vm.ID, vm.State, deploy.MarkKey, rec.State, deploy.MarkComplete)
	case n.ReplaceForeign:
		p.Action, p.Reason = deploy.ActionReplace, fmt.Sprintf("VM %s exists (%s on %s), not deployed by ksmg; replace of a foreign VM requested: a new VM is deployed as %s and swapped in", n.Name, vm.ID, vm.Host, deploy.TempName(n.Name))
	default:
		return p, deploy.Permanent(fmt.Errorf("VM %s exists (%s on %s) and was not deployed by ksmg (no %s in its Description); it is left alone (--replace-foreign replaces it)", n.Name, vm.ID, vm.Host, deploy.MarkKey))
	}
	return p, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// lockName serialises the work on one VM name.
func (d *Deployer) lockName(name string) func() {
	d.mu.Lock()
	m, ok := d.names[name]
	if !ok {
		m = &sync.Mutex{}
		d.names[name] = m
	}
	d.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// Deploy implements deploy.Deployer. A failure leaves at most a VM marked
// pending, which the next run replaces.
func (d *Deployer) Deploy(ctx context.Context, n deploy.Node) (deploy.Result, error) {
	res, err := deploy.Timed("deploy", n.Name, d.Target(), func(res *deploy.Result) error { return d.deploy(ctx, n, res) })
	if err != nil {
		return res, err
	}
	// The caller reports the result (the command's line, the fleet's
	// table and log); this is for debugging only.
	d.log.Debug("deployed", "node", n.Name, "action", res.Action, "id", res.ID, "ip", res.IP, "elapsed", res.Elapsed.Round(time.Millisecond))
	return res, nil
}

func (d *Deployer) deploy(ctx context.Context, n deploy.Node, res *deploy.Result) error {
	pre, err := d.preflight(ctx, n)
	if err != nil {
		return err
	}
	defer d.lockName(n.Name)()
	vms, aside, err := d.findNode(ctx, n.Name)
	if err != nil {
		return err
	}
	p, err := d.plan(n, pre, vms, aside)
	if err == nil {
		err = d.namesFree(ctx, n, p, vms, aside)
	}
	if err != nil {
		return err
	}
	res.Action, res.ID, res.Drift = p.Action, p.ID, p.Drift
	if aside {
		d.log.Warn("an interrupted replace left the VM in service under another name; renaming it back", "node", n.Name, "id", p.ID, "as", vms[0].Name)
		if err := d.rename(ctx, p.ID, n.Name); err != nil {
			return err
		}
		vms[0].Name = n.Name
		if err := d.clearMarked(ctx, deploy.TempName(n.Name)); err != nil {
			return fmt.Errorf("remove %s, left by an interrupted replace: %w", deploy.TempName(n.Name), err)
		}
	}
	switch p.Action {
	case deploy.ActionUnchanged, deploy.ActionOutdated, deploy.ActionDrift:
		if ips := usable(vms[0].IPs); len(ips) > 0 {
			res.IP = ips[0]
		}
		if p.Action == deploy.ActionDrift && n.ApplyDrift {
			return d.applyDrift(ctx, n, pre, vms[0], res)
		}
		return nil
	case deploy.ActionCreate:
		return d.create(ctx, n, n.Name, pre, res)
	}
	if rec := vms[0].Record(); rec.Marked() && !rec.Complete() {
		// An unfinished deploy's leftover never served: replace it, once
		// the image is ready.
		if _, err := d.prepareFor(ctx, n); err != nil {
			return err
		}
		d.log.Info("removing VM", "node", n.Name, "id", p.ID, "reason", p.Reason)
		if err := d.removeVM(ctx, n.Name, p.ID, 0); err != nil {
			return err
		}
		return d.create(ctx, n, n.Name, pre, res)
	}
	r, err := deploy.SwapIn(ctx, deploy.Swap{
		Name: n.Name, OldID: p.ID, Log: d.log,
		Clear: d.clearMarked,
		Deploy: func(ctx context.Context, name string) (deploy.Result, error) {
			var r deploy.Result
			err := d.create(ctx, n, name, pre, &r)
			return r, err
		},
		Rename: d.rename,
		Remove: func(ctx context.Context, id string) error { return d.removeVM(ctx, id, id, 0) },
	})
	res.ID, res.IP, res.SecretsLeft = r.ID, r.IP, r.SecretsLeft
	return err
}

// prepareFor makes the node's image ready and checks its disk size
// against the library's disk.
func (d *Deployer) prepareFor(ctx context.Context, n deploy.Node) (*image, error) {
	img, err := d.prepare(ctx, n)
	if err != nil {
		return nil, err
	}
	if n.DiskGiB > 0 && n.DiskGiB < img.diskGB {
		return nil, deploy.Permanent(fmt.Errorf("disk %d GiB: the image's disk is %d GiB and cannot shrink", n.DiskGiB, img.diskGB))
	}
	return img, nil
}

// create deploys the node as a new VM called name.
func (d *Deployer) create(ctx context.Context, n deploy.Node, name string, pre *preflight, res *deploy.Result) (err error) {
	img, err := d.prepareFor(ctx, n)
	if err != nil {
		return err
	}
	network, subnet, vlan := d.network(n)
	rec := pre.want
	rec.State, rec.DiskGiB = deploy.MarkPending, max(n.DiskGiB, img.diskGB)
	cv := vars{
		Name: name, TemplateID: img.templateID, CPUs: n.CPUs, MemoryMiB: n.MemoryMiB, DiskGB: rec.DiskGiB,
		HostGroup: d.cfg.HostGroup, Cloud: d.cfg.Cloud, Path: d.cfg.PlacementPath,
		Description: description(rec),
	}
	d.log.Info("creating VM", "node", n.Name, "vm", name, "template", img.template)
	if err := d.jobScript(ctx, stepCreate, cv, "create VM "+name, nil); err != nil {
		return err
	}
	vms, err := d.find(ctx, name)
	if err != nil {
		return err
	}
	if len(vms) != 1 {
		return fmt.Errorf("create VM %s: the job completed but %d VMs of that name are in SCVMM", name, len(vms))
	}
	id := vms[0].ID
	res.ID = id

	if network != "" || n.DiskGiB > img.diskGB {
		v := vars{Name: name, VMID: id, Network: network, VMSubnet: subnet, VLAN: vlan}
		if n.DiskGiB > img.diskGB {
			v.DiskGB = n.DiskGiB
		}
		if err := d.script(ctx, stepConfigure, v, "configure VM "+name, nil, nil); err != nil {
			return err
		}
	}
	if len(n.Properties) > 0 {
		keys := slices.Sorted(maps.Keys(n.Properties))
		in := d.hostInput()
		maps.Copy(in, n.Properties)
		d.log.Info("setting first-boot KVP items", "node", n.Name, "keys", len(keys), "props", deploy.Redact(n.Properties))
		v := vars{VMID: id, HostUser: d.opt.HostUser, Keys: keys}
		if err := d.script(ctx, stepKVP, v, "set first-boot KVP items of "+name, nil, in); err != nil {
			return err
		}
	}
	if n.PowerOn {
		if err := d.jobScript(ctx, stepStart, vars{VMID: id}, "start VM "+name, nil); err != nil {
			return err
		}
		if name != n.Name {
			defer d.parkReplacement(ctx, n, name, id, &err)
		}
		if n.WaitIP > 0 {
			// One deadline for the address and first boot's signal.
			deadline := time.Now().Add(n.WaitIP)
			ip, err := d.waitIP(ctx, n, id, deadline)
			if err != nil {
				return err
			}
			res.IP = ip
			if err := d.waitFirstboot(ctx, n, id, deadline); err != nil {
				return err
			}
			if err := d.removeSecrets(ctx, n, id); err != nil {
				return err
			}
		}
	}
	res.SecretsLeft = n.WaitIP == 0 && deploy.HasSecrets(n.Properties)
	rec.State = deploy.MarkComplete
	return d.script(ctx, stepMark, vars{VMID: id, Description: description(rec)}, "mark VM "+name+" complete", nil, nil)
}

// parkReplacement turns a replacement that was started but failed to
// prove itself (*err set) off: it must not run beside the VM in service,
// whose address and host name it has. It stays, marked pending, for
// inspection; the next replace removes it. *err says so.
func (d *Deployer) parkReplacement(ctx context.Context, n deploy.Node, name, id string, err *error) {
	if *err == nil || ctx.Err() != nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if serr := d.stop(cctx, name, id, time.Second); serr != nil {
		*err = fmt.Errorf("%w; and turning the unproven replacement %s off failed, it runs beside the VM in service %s: %w", *err, id, n.Name, serr)
		return
	}
	*err = fmt.Errorf("%w; the replacement %s is left turned off, marked pending, for inspection (the next replace removes it)", *err, id)
}

// hostInput is the input of a script that reaches the VM's Hyper-V host:
// the host password, never in the script's text.
func (d *Deployer) hostInput() pwsh.Input {
	return pwsh.Input{"host_password": d.opt.HostPassword}
}

// removeSecrets removes the secret first-boot items from the VM's
// host-to-guest KVP exchange once first boot signalled it is done with
// them (see the package doc). Only the key names travel in the script. A
// failure fails the deploy before the completion mark: the VM stays
// pending and the next run replaces it rather than leave a secret in its
// settings.
func (d *Deployer) removeSecrets(ctx context.Context, n deploy.Node, id string) error {
	keys := deploy.SecretKeys(n.Properties)
	if len(keys) == 0 {
		return nil
	}
	d.log.Info("removing secret KVP items", "node", n.Name, "keys", keys)
	v := vars{VMID: id, HostUser: d.opt.HostUser, Keys: keys}
	return d.script(ctx, stepKVPRemove, v, "remove secret KVP items of "+n.Name, nil, d.hostInput())
}

// usable drops link-local addresses, which a guest has before DHCP.
func usable(ips []string) []string {
	var out []string
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil && !a.IsLinkLocalUnicast() && !a.IsUnspecified() {
			out = append(out, s)
		}
	}
	return out
}

func (d *Deployer) waitIP(ctx context.Context, n deploy.Node, id string, deadline time.Time) (string, error) {
	defer deploy.Notify(n, "IP address", 2*d.cfg.PollInterval)()
	for {
		var out struct {
			IPs strs `json:"ips"`
		}
		if err := d.script(ctx, stepIP, vars{VMID: id}, "read the address of "+n.Name, &out, nil); err != nil {
			return "", err
		}
		if ips := usable(out.IPs); len(ips) > 0 {
			return ips[0], nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("VM %s reported no IPv4 address within %s (is the network right, and are the integration services running?); it is left running, marked pending, for inspection", n.Name, n.WaitIP)
		}
		if err := sleep(ctx, d.cfg.PollInterval); err != nil {
			return "", err
		}
	}
}

// firstbootDone reports whether the guest of VM id signalled first boot's
// completion.
func (d *Deployer) firstbootDone(ctx context.Context, name, id string) (bool, error) {
	var out struct {
		Items strs `json:"items"`
	}
	v := vars{VMID: id, HostUser: d.opt.HostUser}
	if err := d.script(ctx, stepFirstboot, v, "read the first-boot signal of "+name, &out, d.hostInput()); err != nil {
		return false, err
	}
	val, found, err := kvp.GuestItem(out.Items, sources.DoneKey)
	if err != nil {
		return false, fmt.Errorf("read the first-boot signal of %s: %w", name, err)
	}
	return found && val == sources.DoneValue, nil
}

// waitFirstboot polls the VM's guest-to-host KVP items until first boot
// reports sources.DoneKey=sources.DoneValue or deadline passes.
func (d *Deployer) waitFirstboot(ctx context.Context, n deploy.Node, id string, deadline time.Time) error {
	defer deploy.Notify(n, "first boot to report completion", 2*d.cfg.PollInterval)()
	for {
		done, err := d.firstbootDone(ctx, n.Name, id)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("VM %s: first boot did not report completion (%s=%s) within %s; it is left running, marked pending, for inspection: the VM's console shows why", n.Name, sources.DoneKey, sources.DoneValue, n.WaitIP)
		}
		if err := sleep(ctx, d.cfg.PollInterval); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ScriptFailure is a script that failed and said why in its JSON result.
type ScriptFailure struct {
	Step string // what the script was for
	Msg  string
}

func (e *ScriptFailure) Error() string { return e.Step + ": " + e.Msg }

// script renders and runs step with in on its standard input and decodes
// its JSON result into out.
func (d *Deployer) script(ctx context.Context, step string, v vars, what string, out any, in pwsh.Input) error {
	v.VMMServer = d.cfg.VMMServer
	s, err := render(step, v)
	if err != nil {
		return err
	}
	o, err := d.opt.Runner.Run(ctx, s, in)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	line, ok := lastJSON(o.Stdout)
	if o.ExitCode != 0 {
		var r result
		if ok && json.Unmarshal([]byte(line), &r) == nil && r.Error != "" {
			e := &ScriptFailure{Step: what, Msg: r.Error}
			if r.Kind == "config" {
				return deploy.Permanent(e)
			}
			return e
		}
		return &pwsh.ScriptError{Step: what, ExitCode: o.ExitCode, Stderr: o.Stderr}
	}
	if !ok {
		return fmt.Errorf("%s: the script printed no JSON result (%d bytes of output)", what, len(o.Stdout))
	}
	if out != nil {
		if err := json.Unmarshal([]byte(line), out); err != nil {
			return fmt.Errorf("%s: decode the script's result: %w", what, err)
		}
	}
	return nil
}

// jobScript runs a script that starts an SCVMM job and follows the job;
// job, if not nil, gets the job's ID.
func (d *Deployer) jobScript(ctx context.Context, step string, v vars, what string, job *string) error {
	var out struct {
		Job string `json:"job"`
	}
	if err := d.script(ctx, step, v, what, &out, nil); err != nil {
		return err
	}
	if job != nil {
		*job = out.Job
	}
	return d.follow(ctx, what, out.Job)
}

// JobError is an SCVMM job that failed: the job's own report.
type JobError struct {
	What     string // what the driver asked for
	ID, Name string // the job
	Status   string // Failed or Canceled
	Step     string // the step it failed at, if SCVMM says
	Problem  string // ErrorInfo.Problem
	Action   string // ErrorInfo.RecommendedAction
	Code     string // ErrorInfo.Code
}

func (e *JobError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: SCVMM job %q (%s) %s", e.What, e.Name, e.ID, strings.ToLower(e.Status))
	if e.Step != "" {
		fmt.Fprintf(&b, " at step %q", e.Step)
	}
	if e.Problem != "" {
		b.WriteString(": " + e.Problem)
	}
	if e.Code != "" {
		b.WriteString(" (" + e.Code + ")")
	}
	if e.Action != "" {
		b.WriteString(" Recommended action: " + e.Action)
	}
	return b.String()
}

type jobState struct {
	Name     string `json:"name"`
	Status   string `json:"status"`
	Progress string `json:"progress"`
	Step     string `json:"step"`
	Problem  string `json:"problem"`
	Action   string `json:"action"`
	Code     string `json:"code"`
}

// follow polls job id until it ends.
func (d *Deployer) follow(ctx context.Context, what, id string) error {
	if id == "" {
		return nil // nothing to do, e.g. the VM was already running
	}
	for {
		var j jobState
		if err := d.script(ctx, stepJob, vars{JobID: id}, what+": follow job "+id, &j, nil); err != nil {
			return err
		}
		switch j.Status {
		case "Completed", "SucceedWithInfo":
			return nil
		case "Failed", "Canceled":
			return &JobError{What: what, ID: id, Name: j.Name, Status: j.Status, Step: j.Step, Problem: j.Problem, Action: j.Action, Code: j.Code}
		}
		d.log.Debug("job running", "what", what, "job", id, "status", j.Status, "progress", j.Progress)
		if err := sleep(ctx, d.cfg.PollInterval); err != nil {
			return fmt.Errorf("%s: job %s: %w", what, id, err)
		}
	}
}

// image is one VHDX made ready in the library: copied, known to SCVMM,
// with its template.
type imageKey struct {
	path  string
	size  int64
	mtime time.Time
}

type image struct {
	mu         sync.Mutex
	hash       string
	diskID     string
	diskGB     int
	template   string
	templateID string
}

// vhdxSignature opens every VHDX file (its file type identifier).
const vhdxSignature = "vhdxfile"

// prepare makes the node's image ready once per Deployer; concurrent nodes
// of the same image wait for the first.
func (d *Deployer) prepare(ctx context.Context, n deploy.Node) (*image, error) {
	path, err := filepath.Abs(n.Image)
	if err != nil {
		return nil, deploy.Permanent(fmt.Errorf("image %s: %w", n.Image, err))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, deploy.Permanent(fmt.Errorf("image: %w", err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, deploy.Permanent(fmt.Errorf("image: %w", err))
	}
	sig := make([]byte, len(vhdxSignature))
	if _, err := io.ReadFull(f, sig); err != nil || string(sig) != vhdxSignature {
		return nil, deploy.Permanent(fmt.Errorf("image %s: not a VHDX file (expected %q at offset 0)", path, vhdxSignature))
	}
	key := imageKey{path, st.Size(), st.ModTime()}
	d.mu.Lock()
	img := d.imgs[key]
	if img == nil {
		img = &image{}
		d.imgs[key] = img
	}
	d.mu.Unlock()

	img.mu.Lock()
	defer img.mu.Unlock()
	if img.templateID != "" {
		return img, nil
	}
	if img.hash == "" {
		// The digest the pre-flight took (once per file version).
		digest, err := d.digests.Digest(ctx, path)
		if err != nil {
			return nil, fmt.Errorf("hash image %s: %w", path, err)
		}
		img.hash = strings.TrimPrefix(digest, "sha256:")
	}
	base := d.cfg.TemplatePrefix + "-" + img.hash[:12]
	_, share, _ := splitUNC(d.cfg.LibraryShare)
	sharePath := share + `\` + base + ".vhdx"

	var disk struct {
		ID   string `json:"id"`
		Name string `json:"name"`
		Size int64  `json:"size"`
	}
	dv := vars{SharePath: sharePath}
	if err := d.script(ctx, stepDisk, dv, "find "+sharePath+" in the library", &disk, nil); err != nil {
		return nil, err
	}
	if disk.ID == "" {
		d.log.Info("copying VHDX to the library", "image", path, "to", sharePath, "bytes", st.Size())
		var progress func(done, total int64)
		if n.Progress != nil {
			progress = func(done, total int64) { n.Progress("upload "+filepath.Base(path), done, total) }
		}
		if err := d.opt.Copier.Copy(ctx, path, sharePath, progress); err != nil {
			return nil, fmt.Errorf("copy %s to %s: %w", path, sharePath, err)
		}
		rv := vars{SharePath: sharePath, LibraryServer: d.cfg.LibraryServer}
		if err := d.jobScript(ctx, stepRefresh, rv, "refresh the library share of "+sharePath, nil); err != nil {
			return nil, err
		}
		if err := d.script(ctx, stepDisk, dv, "find "+sharePath+" in the library", &disk, nil); err != nil {
			return nil, err
		}
		if disk.ID == "" {
			return nil, fmt.Errorf("%s was copied and the share refreshed, but SCVMM lists no virtual hard disk there", sharePath)
		}
	}
	img.diskID = disk.ID
	img.diskGB = int(math.Ceil(float64(disk.Size) / (1 << 30)))

	var tmpl struct {
		ID      string `json:"id"`
		Created bool   `json:"created"`
	}
	tv := vars{
		Template: base, Profile: base + "-hw", DiskID: disk.ID, CPUs: d.cfg.CPUs, MemoryMiB: d.cfg.MemoryMiB,
		SecureBootTemplate: SecureBootTemplate, OperatingSystem: d.cfg.OperatingSystem,
	}
	if err := d.script(ctx, stepTemplate, tv, "template "+base, &tmpl, nil); err != nil {
		return nil, err
	}
	if tmpl.ID == "" {
		return nil, fmt.Errorf("template %s: the script returned no template ID", base)
	}
	d.log.Info("template ready", "template", base, "created", tmpl.Created)
	img.template, img.templateID = base, tmpl.ID
	return img, nil
}
