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
// Plan is a pre-flight: it runs every check a deploy runs before touching
// the target (the OVA inspected with ova.Inspect, manifest, descriptor and
// every disk grain; the answers checked as first boot will; properties
// declared by the OVA; the disk not below the image's; network-map sources
// present in the OVF) and then reads the VM of the node's name.
//
// A deploy, in order: the pre-flight; import with the VM marked
// ksmg.deploy=pending and the Record of what is deployed in its
// extraConfig; upload, hashing every byte against the manifest again (the
// file may change after inspection); read the VM's configuration back and
// make sure of what the appliance needs (EFI firmware, Secure Boot,
// disk.EnableUUID, PVSCSI, VMXNET3: reconfigured where the host dropped
// it, a permanent failure where it cannot be set); grow the disk; on a
// standalone ESXi host, which keeps no vApp options and delivers no OVF
// environment, write the environment into guestinfo.ovfEnv; power on;
// wait for the guest's IPv4 address and for first boot's completion
// signal (guestinfo.ksmg.firstboot=done, which the guest sets through
// VMware Tools); clear the secret answers from the vApp properties and
// guestinfo.ovfEnv (on vCenter, which delivers the environment itself at
// power-on, the next power-on delivers it from the cleared properties);
// and only then set ksmg.deploy=complete. Without a wait
// the secrets stay until Scrub. A failure before power-on destroys the VM,
// so a retry starts clean; a guest that does not report in time is left
// running, marked pending, for inspection (the next run replaces it).
//
// Plan follows the deploy package's idempotence contract with one
// safety addition: a VM of the node's name marked "pending" is the
// leftover of an interrupted run and is replaced, but a VM that carries no
// ksmg.deploy key at all was not made by ksmg and is never destroyed
// unless ReplaceForeign is set (it could be someone's production VM). A
// finished VM is replaced through deploy.SwapIn, never destroyed first.
//
// TLS: the system's roots, or ca_cert (GOVC_TLS_CA_CERTS), or a pinned
// thumbprint (or GOVC_TLS_KNOWN_HOSTS); a certificate the client cannot
// verify fails with the host's SHA-256 thumbprint and how to trust it.
package vsphere

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
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
	"github.com/ksmg-appliance/ksmg/firstboot/sources"
)

// Kind is the driver's name in inventories.
const Kind = "vsphere"

// PendingMark is the value of deploy.MarkKey on a VM whose deploy has not
// finished; it is set in the import spec, so every VM this driver creates
// carries the key from its first moment.
const PendingMark = deploy.MarkPending

// DoneKey is the guestinfo key first boot sets (through VMware Tools) once
// it applied its answers (firstboot/sources.GuestInfo); the deployer then
// clears the secret ones.
const DoneKey = sources.GuestInfoDoneKey

func init() { deploy.Register(Kind, opener) }

func opener(ctx context.Context, t deploy.TargetSpec) (deploy.Deployer, error) {
	var cfg Config
	if err := t.Decode(&cfg); err != nil {
		return nil, deploy.Permanent(fmt.Errorf("vsphere target %s: %w", t.Name, err))
	}
	cfg.resolve(t.Dir)
	d, err := Open(ctx, t.Name, cfg)
	if err != nil {
		return nil, err
	}
	if t.Logger != nil {
		d.SetLogger(t.Logger)
	}
	return d, nil
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
	digests   deploy.Digests
	// poll is how often guest state is polled while waiting; tests
	// shorten it.
	poll time.Duration

	mu    sync.Mutex
	names map[string]*nameLock
	nets  map[string]types.ManagedObjectReference
}

type nameLock struct {
	mu   sync.Mutex
	refs int
}

// Open logs in to the target of cfg (defaults from the environment as govc
// has them) and resolves its inventory. Configuration, login and
// certificate errors are deploy.Permanent; a host that cannot be reached
// is not.
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
	sc, err := cfg.soapClient(u)
	if err != nil {
		return nil, deploy.Permanent(fmt.Errorf("vsphere target %s: %w", name, err))
	}
	c, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("vsphere target %s: connect to %s: %w", name, u.Host, certHint(ctx, u.Host, sc.Thumbprint(u.Host), err))
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

