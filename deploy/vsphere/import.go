package vsphere

import (
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
	start := time.Now()
	res := deploy.Result{Node: n.Name, Target: d.Target(), Attempts: 1}
	ip, id, action, err := d.deploy(ctx, n)
	res.Action, res.ID, res.IP = action, id, ip
	res.Elapsed = time.Since(start)
	if err != nil {
		err = scrub(fmt.Errorf("deploy %s to %s: %w", n.Name, d.Target(), err), n.Properties)
		res.Err = err
		d.log.Error("deploy failed", "node", n.Name, "err", err)
		return res, err
	}
	d.log.Info("deployed", "node", n.Name, "action", action, "vm", id, "ip", ip, "elapsed", res.Elapsed.Round(time.Millisecond))
	return res, nil
}

func (d *Deployer) deploy(ctx context.Context, n deploy.Node) (ip, id string, action deploy.Action, err error) {
	if err := n.Validate(); err != nil {
		return "", "", "", deploy.Permanent(fmt.Errorf("node: %w", err))
	}
	if n.WaitIP > 0 && !n.PowerOn {
		return "", "", "", deploy.Permanent(errors.New("node: waiting for an IP address needs power-on"))
	}
	// Everything about the OVA is checked before the target is touched.
	rep, err := d.inspected.inspect(ctx, n.Image)
	if err != nil {
		return "", "", "", err
	}
	declared, err := checkProperties(rep, n.Properties)
	if err != nil {
		return "", "", "", deploy.Permanent(err)
	}
	if len(rep.VM.Disks) != 1 {
		return "", "", "", deploy.Permanent(fmt.Errorf("OVA %s: %d disks, the appliance has exactly one", n.Image, len(rep.VM.Disks)))
	}
	want := int64(n.DiskGiB) << 30
	if have := rep.VM.Disks[0].Capacity; want > 0 && want < have {
		return "", "", "", deploy.Permanent(fmt.Errorf("disk size %d GiB: smaller than the image's %d bytes; disks only grow", n.DiskGiB, have))
	}

	defer d.lockName(n.Name)()
	p, old, err := d.plan(ctx, n)
	if err != nil {
		return "", "", "", err
	}
	if p.Action == deploy.ActionUnchanged {
		return old.ip, p.ID, p.Action, nil
	}
	if old != nil {
		d.log.Info("replacing VM", "node", n.Name, "vm", p.ID, "reason", p.Reason)
		if err := d.destroy(ctx, old.vm); err != nil {
			return "", p.ID, p.Action, err
		}
	}

	ref, err := d.importOVA(ctx, n, rep)
	if err != nil {
		d.cleanupByName(ctx, n.Name)
		return "", "", p.Action, err
	}
	vm := object.NewVirtualMachine(d.c, ref)
	id = ref.Value
	done := false
	defer func() {
		if !done {
			d.cleanup(ctx, vm)
		}
	}()
	if err := d.configure(ctx, vm, n, rep, declared); err != nil {
		return "", id, p.Action, err
	}
	if n.PowerOn {
		t, err := vm.PowerOn(ctx)
		if err == nil {
			err = t.Wait(ctx)
		}
		if err != nil {
			return "", id, p.Action, fmt.Errorf("power on %s: %w", id, err)
		}
	}
	if n.WaitIP > 0 {
		wctx, cancel := context.WithTimeout(ctx, n.WaitIP)
		ip, err = vm.WaitForIP(wctx, true)
		cancel()
		if err != nil {
			if ctx.Err() == nil && wctx.Err() != nil {
				err = fmt.Errorf("no IPv4 address reported by the guest within %s (VMware Tools running?)", n.WaitIP)
			}
			return "", id, p.Action, fmt.Errorf("wait for IP of %s: %w", id, err)
		}
	}
	if err := reconfigure(ctx, vm, types.VirtualMachineConfigSpec{ExtraConfig: []types.BaseOptionValue{
		&types.OptionValue{Key: deploy.MarkKey, Value: deploy.MarkComplete},
	}}); err != nil {
		return ip, id, p.Action, fmt.Errorf("set completion mark on %s: %w", id, err)
	}
	done = true
	return ip, id, p.Action, nil
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
	if err != nil || e == nil || e.mark != PendingMark {
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

// importOVA creates the VM (marked pending) and uploads its disk.
func (d *Deployer) importOVA(ctx context.Context, n deploy.Node, rep *ova.Report) (types.ManagedObjectReference, error) {
	var none types.ManagedObjectReference
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
	var kv []types.KeyValue
	for _, k := range slices.Sorted(maps.Keys(n.Properties)) {
		kv = append(kv, types.KeyValue{Key: k, Value: n.Properties[k]})
	}
	cisp := types.OvfCreateImportSpecParams{
		EntityName:             n.Name,
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
	d.adjust(&is.ConfigSpec, n)

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
// mark, the disk provisioning on the backing (vSphere derives it from the
// import parameter, vcsim does not), CPU and memory overrides.
func (d *Deployer) adjust(cs *types.VirtualMachineConfigSpec, n deploy.Node) {
	cs.ExtraConfig = append(cs.ExtraConfig, &types.OptionValue{Key: deploy.MarkKey, Value: PendingMark})
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
func (d *Deployer) configure(ctx context.Context, vm *object.VirtualMachine, n deploy.Node, rep *ova.Report, declared []ova.VMProperty) error {
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
		env := OVFEnv(vm.Reference().Value, about, declared, n.Properties)
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
	rep *ova.Report
}

func (c *inspectCache) inspect(ctx context.Context, p string) (*ova.Report, error) {
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
	if e.rep != nil {
		return e.rep, nil
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
	e.rep = rep
	return rep, nil
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
