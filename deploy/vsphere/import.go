package vsphere

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/nfc"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/ovf/importer"
	"github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/ova"
)

// Deploy implements deploy.Deployer.
func (d *Deployer) Deploy(ctx context.Context, n deploy.Node) (deploy.Result, error) {
	res, err := deploy.Timed("deploy", n.Name, d.Target(), func(res *deploy.Result) error { return d.deploy(ctx, n, res) })
	if err != nil {
		err = scrub(err, n.Properties)
		res.Err = err
		return res, err
	}
	// The caller reports the result (the command's line, the fleet's
	// table and log); this is for debugging only.
	d.log.Debug("deployed", "node", n.Name, "action", res.Action, "vm", res.ID, "ip", res.IP, "elapsed", res.Elapsed.Round(time.Millisecond))
	return res, nil
}

// preflight is what the checks before any change found out.
type preflight struct {
	rep      *ova.Report
	declared []ova.VMProperty
	want     deploy.Record // what a plan compares with the VM's record
	record   deploy.Record // what a deploy records
}

// maxName is the longest VM name vSphere takes.
const maxName = 80

// preflight runs every check that needs no change on the target: the
// node, its answers, the OVA (inspected once per file version), the
// properties it declares, the disk size, the network map's OVF networks.
// Its errors are deploy.Permanent: only changed input helps.
func (d *Deployer) preflight(ctx context.Context, n deploy.Node) (*preflight, error) {
	if err := n.Validate(); err != nil {
		return nil, deploy.Permanent(fmt.Errorf("node %s: %w", n.Name, err))
	}
	if len(deploy.TempName(n.Name)) > maxName {
		return nil, deploy.Permanent(fmt.Errorf("node %s: name: at most %d characters (a replacement is deployed as %s)", n.Name, maxName-len(deploy.TempName("")), deploy.TempName(n.Name)))
	}
	ins, err := d.inspected.inspect(ctx, n.Image)
	if err != nil {
		return nil, err
	}
	rep := ins.rep
	declared, err := checkProperties(rep, n.Properties)
	if err != nil {
		return nil, deploy.Permanent(err)
	}
	if len(rep.VM.Disks) != 1 {
		return nil, deploy.Permanent(fmt.Errorf("OVA %s: %d disks, the appliance has exactly one", n.Image, len(rep.VM.Disks)))
	}
	capacity := rep.VM.Disks[0].Capacity
	if want := int64(n.DiskGiB) << 30; want > 0 && want < capacity {
		return nil, deploy.Permanent(fmt.Errorf("disk size %d GiB: smaller than the image's %d bytes; disks only grow", n.DiskGiB, capacity))
	}
	for _, src := range slices.Sorted(maps.Keys(d.cfg.NetworkMap)) {
		if !slices.Contains(ins.networks, src) {
			return nil, deploy.Permanent(fmt.Errorf("network_map[%s]: the OVA %s has no network %q (it has: %s)", src, n.Image, src, strings.Join(ins.networks, ", ")))
		}
	}
	digest, err := d.digests.Digest(ctx, n.Image)
	if err != nil {
		return nil, deploy.Permanent(err)
	}
	want := deploy.Record{
		State: deploy.MarkPending, Image: digest, Version: rep.VM.Version,
		CPUs: n.CPUs, MemoryMiB: n.MemoryMiB, DiskGiB: n.DiskGiB, // 0 (the image's size) is not compared
		Network: d.networkName(n), Answers: deploy.AnswersDigest(n.Properties), Cluster: n.Cluster,
		Control: n.Properties["ksmg.cluster.control_address"],
	}
	if want.CPUs == 0 {
		want.CPUs = int(rep.VM.CPUs)
	}
	if want.MemoryMiB == 0 {
		want.MemoryMiB = int(rep.VM.MemoryMiB)
	}
	rec := want
	rec.DiskGiB = max(n.DiskGiB, int((capacity+1<<30-1)>>30))
	return &preflight{rep: rep, declared: declared, want: want, record: rec}, nil
}

