// Package vsphere deploys the appliance OVA to a vCenter or a standalone
// ESXi host. It is registered as deploy driver "vsphere".
//
// It is built on govmomi v0.56.0: the OVF manager's CreateImportSpec, the
// resource pool's ImportVApp and the NFC lease upload, as in
// govmomi/ovf/importer (what `govc import.ova` runs). The importer's Import
// is not called as a whole because the driver must act between its steps:
// set thin/thick backing and CPU/memory and a "pending" mark in the import
// spec, report upload progress in bytes, and hash the uploaded bytes
// against the manifest (vSphere's own manifest check needs the manifest
// uploaded as SHA-1 and vcsim offers none).
//
// A deploy, in order: inspect the OVA with ova.Inspect (manifest, descriptor
// and every disk grain; nothing is created on the target if it fails);
// check the node's properties against the ones the OVF declares; import
// with the VM marked ksmg.deploy=pending; upload, hashing every byte
// against the manifest again (the file may change after inspection); grow
// the disk; on a standalone ESXi host, which keeps no vApp options and
// delivers no OVF environment, write the environment into
// guestinfo.ovfEnv; power on; wait for the guest's IPv4 address; and only
// then set the completion mark ksmg.deploy=deploy.MarkComplete. A failure
// after the VM exists destroys it, so a retry starts clean.
//
// Plan follows the deploy package's idempotence contract with one
// safety addition: a VM of the node's name marked "pending" is the
// leftover of an interrupted run and is replaced, but a VM that carries no
// ksmg.deploy key at all was not made by ksmg and is never destroyed
// unless Replace is set (it could be someone's production VM).
package vsphere

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ksmg-appliance/ksmg/deploy"
)

// Kind is the driver's name in inventories.
const Kind = "vsphere"

// PendingMark is the value of deploy.MarkKey on a VM whose deploy has not
// finished; it is set in the import spec, so every VM this driver creates
// carries the key from its first moment.
const PendingMark = deploy.MarkPending

func init() { deploy.Register(Kind, opener) }

func opener(ctx context.Context, name string, decode func(v any) error) (deploy.Deployer, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		return nil, deploy.Permanent(fmt.Errorf("vsphere target %s: %w", name, err))
	}
	return Open(ctx, name, cfg)
}

// Deployer deploys nodes to one vCenter or ESXi host. It is safe for
// concurrent use; deploys of the same VM name are serialised.
type Deployer struct {
	name   string
	cfg    Config
	c      *vim25.Client
	esx    bool // standalone ESXi: inject the OVF environment
	logout func(context.Context) error
	log    *slog.Logger

	dc     *object.Datacenter
	folder *object.Folder
	pool   *object.ResourcePool
	host   *object.HostSystem // nil: vCenter chooses (DRS) or the pool's only host
	ds     *object.Datastore

	inspected inspectCache

	mu    sync.Mutex
	names map[string]*nameLock
	nets  map[string]types.ManagedObjectReference
}

type nameLock struct {
	mu   sync.Mutex
	refs int
}

// Open logs in to the target of cfg (defaults from the environment as govc
// has them) and resolves its inventory. Configuration and login errors are
// deploy.Permanent.
func Open(ctx context.Context, name string, cfg Config) (*Deployer, error) {
	return open(ctx, name, cfg, os.Getenv)
}

func open(ctx context.Context, name string, cfg Config, getenv func(string) string) (*Deployer, error) {
	cfg.applyEnv(getenv)
	if err := cfg.Validate(); err != nil {
		return nil, deploy.Permanent(fmt.Errorf("vsphere target %s: %w", name, err))
	}
	u, err := soap.ParseURL(cfg.URL)
	if err != nil {
		return nil, deploy.Permanent(fmt.Errorf("vsphere target %s: url: %w", name, err))
	}
	user, err := cfg.credentials(u, getenv)
	if err != nil {
		return nil, deploy.Permanent(fmt.Errorf("vsphere target %s: %w", name, err))
	}
	u.User = nil
	sc := soap.NewClient(u, cfg.Insecure)
	if cfg.Thumbprint != "" {
		sc.SetThumbprint(u.Host, cfg.Thumbprint)
	}
	c, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("vsphere target %s: connect to %s: %w", name, u.Host, err)
	}
	sm := session.NewManager(c)
	if err := sm.Login(ctx, user); err != nil {
		if isFault[*types.InvalidLogin](err) {
			err = deploy.Permanent(err)
		}
		return nil, fmt.Errorf("vsphere target %s: log in to %s as %s: %w", name, u.Host, user.Username(), err)
	}
	d, err := New(ctx, name, c, cfg)
	if err != nil {
		_ = sm.Logout(context.WithoutCancel(ctx))
		return nil, err
	}
	d.logout = sm.Logout
	return d, nil
}