// soapClient makes the SOAP client with the configured trust: system
// roots or ca_cert, plus a pinned thumbprint and known hosts.
func (c *Config) soapClient(u *url.URL) (*soap.Client, error) {
	sc := soap.NewClient(u, c.Insecure)
	if c.CACert != "" {
		if err := sc.SetRootCAs(c.CACert); err != nil {
			return nil, fmt.Errorf("ca_cert %s: %w", c.CACert, err)
		}
	}
	if c.KnownHosts != "" {
		if err := sc.LoadThumbprints(c.KnownHosts); err != nil {
			return nil, fmt.Errorf("known_hosts %s: %w", c.KnownHosts, err)
		}
	}
	if c.Thumbprint != "" {
		tp, err := NormalizeThumbprint(c.Thumbprint)
		if err != nil {
			return nil, err
		}
		sc.SetThumbprint(u.Host, tp)
	}
	return sc, nil
}

// certHint turns a certificate the client does not trust into a permanent
// error that says how to trust it: the host's SHA-256 thumbprint (read
// without verification, only to print it) for --thumbprint, or --ca-cert.
// A pinned thumbprint (thumbprint, known_hosts) the host's certificate
// does not match is permanent too: the certificate changed, or someone is
// in the middle; retrying cannot help. Other errors (refused, timed out,
// reset) stay retryable.
func certHint(ctx context.Context, host, pinned string, err error) error {
	var hostErr x509.HostnameError
	untrusted := soap.IsCertificateUntrusted(err) || errors.As(err, &hostErr)
	if !untrusted && pinned == "" {
		return err
	}
	cert := peerCertificate(ctx, host)
	if !untrusted {
		// govmomi reports a mismatch as plain text; tell it by
		// comparing the pin with what the host presents.
		if cert == nil || soap.ThumbprintSHA256(cert) == pinned || soap.ThumbprintSHA1(cert) == pinned {
			return err
		}
		return deploy.Permanent(fmt.Errorf("the certificate of %s does not match the pinned thumbprint %s (%w); its SHA-256 thumbprint is %s: if the host's certificate was renewed, pass --thumbprint %s (thumbprint: in an inventory, or update known_hosts)",
			host, pinned, err, soap.ThumbprintSHA256(cert), soap.ThumbprintSHA256(cert)))
	}
	hint := "pass --thumbprint (thumbprint: in an inventory) with the host's certificate thumbprint, or --ca-cert (ca_cert:) with the CA that signed it"
	if cert != nil {
		hint = fmt.Sprintf("its SHA-256 thumbprint is %s; if that is the host's certificate, pass --thumbprint %s (thumbprint: in an inventory), or --ca-cert (ca_cert:) with the CA that signed it",
			soap.ThumbprintSHA256(cert), soap.ThumbprintSHA256(cert))
	}
	return deploy.Permanent(fmt.Errorf("the certificate of %s is not trusted (%w); %s", host, err, hint))
}

// peerCertificate is the certificate host presents, read without
// verification only to show or compare its thumbprint; nil when it cannot
// be read.
func peerCertificate(ctx context.Context, host string) *x509.Certificate {
	addr := host
	if _, _, e := net.SplitHostPort(addr); e != nil {
		addr = net.JoinHostPort(addr, "443")
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := (&tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}}).DialContext(dctx, "tcp", addr) //nolint:gosec // only to show the thumbprint
	if err != nil {
		return nil
	}
	defer conn.Close()
	if cs := conn.(*tls.Conn).ConnectionState(); len(cs.PeerCertificates) > 0 {
		return cs.PeerCertificates[0]
	}
	return nil
}

// New makes a Deployer on an existing, logged-in client; cfg's connection
// fields are ignored. Close does not log the client out.
func New(ctx context.Context, name string, c *vim25.Client, cfg Config) (*Deployer, error) {
	if cfg.DiskProvisioning == "" {
		cfg.DiskProvisioning = Thin
	}
	conn := cfg
	conn.URL, conn.Insecure, conn.urlFromEnv, conn.Thumbprint, conn.CACert = "https://unused/sdk", false, false, "", ""
	if err := conn.Validate(); err != nil {
		return nil, deploy.Permanent(fmt.Errorf("vsphere target %s: %w", name, err))
	}
	d := &Deployer{
		name: name, cfg: cfg, c: c, esx: !c.IsVC(), poll: 2 * time.Second,
		log:   slog.Default().With("target", Kind+":"+name),
		names: map[string]*nameLock{}, nets: map[string]types.ManagedObjectReference{},
	}
	if err := d.resolve(ctx); err != nil {
		return nil, fmt.Errorf("vsphere target %s: %w", name, err)
	}
	return d, nil
}