// networkName is the port group the appliance's NIC is connected to: the
// node's, the network map's for the OVF network, the target's default;
// "" lets vSphere choose.
func (d *Deployer) networkName(n deploy.Node) string {
	if n.Network != "" {
		return n.Network
	}
	if v := d.cfg.NetworkMap[ova.NetworkName]; v != "" {
		return v
	}
	return d.cfg.Network
}

func (d *Deployer) deploy(ctx context.Context, n deploy.Node, res *deploy.Result) error {
	pre, err := d.preflight(ctx, n)
	if err != nil {
		return err
	}
	defer d.lockName(n.Name)()
	p, old, err := d.plan(ctx, n, pre)
	if err != nil {
		return err
	}
	res.Action, res.ID, res.Drift = p.Action, p.ID, p.Drift
	if old != nil && old.aside {
		if err := d.recoverAside(ctx, n.Name, old); err != nil {
			return err
		}
	}
	switch p.Action {
	case deploy.ActionUnchanged, deploy.ActionOutdated:
		res.IP = old.ip
		return nil
	case deploy.ActionDrift:
		res.IP = old.ip
		if !n.ApplyDrift {
			return nil
		}
		return d.applyDrift(ctx, n, pre, old, res)
	case deploy.ActionCreate:
		return d.create(ctx, n, n.Name, pre, res)
	}
	if old.rec.Marked() && !old.rec.Complete() {
		// An unfinished deploy's leftover never served: replace it.
		d.log.Info("replacing the leftover of an unfinished deploy", "node", n.Name, "vm", p.ID, "reason", p.Reason)
		if err := d.removeVM(ctx, old, 0); err != nil {
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
		Remove: d.removeByID,
	})
	res.ID, res.IP, res.SecretsLeft = r.ID, r.IP, r.SecretsLeft
	return err
}

// create deploys the node as a new VM called name (the node's name, or
// deploy.TempName during a replace).
func (d *Deployer) create(ctx context.Context, n deploy.Node, name string, pre *preflight, res *deploy.Result) (err error) {
	ref, err := d.importOVA(ctx, n, name, pre)
	if err != nil {
		d.cleanupByName(ctx, name)
		return err
	}
	vm := object.NewVirtualMachine(d.c, ref)
	res.ID = ref.Value
	done, poweredOn := false, false
	defer func() {
		switch {
		case done:
		case poweredOn && ctx.Err() == nil && name != n.Name:
			// An unproven replacement must not run beside the VM in
			// service: it has its address and host name. Its disk is
			// kept for inspection; the next replace removes it.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			if perr := d.powerOff(cctx, vm); perr != nil {
				err = fmt.Errorf("%w; and turning the unproven replacement %s off failed, it runs beside the VM in service: %w", err, ref.Value, perr)
				return
			}
			err = fmt.Errorf("%w; the replacement %s is left turned off, marked pending, for inspection (the next replace removes it)", err, ref.Value)
		case poweredOn && ctx.Err() == nil:
			// The guest ran: its console tells why it did not report.
			err = fmt.Errorf("%w; the VM %s is left running, marked pending, for inspection (the next run replaces it)", err, ref.Value)
		default:
			d.cleanup(ctx, vm)
		}
	}()
	if err := d.checkHardware(ctx, vm); err != nil {
		return err
	}
	if err := d.configure(ctx, vm, n, pre); err != nil {
		return err
	}
	if n.PowerOn {
		t, err := vm.PowerOn(ctx)
		if err == nil {
			err = t.Wait(ctx)
		}
		if err != nil {
			return fmt.Errorf("power on %s: %w", ref.Value, err)
		}
		poweredOn = true
	}
	switch {
	case n.WaitIP > 0:
		deadline := time.Now().Add(n.WaitIP)
		ip, err := d.waitIP(ctx, vm, n, deadline)
		if err != nil {
			return err
		}
		res.IP = ip
		if err := d.waitFirstboot(ctx, vm, n, deadline); err != nil {
			return err
		}
		if err := d.clearSecrets(ctx, vm); err != nil {
			return fmt.Errorf("clear the secret answers of %s: %w", ref.Value, err)
		}
	case deploy.HasSecrets(n.Properties):
		res.SecretsLeft = true
	}
	if err := reconfigure(ctx, vm, types.VirtualMachineConfigSpec{ExtraConfig: []types.BaseOptionValue{
		&types.OptionValue{Key: deploy.MarkKey, Value: deploy.MarkComplete},
	}}); err != nil {
		return fmt.Errorf("set completion mark on %s: %w", ref.Value, err)
	}
	done = true
	return nil
}