// New makes a Deployer on an existing, logged-in client; cfg's connection
// fields are ignored. Close does not log the client out.
func New(ctx context.Context, name string, c *vim25.Client, cfg Config) (*Deployer, error) {
	if cfg.DiskProvisioning == "" {
		cfg.DiskProvisioning = Thin
	}
	conn := cfg
	conn.URL, conn.Insecure, conn.urlFromEnv = "https://unused/sdk", false, false
	if err := conn.Validate(); err != nil {
		return nil, deploy.Permanent(fmt.Errorf("vsphere target %s: %w", name, err))
	}
	d := &Deployer{
		name: name, cfg: cfg, c: c, esx: !c.IsVC(),
		log:   slog.Default().With("target", Kind+":"+name),
		names: map[string]*nameLock{}, nets: map[string]types.ManagedObjectReference{},
	}
	if err := d.resolve(ctx); err != nil {
		return nil, fmt.Errorf("vsphere target %s: %w", name, err)
	}
	return d, nil
}

// resolve finds the configured inventory objects once; a missing one is a
// permanent error naming the configuration key.
func (d *Deployer) resolve(ctx context.Context) error {
	cfg := d.cfg
	f := find.NewFinder(d.c)
	perm := func(key, val string, err error) error {
		if val == "" {
			return deploy.Permanent(fmt.Errorf("%s: not set and no single default: %w", key, err))
		}
		return deploy.Permanent(fmt.Errorf("%s %q: %w", key, val, err))
	}
	var err error
	if cfg.Datacenter != "" {
		d.dc, err = f.Datacenter(ctx, cfg.Datacenter)
	} else {
		d.dc, err = f.DefaultDatacenter(ctx)
	}
	if err != nil {
		return perm("datacenter", cfg.Datacenter, err)
	}
	f.SetDatacenter(d.dc)

	if cfg.Folder != "" {
		if d.folder, err = f.Folder(ctx, cfg.Folder); err != nil {
			return perm("folder", cfg.Folder, err)
		}
	} else {
		fs, err := d.dc.Folders(ctx)
		if err != nil {
			return fmt.Errorf("datacenter folders: %w", err)
		}
		d.folder = fs.VmFolder
	}
	if cfg.Host != "" {
		if d.host, err = f.HostSystem(ctx, cfg.Host); err != nil {
			return perm("host", cfg.Host, err)
		}
	}
	switch {
	case cfg.ResourcePool != "":
		if d.pool, err = f.ResourcePool(ctx, cfg.ResourcePool); err != nil {
			return perm("resource_pool", cfg.ResourcePool, err)
		}
	case cfg.Cluster != "":
		cl, err := f.ClusterComputeResource(ctx, cfg.Cluster)
		if err != nil {
			return perm("cluster", cfg.Cluster, err)
		}
		if d.pool, err = cl.ResourcePool(ctx); err != nil {
			return perm("cluster", cfg.Cluster, err)
		}
	case d.host != nil:
		if d.pool, err = d.host.ResourcePool(ctx); err != nil {
			return perm("host", cfg.Host, err)
		}
	default:
		if d.pool, err = f.DefaultResourcePool(ctx); err != nil {
			return perm("resource_pool", "", err)
		}
	}
	if cfg.Datastore != "" {
		d.ds, err = f.Datastore(ctx, cfg.Datastore)
	} else {
		d.ds, err = f.DefaultDatastore(ctx)
	}
	if err != nil {
		return perm("datastore", cfg.Datastore, err)
	}
	if cfg.Network != "" {
		if _, err := d.network(ctx, cfg.Network); err != nil {
			return perm("network", cfg.Network, err)
		}
	}
	for ovfName, target := range cfg.NetworkMap {
		if _, err := d.network(ctx, target); err != nil {
			return perm("network_map["+ovfName+"]", target, err)
		}
	}
	return nil
}

// network resolves a port group by inventory path or name, cached.
func (d *Deployer) network(ctx context.Context, name string) (types.ManagedObjectReference, error) {
	d.mu.Lock()
	ref, ok := d.nets[name]
	d.mu.Unlock()
	if ok {
		return ref, nil
	}
	f := find.NewFinder(d.c)
	f.SetDatacenter(d.dc)
	n, err := f.Network(ctx, name)
	if err != nil {
		return ref, err
	}
	ref = n.Reference()
	d.mu.Lock()
	d.nets[name] = ref
	d.mu.Unlock()
	return ref, nil
}

// SetLogger sets the logger for progress and warnings (default
// slog.Default()); call it before the first Deploy.
func (d *Deployer) SetLogger(l *slog.Logger) { d.log = l.With("target", d.Target()) }

// Target implements deploy.Deployer.
func (d *Deployer) Target() string { return Kind + ":" + d.name }

// Client is the vSphere client the Deployer uses.
func (d *Deployer) Client() *vim25.Client { return d.c }

// Close logs out when Open logged in.
func (d *Deployer) Close() error {
	if d.logout == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.logout(ctx); err != nil {
		return fmt.Errorf("vsphere target %s: log out: %w", d.name, err)
	}
	return nil
}

// lockName serialises work on one VM name within this Deployer.
func (d *Deployer) lockName(name string) func() {
	d.mu.Lock()
	l := d.names[name]
	if l == nil {
		l = &nameLock{}
		d.names[name] = l
	}
	l.refs++
	d.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		d.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(d.names, name)
		}
		d.mu.Unlock()
	}
}