// SetPollInterval sets how often the guest's state is polled while a
// deploy waits (default 2s).
func (d *Deployer) SetPollInterval(p time.Duration) { d.poll = p }

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
	vm      *object.VirtualMachine
	rec     deploy.Record // State "" when the VM carries no mark
	ip      string
	power   types.VirtualMachinePowerState
	extra   map[string]string // extraConfig, string values
	vapp    []types.VAppPropertyInfo
	tools   string // guest.toolsRunningStatus
	devices object.VirtualDeviceList
	cpus    int                            // config.hardware.numCPU
	memory  int                            // config.hardware.memoryMB
	nets    []types.ManagedObjectReference // the networks its adapters are on
	// have is the record with what the VM has now (observed), set by
	// plan: what drift is measured from and --apply-drift starts from.
	have deploy.Record
	// aside: plan found the VM in service under deploy.AsideName (a
	// replace stopped between its renames); a deploy renames it back
	// first.
	aside bool
}

// vmProps are the properties read for a VM.
var vmProps = []string{"name", "config.extraConfig", "config.vAppConfig", "config.hardware", "network", "guest.ipAddress", "guest.toolsRunningStatus", "runtime.powerState"}

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
	return d.read(ctx, object.NewVirtualMachine(d.c, ref.Reference()))
}

// read reads what the driver needs of vm.
func (d *Deployer) read(ctx context.Context, vm *object.VirtualMachine) (*existing, error) {
	var m mo.VirtualMachine
	if err := vm.Properties(ctx, vm.Reference(), vmProps, &m); err != nil {
		return nil, fmt.Errorf("read VM %s: %w", vm.Reference().Value, err)
	}
	return newExisting(vm, m), nil
}

func newExisting(vm *object.VirtualMachine, m mo.VirtualMachine) *existing {
	e := &existing{vm: vm, extra: map[string]string{}, power: m.Runtime.PowerState, nets: m.Network}
	if m.Config != nil {
		for _, o := range m.Config.ExtraConfig {
			if ov := o.GetOptionValue(); ov != nil {
				s, _ := ov.Value.(string)
				e.extra[ov.Key] = s
			}
		}
		if m.Config.VAppConfig != nil {
			if vi := m.Config.VAppConfig.GetVmConfigInfo(); vi != nil {
				e.vapp = vi.Property
			}
		}
		e.devices = object.VirtualDeviceList(m.Config.Hardware.Device)
		e.cpus, e.memory = int(m.Config.Hardware.NumCPU), int(m.Config.Hardware.MemoryMB)
	}
	e.rec = deploy.RecordFrom(func(k string) (string, bool) { v, ok := e.extra[k]; return v, ok })
	if m.Guest != nil {
		e.ip, e.tools = m.Guest.IpAddress, m.Guest.ToolsRunningStatus
	}
	return e
}

// Plan implements deploy.Deployer: the pre-flight, then what a deploy
// would do; it only reads the target.
func (d *Deployer) Plan(ctx context.Context, n deploy.Node) (deploy.Plan, error) {
	pre, err := d.preflight(ctx, n)
	if err != nil {
		return deploy.Plan{Node: n.Name, Target: d.Target()}, err
	}
	p, _, err := d.plan(ctx, n, pre)
	return p, err
}