// cleanup destroys a VM this attempt created; it runs even when ctx was
// cancelled (an interrupted run), bounded in time.
func (d *Deployer) cleanup(ctx context.Context, vm *object.VirtualMachine) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := d.destroy(cctx, vm); err != nil {
		d.log.Warn("could not remove the unfinished VM; the next run replaces it", "vm", vm.Reference().Value, "err", err)
	}
}

// cleanupByName removes a VM of name that carries the pending mark: an
// import that failed after ImportVApp created the VM.
func (d *Deployer) cleanupByName(ctx context.Context, name string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	e, err := d.find(cctx, name)
	if err != nil || e == nil || e.rec.State != PendingMark {
		return
	}
	if err := d.destroy(cctx, e.vm); err != nil {
		d.log.Warn("could not remove the unfinished VM; the next run replaces it", "vm", e.vm.Reference().Value, "err", err)
	}
}

func reconfigure(ctx context.Context, vm *object.VirtualMachine, spec types.VirtualMachineConfigSpec) error {
	t, err := vm.Reconfigure(ctx, spec)
	if err != nil {
		return err
	}
	return t.Wait(ctx)
}

// checkProperties rejects keys the OVF does not declare and returns the
// declared properties.
func checkProperties(rep *ova.Report, props map[string]string) ([]ova.VMProperty, error) {
	known := map[string]bool{}
	for _, p := range rep.VM.Properties {
		known[p.Key] = true
	}
	var unknown []string
	for _, k := range slices.Sorted(maps.Keys(props)) {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		keys := make([]string, 0, len(known))
		for _, p := range rep.VM.Properties {
			keys = append(keys, p.Key)
		}
		return nil, fmt.Errorf("properties %s: not declared by the OVA %s (it declares %s)", strings.Join(unknown, ", "), rep.Path, strings.Join(keys, ", "))
	}
	return rep.VM.Properties, nil
}