// existing is a VM of the node's name in the target folder.
type existing struct {
	vm   *object.VirtualMachine
	mark string // ksmg.deploy value; "" when the key is absent
	has  bool   // the key is present
	ip   string
}

// find looks the VM up by name in the target folder; nil when absent.
func (d *Deployer) find(ctx context.Context, name string) (*existing, error) {
	ref, err := object.NewSearchIndex(d.c).FindChild(ctx, d.folder, name)
	if err != nil {
		return nil, fmt.Errorf("look up VM %q: %w", name, err)
	}
	if ref == nil {
		return nil, nil
	}
	if ref.Reference().Type != "VirtualMachine" {
		return nil, deploy.Permanent(fmt.Errorf("%q in folder %s is a %s, not a VM", name, d.folder.InventoryPath, ref.Reference().Type))
	}
	vm := object.NewVirtualMachine(d.c, ref.Reference())
	var m mo.VirtualMachine
	if err := vm.Properties(ctx, vm.Reference(), []string{"config.extraConfig", "guest.ipAddress"}, &m); err != nil {
		return nil, fmt.Errorf("read VM %q (%s): %w", name, vm.Reference().Value, err)
	}
	e := &existing{vm: vm}
	if m.Config != nil {
		for _, o := range m.Config.ExtraConfig {
			if ov := o.GetOptionValue(); ov != nil && ov.Key == deploy.MarkKey {
				e.mark, _ = ov.Value.(string)
				e.has = true
			}
		}
	}
	if m.Guest != nil {
		e.ip = m.Guest.IpAddress
	}
	return e, nil
}

// Plan implements deploy.Deployer; it only reads the target.
func (d *Deployer) Plan(ctx context.Context, n deploy.Node) (deploy.Plan, error) {
	if err := n.Validate(); err != nil {
		return deploy.Plan{}, deploy.Permanent(fmt.Errorf("node %s: %w", n.Name, err))
	}
	p, _, err := d.plan(ctx, n)
	return p, err
}

func (d *Deployer) plan(ctx context.Context, n deploy.Node) (deploy.Plan, *existing, error) {
	p := deploy.Plan{Node: n.Name, Target: d.Target()}
	e, err := d.find(ctx, n.Name)
	if err != nil {
		return p, nil, err
	}
	if e == nil {
		p.Action = deploy.ActionCreate
		p.Reason = fmt.Sprintf("no VM %s in folder %s", n.Name, d.folder.InventoryPath)
		return p, nil, nil
	}
	p.ID = e.vm.Reference().Value
	complete := e.mark == deploy.MarkComplete
	switch {
	case complete && !n.Replace:
		p.Action = deploy.ActionUnchanged
		p.Reason = fmt.Sprintf("VM %s exists (%s), deployed by ksmg", n.Name, p.ID)
	case complete:
		p.Action = deploy.ActionReplace
		p.Reason = fmt.Sprintf("VM %s exists (%s), deployed by ksmg; replace requested", n.Name, p.ID)
	case e.has:
		p.Action = deploy.ActionReplace
		p.Reason = fmt.Sprintf("VM %s exists (%s) with %s=%q, not %q: leftover of an unfinished deploy", n.Name, p.ID, deploy.MarkKey, e.mark, deploy.MarkComplete)
	case n.Replace:
		p.Action = deploy.ActionReplace
		p.Reason = fmt.Sprintf("VM %s exists (%s), not deployed by ksmg; replace requested", n.Name, p.ID)
	default:
		return p, e, deploy.Permanent(fmt.Errorf("VM %s exists (%s) and was not deployed by ksmg (no %s in its extraConfig); it is left alone, replace it explicitly if it should go", n.Name, p.ID, deploy.MarkKey))
	}
	return p, e, nil
}

// destroy powers vm off if needed and deletes it with its disks.
func (d *Deployer) destroy(ctx context.Context, vm *object.VirtualMachine) error {
	state, err := vm.PowerState(ctx)
	if err != nil {
		return fmt.Errorf("destroy %s: power state: %w", vm.Reference().Value, err)
	}
	if state != types.VirtualMachinePowerStatePoweredOff {
		t, err := vm.PowerOff(ctx)
		if err == nil {
			err = t.Wait(ctx)
		}
		if err != nil && !isFault[*types.InvalidPowerState](err) {
			return fmt.Errorf("destroy %s: power off: %w", vm.Reference().Value, err)
		}
	}
	t, err := vm.Destroy(ctx)
	if err == nil {
		err = t.Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("destroy %s: %w", vm.Reference().Value, err)
	}
	return nil
}

// isFault reports whether err (a SOAP or task error, possibly wrapped)
// carries a vSphere fault of type T.
func isFault[T types.BaseMethodFault](err error) bool {
	var zero T
	return err != nil && fault.Is(err, zero)
}

var _ deploy.Deployer = (*Deployer)(nil)