func (d *Deployer) plan(ctx context.Context, n deploy.Node, pre *preflight) (p deploy.Plan, _ *existing, _ error) {
	p = deploy.Plan{Node: n.Name, Target: d.Target()}
	e, err := d.find(ctx, n.Name)
	if err != nil {
		return p, nil, err
	}
	recovery := ""
	if e == nil {
		// A replace stopped between its renames leaves the VM in
		// service under AsideName: it is put back, never duplicated.
		if e, err = d.find(ctx, deploy.AsideName(n.Name)); err != nil {
			return p, nil, err
		}
		if e == nil || !e.rec.Marked() {
			p.Action = deploy.ActionCreate
			p.Reason = fmt.Sprintf("no VM %s in folder %s", n.Name, d.folder.InventoryPath)
			return p, nil, nil
		}
		e.aside = true
		recovery = fmt.Sprintf("an interrupted replace left VM %s (%s) as %s: it is renamed back and an unfinished replacement %s removed first; then: ",
			n.Name, e.vm.Reference().Value, deploy.AsideName(n.Name), deploy.TempName(n.Name))
		defer func() { p.Reason = recovery + p.Reason }()
	}
	p.ID, p.IP = e.vm.Reference().Value, e.ip
	if e.have, err = d.observed(ctx, e, pre.want); err != nil {
		return p, e, err
	}
	drift, outdated := deploy.Differences(e.have, pre.want)
	switch {
	case e.rec.Complete() && n.Replace:
		p.Action = deploy.ActionReplace
		p.Reason = fmt.Sprintf("VM %s exists (%s), deployed by ksmg; replace requested: a new VM is deployed as %s and swapped in", n.Name, p.ID, deploy.TempName(n.Name))
	case e.rec.Complete() && outdated:
		p.Action, p.Drift = deploy.ActionOutdated, drift
		p.Reason = fmt.Sprintf("VM %s (%s) runs image %s %s, the node asks for %s %s; --replace deploys it", n.Name, p.ID, e.rec.Version, short(e.rec.Image), pre.want.Version, short(pre.want.Image))
	case e.rec.Complete() && len(drift) > 0:
		p.Action, p.Drift = deploy.ActionDrift, drift
		p.Reason = fmt.Sprintf("VM %s (%s), deployed by ksmg, differs: %s", n.Name, p.ID, strings.Join(drift, ", "))
	case e.rec.Complete():
		p.Action = deploy.ActionUnchanged
		p.Reason = fmt.Sprintf("VM %s exists (%s), deployed by ksmg", n.Name, p.ID)
	case e.rec.Marked():
		p.Action = deploy.ActionReplace
		p.Reason = fmt.Sprintf("VM %s exists (%s) with %s=%q, not %q: leftover of an unfinished deploy", n.Name, p.ID, deploy.MarkKey, e.rec.State, deploy.MarkComplete)
	case n.ReplaceForeign:
		p.Action = deploy.ActionReplace
		p.Reason = fmt.Sprintf("VM %s exists (%s), not deployed by ksmg; replace of a foreign VM requested: a new VM is deployed as %s and swapped in", n.Name, p.ID, deploy.TempName(n.Name))
	default:
		return p, e, deploy.Permanent(fmt.Errorf("VM %s exists (%s) and was not deployed by ksmg (no %s in its extraConfig); it is left alone (--replace-foreign replaces it)", n.Name, p.ID, deploy.MarkKey))
	}
	// The names a swap or a recovery clears must not be a VM ksmg did not
	// make: the run would stop there, so the plan does.
	for _, name := range deploy.SwapNames(n.Name, p, e.rec, e.aside) {
		x, err := d.find(ctx, name)
		if err != nil {
			return p, e, err
		}
		if x != nil && !x.rec.Marked() {
			return p, e, deploy.ErrNameTaken(name, x.vm.Reference().Value)
		}
	}
	return p, e, nil
}

// observed is e's record with the settings the VM has now in place of
// the recorded ones: CPUs, memory, disk size and network can be changed
// by hand in vCenter, and drift is what the VM is, not what it was made
// as. The image and the answers cannot be read back and stay as recorded.
// A network is compared by what it resolves to, so an inventory path and
// a name of the same port group agree.
func (d *Deployer) observed(ctx context.Context, e *existing, want deploy.Record) (deploy.Record, error) {
	have := e.rec
	if !have.Marked() {
		return have, nil
	}
	if e.cpus > 0 {
		have.CPUs = e.cpus
	}
	if e.memory > 0 {
		have.MemoryMiB = e.memory
	}
	if disks := e.devices.SelectByType((*types.VirtualDisk)(nil)); len(disks) == 1 {
		disk := disks[0].(*types.VirtualDisk)
		size := max(disk.CapacityInBytes, disk.CapacityInKB<<10)
		have.DiskGiB = int((size + 1<<30 - 1) >> 30)
	}
	if len(e.nets) != 1 {
		return have, nil
	}
	if want.Network != "" {
		ref, err := d.network(ctx, want.Network)
		if err != nil {
			return have, deploy.Permanent(fmt.Errorf("network %q: %w", want.Network, err))
		}
		if ref == e.nets[0] {
			have.Network = want.Network
			return have, nil
		}
	}
	if have.Network != "" {
		if ref, err := d.network(ctx, have.Network); err == nil && ref == e.nets[0] {
			return have, nil // as recorded
		}
	}
	name, err := object.NewCommon(d.c, e.nets[0]).ObjectName(ctx)
	if err != nil {
		return have, fmt.Errorf("network of VM %s: %w", e.vm.Reference().Value, err)
	}
	have.Network = name
	return have, nil
}

// short abbreviates an image digest for messages.
func short(digest string) string {
	if h, ok := strings.CutPrefix(digest, "sha256:"); ok && len(h) > 12 {
		return "sha256:" + h[:12]
	}
	return digest
}

// isFault reports whether err (a SOAP or task error, possibly wrapped)
// carries a vSphere fault of type T.
func isFault[T types.BaseMethodFault](err error) bool {
	var zero T
	return err != nil && fault.Is(err, zero)
}

var _ deploy.Deployer = (*Deployer)(nil)