// importOVA creates the VM called name, marked pending with the record of
// what is deployed, and uploads its disk.
func (d *Deployer) importOVA(ctx context.Context, n deploy.Node, name string, pre *preflight) (types.ManagedObjectReference, error) {
	var none types.ManagedObjectReference
	rep := pre.rep
	arch := &importer.TapeArchive{Path: n.Image, Opener: importer.Opener{Client: d.c}}
	ovfName := rep.Members[0].Name
	desc, err := importer.ReadOvf(ovfName, arch)
	if err != nil {
		return none, fmt.Errorf("read %s from %s: %w", ovfName, n.Image, err)
	}
	if got := sha256.Sum256(desc); hex.EncodeToString(got[:]) != rep.Members[0].SHA256 {
		return none, deploy.Permanent(fmt.Errorf("OVA %s: %s changed since it was inspected", n.Image, ovfName))
	}
	nmap, err := d.networkMapping(ctx, n)
	if err != nil {
		return none, err
	}
	// A standalone host keeps no vApp options: the answers travel in the
	// OVF environment the driver writes, and nowhere else.
	var kv []types.KeyValue
	if !d.esx {
		for _, k := range slices.Sorted(maps.Keys(n.Properties)) {
			kv = append(kv, types.KeyValue{Key: k, Value: n.Properties[k]})
		}
	}
	cisp := types.OvfCreateImportSpecParams{
		EntityName:             name,
		DiskProvisioning:       d.cfg.DiskProvisioning,
		OvfManagerCommonParams: types.OvfManagerCommonParams{Locale: "US"},
		PropertyMapping:        kv,
		NetworkMapping:         nmap,
	}
	spec, err := ovf.NewManager(d.c).CreateImportSpec(ctx, string(desc), d.pool, d.ds, &cisp)
	if err != nil {
		return none, fmt.Errorf("create import spec: %w", err)
	}
	if len(spec.Error) > 0 {
		return none, deploy.Permanent(fmt.Errorf("create import spec: %w", &task.Error{LocalizedMethodFault: &spec.Error[0]}))
	}
	for _, w := range spec.Warning {
		d.log.Warn("import spec warning", "node", n.Name, "warning", scrub(errors.New(w.LocalizedMessage), n.Properties).Error())
	}
	is, ok := spec.ImportSpec.(*types.VirtualMachineImportSpec)
	if !ok {
		return none, deploy.Permanent(fmt.Errorf("OVA %s: import spec is %T, expected a single VM", n.Image, spec.ImportSpec))
	}
	if err := d.resolveHardwareVersion(ctx, desc, &is.ConfigSpec); err != nil {
		return none, err
	}
	d.adjust(&is.ConfigSpec, n, pre.record)

	lease, err := d.pool.ImportVApp(ctx, is, d.folder, d.host)
	if err != nil {
		return none, fmt.Errorf("import VM: %w", err)
	}
	info, err := lease.Wait(ctx, spec.FileItem)
	if err != nil {
		_ = lease.Abort(context.WithoutCancel(ctx), nil)
		return none, fmt.Errorf("import VM: lease: %w", err)
	}
	if err := d.upload(ctx, lease, info, arch, rep, n); err != nil {
		_ = lease.Abort(context.WithoutCancel(ctx), &types.LocalizedMethodFault{Fault: &types.FileFault{}, LocalizedMessage: err.Error()})
		return info.Entity, err
	}
	if err := lease.Complete(ctx); err != nil {
		return info.Entity, fmt.Errorf("import VM: complete lease: %w", err)
	}
	return info.Entity, nil
}

// adjust sets what the import spec must carry from the start: the pending
// mark with the record, the disk provisioning on the backing (vSphere
// derives it from the import parameter, vcsim does not), CPU and memory
// overrides.
func (d *Deployer) adjust(cs *types.VirtualMachineConfigSpec, n deploy.Node, rec deploy.Record) {
	rec.State = PendingMark
	for _, kv := range rec.Pairs() {
		cs.ExtraConfig = append(cs.ExtraConfig, &types.OptionValue{Key: kv[0], Value: kv[1]})
	}
	if n.CPUs > 0 {
		cs.NumCPUs = int32(n.CPUs)
	}
	if n.MemoryMiB > 0 {
		cs.MemoryMB = int64(n.MemoryMiB)
	}
	for _, dc := range cs.DeviceChange {
		disk, ok := dc.GetVirtualDeviceConfigSpec().Device.(*types.VirtualDisk)
		if !ok {
			continue
		}
		b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok {
			continue
		}
		thin := d.cfg.DiskProvisioning == Thin
		eager := d.cfg.DiskProvisioning == EagerZeroedThick
		b.ThinProvisioned = &thin
		b.EagerlyScrub = &eager
	}
}

// networkMapping maps the OVF's networks: the node's network, else the
// configured map entry, else the target's default network; nothing
// configured lets vSphere choose.
func (d *Deployer) networkMapping(ctx context.Context, n deploy.Node) ([]types.OvfNetworkMapping, error) {
	targets := maps.Clone(d.cfg.NetworkMap)
	if targets == nil {
		targets = map[string]string{}
	}
	if n.Network != "" {
		targets[ova.NetworkName] = n.Network
	} else if _, ok := targets[ova.NetworkName]; !ok && d.cfg.Network != "" {
		targets[ova.NetworkName] = d.cfg.Network
	}
	var out []types.OvfNetworkMapping
	for _, name := range slices.Sorted(maps.Keys(targets)) {
		ref, err := d.network(ctx, targets[name])
		if err != nil {
			return nil, deploy.Permanent(fmt.Errorf("network %q (for OVF network %q): %w", targets[name], name, err))
		}
		out = append(out, types.OvfNetworkMapping{Name: name, Network: ref})
	}
	return out, nil
}

// upload streams every file item of the lease, reporting progress to the
// node and hashing the bytes against the manifest digest Inspect checked.
func (d *Deployer) upload(ctx context.Context, lease *nfc.Lease, info *nfc.LeaseInfo, arch importer.Archive, rep *ova.Report, n deploy.Node) error {
	sums := map[string]string{}
	for _, m := range rep.Members {
		sums[m.Name] = m.SHA256
	}
	sizes := map[string]int64{}
	for _, m := range rep.Members {
		sizes[m.Name] = m.Size
	}
	var total int64
	for _, item := range info.Items {
		total += sizes[filepath.Base(item.Path)]
	}
	u := lease.StartUpdater(ctx, info)
	defer u.Done()
	pr := &progress{fn: n.Progress, total: total}
	for _, item := range info.Items {
		want, ok := sums[filepath.Base(item.Path)]
		if !ok {
			return deploy.Permanent(fmt.Errorf("OVA %s: %s is not in the manifest", n.Image, item.Path))
		}
		f, size, err := arch.Open(item.Path)
		if err != nil {
			return fmt.Errorf("open %s in %s: %w", item.Path, n.Image, err)
		}
		h := sha256.New()
		r := &countingReader{r: io.TeeReader(f, h), p: pr}
		err = lease.Upload(ctx, item, r, soap.Upload{ContentLength: size})
		f.Close()
		if err != nil {
			return fmt.Errorf("upload %s: %w", item.Path, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			return deploy.Permanent(fmt.Errorf("OVA %s: uploaded %s has SHA-256 %s, the manifest says %s (the file changed after inspection)", n.Image, item.Path, got, want))
		}
	}
	pr.finish()
	return nil
}

// progress reports upload bytes to the node's callback, at most every MiB.
type progress struct {
	fn          func(stage string, done, total int64)
	total       int64
	mu          sync.Mutex
	done, shown int64
}

func (p *progress) add(n int) {
	if p.fn == nil {
		return
	}
	p.mu.Lock()
	p.done += int64(n)
	show := p.done-p.shown >= 1<<20
	if show {
		p.shown = p.done
	}
	done := p.done
	p.mu.Unlock()
	if show {
		p.fn("upload", done, p.total)
	}
}

func (p *progress) finish() {
	if p.fn == nil {
		return
	}
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	p.fn("upload", done, p.total)
}

type countingReader struct {
	r io.Reader
	p *progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.add(n)
	return n, err
}

// configure grows the disk and, on standalone ESXi, writes the OVF
// environment, in one reconfigure.
func (d *Deployer) configure(ctx context.Context, vm *object.VirtualMachine, n deploy.Node, pre *preflight) error {
	var spec types.VirtualMachineConfigSpec
	if n.DiskGiB > 0 {
		devices, err := vm.Device(ctx)
		if err != nil {
			return fmt.Errorf("read devices of %s: %w", vm.Reference().Value, err)
		}
		disks := devices.SelectByType((*types.VirtualDisk)(nil))
		if len(disks) != 1 {
			return fmt.Errorf("VM %s has %d disks after import, expected 1", vm.Reference().Value, len(disks))
		}
		disk := disks[0].(*types.VirtualDisk)
		want := int64(n.DiskGiB) << 30
		if want > disk.CapacityInKB<<10 && want > disk.CapacityInBytes {
			disk.CapacityInKB = want >> 10
			disk.CapacityInBytes = want
			spec.DeviceChange = append(spec.DeviceChange, &types.VirtualDeviceConfigSpec{
				Operation: types.VirtualDeviceConfigSpecOperationEdit,
				Device:    disk,
			})
		}
	}
	if d.esx {
		about := d.c.ServiceContent.About
		env := OVFEnv(vm.Reference().Value, about, pre.declared, n.Properties)
		spec.ExtraConfig = append(spec.ExtraConfig, &types.OptionValue{Key: "guestinfo.ovfEnv", Value: env})
	}
	if len(spec.DeviceChange) == 0 && len(spec.ExtraConfig) == 0 {
		return nil
	}
	if err := reconfigure(ctx, vm, spec); err != nil {
		return fmt.Errorf("reconfigure %s (disk size, OVF environment): %w", vm.Reference().Value, err)
	}
	return nil
}

// inspectCache holds ova.Inspect's reports per file version: a fleet
// deploys one OVA many times, and Inspect reads and decompresses all of
// it. The upload hashes the bytes again, so a file changed after
// inspection is caught. Each Deployer has its own.
type inspectCache struct {
	mu sync.Mutex
	m  map[inspectKey]*inspectEntry
}

type inspectKey struct {
	path  string
	size  int64
	mtime int64
}

type inspectEntry struct {
	mu  sync.Mutex
	ins *inspection
}

// inspection is what the cache holds of one OVA.
type inspection struct {
	rep      *ova.Report
	networks []string // the OVF's network names
}

func (c *inspectCache) inspect(ctx context.Context, p string) (*inspection, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return nil, deploy.Permanent(fmt.Errorf("OVA %s: %w", p, err))
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, deploy.Permanent(fmt.Errorf("OVA: %w", err))
	}
	key := inspectKey{abs, st.Size(), st.ModTime().UnixNano()}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[inspectKey]*inspectEntry{}
	}
	e := c.m[key]
	if e == nil {
		e = &inspectEntry{}
		c.m[key] = e
	}
	c.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ins != nil {
		return e.ins, nil
	}
	rep, err := ova.Inspect(ctx, abs)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, deploy.Permanent(fmt.Errorf("OVA %s failed verification, nothing was deployed: %w", p, err))
	}
	if len(rep.Members) == 0 || !strings.HasSuffix(rep.Members[0].Name, ".ovf") {
		return nil, deploy.Permanent(fmt.Errorf("OVA %s: first member is not the OVF descriptor", p))
	}
	desc, err := importer.ReadOvf(rep.Members[0].Name, &importer.TapeArchive{Path: abs})
	if err != nil {
		return nil, deploy.Permanent(fmt.Errorf("OVA %s: read the descriptor: %w", p, err))
	}
	env, err := ovf.Unmarshal(bytes.NewReader(desc))
	if err != nil {
		return nil, deploy.Permanent(fmt.Errorf("OVA %s: descriptor: %w", p, err))
	}
	ins := &inspection{rep: rep}
	if env.Network != nil {
		for _, nw := range env.Network.Networks {
			ins.networks = append(ins.networks, nw.Name)
		}
	}
	e.ins = ins
	return ins, nil
}

// scrub replaces secret property values in err's message; the wrapped
// error stays reachable for errors.Is/As (deploy.IsPermanent).
func scrub(err error, props map[string]string) error {
	msg := err.Error()
	for k, v := range props {
		if answers.IsSecret(k) && v != "" {
			msg = strings.ReplaceAll(msg, v, "<secret>")
		}
	}
	if msg == err.Error() {
		return err
	}
	return &scrubbed{msg: msg, err: err}
}

type scrubbed struct {
	msg string
	err error
}

func (s *scrubbed) Error() string { return s.msg }
func (s *scrubbed) Unwrap() error { return s.err }
