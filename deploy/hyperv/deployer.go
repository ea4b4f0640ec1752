package hyperv

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"regexp"
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

// DefaultPasswordEnv holds the password when neither password_env nor
// password_file is given.
const DefaultPasswordEnv = "KSMG_HYPERV_PASSWORD"

// Defaults for nodes that ask for nothing: the hardware of the appliance
// spec (appliance/appliance.yaml).
const (
	DefaultCPUs      = 4
	DefaultMemoryMiB = 8192
)

// Config is one Hyper-V target of an inventory (YAML) or of the ksmg
// deploy hyperv command. Passwords come from the environment or a file,
// never from the inventory itself.
type Config struct {
	Host   string `yaml:"host"`   // DNS name or address; "" or "localhost" with driver wmi: this machine
	Driver string `yaml:"driver"` // winrm (default) or wmi (Windows only)
	WinRM  struct {
		Port     int    `yaml:"port"`     // 0: 5986 (HTTPS) or 5985 (http: true)
		HTTP     bool   `yaml:"http"`     // plain HTTP; needs ntlm, which then seals every message
		Insecure bool   `yaml:"insecure"` // skip TLS verification (lab hosts)
		CACert   string `yaml:"ca_cert"`  // PEM file to verify the listener
		NTLM     bool   `yaml:"ntlm"`     // NTLM instead of Basic authentication
	} `yaml:"winrm"`
	User         string `yaml:"user"` // DOMAIN\user or user@domain
	PasswordEnv  string `yaml:"password_env"`
	PasswordFile string `yaml:"password_file"`
	// Share is the UNC folder disks are copied to, e.g. \\hv1\VMs$\ksmg;
	// Path is the same folder as the host sees it, e.g. D:\VMs\ksmg. Each
	// node gets <path>\<name> for its disk and VM configuration.
	Share string `yaml:"share"`
	Path  string `yaml:"path"`
	// Switch and VLAN are the defaults for nodes that name none.
	Switch string `yaml:"switch"`
	VLAN   int    `yaml:"vlan"`
	// Generation is always 2 (UEFI, Secure Boot); 0 means 2.
	Generation int `yaml:"generation"`
	// PollInterval is how often the guest's address is polled; default 5s.
	PollInterval time.Duration `yaml:"poll_interval"`
}

var uncRE = regexp.MustCompile(`^\\\\[^\\]+\\[^\\]+`)

// Validate checks the configuration without reaching the host.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch c.Driver {
	case "", "winrm":
		if c.Host == "" {
			bad("host: must not be empty")
		}
		if c.User == "" {
			bad("user: must not be empty")
		}
		if c.WinRM.HTTP && !c.WinRM.NTLM {
			bad("winrm.http: plain HTTP needs winrm.ntlm (Basic would send the password in clear)")
		}
		if !uncRE.MatchString(c.Share) {
			bad(`share %q: want a UNC folder such as \\host\share\ksmg`, c.Share)
		}
	case "wmi":
		if c.Share != "" && !uncRE.MatchString(c.Share) {
			bad(`share %q: want a UNC folder such as \\host\share\ksmg`, c.Share)
		}
		if c.Share == "" && !isLocal(c.Host) {
			bad("share: needed to copy disks to a remote host")
		}
	default:
		bad("driver %q: expected winrm or wmi", c.Driver)
	}
	if !regexp.MustCompile(`^[A-Za-z]:\\`).MatchString(c.Path) {
		bad(`path %q: want the host's local folder such as D:\VMs\ksmg`, c.Path)
	}
	if c.VLAN < 0 || c.VLAN > 4094 {
		bad("vlan %d: want 0-4094", c.VLAN)
	}
	if c.Generation != 0 && c.Generation != 2 {
		bad("generation %d: the appliance is UEFI-only, generation 2", c.Generation)
	}
	if c.PasswordEnv != "" && c.PasswordFile != "" {
		bad("password_env and password_file: give one")
	}
	if c.PollInterval < 0 {
		bad("poll_interval: must not be negative")
	}
	return errors.Join(errs...)
}

func isLocal(host string) bool {
	switch strings.ToLower(host) {
	case "", "localhost", ".", "127.0.0.1", "::1":
		return true
	}
	return false
}

// password reads the password from the file or the environment.
func (c *Config) password(getenv func(string) string) (string, error) {
	if c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("password_file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	env := c.PasswordEnv
	if env == "" {
		env = DefaultPasswordEnv
	}
	p := getenv(env)
	if p == "" && c.User != "" {
		return "", fmt.Errorf("password: environment variable %s is empty (or set password_file)", env)
	}
	return p, nil
}

func init() { deploy.Register(Kind, opener) }

func opener(ctx context.Context, t deploy.TargetSpec) (deploy.Deployer, error) {
	var cfg Config
	if err := t.Decode(&cfg); err != nil {
		return nil, deploy.Permanent(fmt.Errorf("hyperv target %s: %w", t.Name, err))
	}
	cfg.PasswordFile = deploy.Path(t.Dir, cfg.PasswordFile)
	cfg.WinRM.CACert = deploy.Path(t.Dir, cfg.WinRM.CACert)
	d, err := Open(ctx, t.Name, cfg)
	if err != nil {
		return nil, err
	}
	if t.Logger != nil {
		d.SetLogger(t.Logger)
	}
	return d, nil
}

// Open makes the Deployer of cfg. Configuration errors are
// deploy.Permanent.
func Open(ctx context.Context, name string, cfg Config) (*Deployer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, deploy.Permanent(fmt.Errorf("hyperv target %s: %w", name, err))
	}
	pw, err := cfg.password(os.Getenv)
	if err != nil {
		return nil, deploy.Permanent(fmt.Errorf("hyperv target %s: %w", name, err))
	}
	var h Host
	switch cfg.Driver {
	case "wmi":
		h, err = openWMI(ctx, cfg, pw)
	default:
		h, err = openWinRM(cfg, pw)
	}
	if err != nil {
		return nil, deploy.Permanent(fmt.Errorf("hyperv target %s: %w", name, err))
	}
	return New(name, h, cfg), nil
}

func openWinRM(cfg Config, pw string) (Host, error) {
	wc := pwsh.WinRMConfig{
		Host: cfg.Host, Port: cfg.WinRM.Port, HTTPS: !cfg.WinRM.HTTP, Insecure: cfg.WinRM.Insecure,
		User: cfg.User, Password: pw, NTLM: cfg.WinRM.NTLM,
	}
	if cfg.WinRM.CACert != "" {
		b, err := os.ReadFile(cfg.WinRM.CACert)
		if err != nil {
			return nil, fmt.Errorf("winrm.ca_cert: %w", err)
		}
		wc.CACert = b
	}
	run, err := pwsh.NewWinRM(wc)
	if err != nil {
		return nil, err
	}
	user, domain := splitUser(cfg.User)
	cp, err := pwsh.NewSMB(pwsh.SMBConfig{User: user, Password: pw, Domain: domain})
	if err != nil {
		return nil, err
	}
	return NewPSHost(cfg.Host, run, cp, cfg.Share, cfg.Path), nil
}

// splitUser splits DOMAIN\user and user@domain.
func splitUser(u string) (user, domain string) {
	if d, n, ok := strings.Cut(u, `\`); ok {
		return n, d
	}
	if n, d, ok := strings.Cut(u, "@"); ok {
		return n, d
	}
	return u, ""
}

// Deployer deploys nodes to one Hyper-V host. It is safe for concurrent
// use; deploys of the same VM name are serialised.
type Deployer struct {
	name    string
	cfg     Config
	host    Host
	log     *slog.Logger
	digests deploy.Digests

	mu    sync.Mutex
	names map[string]*sync.Mutex
}

// New makes a Deployer on host (tests pass a PSHost on a fake WinRM host).
func New(name string, h Host, cfg Config) *Deployer {
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 5 * time.Second
	}
	return &Deployer{name: name, cfg: cfg, host: h, log: slog.Default(), names: map[string]*sync.Mutex{}}
}

// SetLogger sends the deployer's progress lines to l.
func (d *Deployer) SetLogger(l *slog.Logger) { d.log = l }

// Target implements deploy.Deployer.
func (d *Deployer) Target() string { return Kind + ":" + d.name }

// Close implements deploy.Deployer.
func (d *Deployer) Close() error { return d.host.Close() }

// GuestAddress implements deploy.AddressReader from the guest's KVP
// items.
func (d *Deployer) GuestAddress(ctx context.Context, id string) (string, error) {
	return d.host.GuestIP(ctx, id)
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// maxName leaves room for the replacement's name and folder suffix.
const maxName = 100 - len(".ksmg-new-20060102150405")

// check validates n for this driver; errors are deploy.Permanent.
func (d *Deployer) check(n deploy.Node) error {
	errs := []error{n.Validate()}
	if n.Name != "" && (!nameRE.MatchString(n.Name) || strings.HasSuffix(n.Name, ".") || len(n.Name) > maxName) {
		// The name is also the node's folder on the host.
		errs = append(errs, fmt.Errorf("name %q: Hyper-V nodes need up to %d letters, digits, '.', '-', '_' (a folder of that name holds the disk)", n.Name, maxName))
	}
	if n.Network == "" && d.cfg.Switch == "" {
		errs = append(errs, errors.New("network: no vSwitch for the node and none in the target's switch"))
	}
	for _, k := range slices.Sorted(maps.Keys(n.Properties)) {
		if len(k) > maxKVPKey || len(n.Properties[k]) > maxKVPValue || strings.ContainsRune(n.Properties[k], 0) {
			errs = append(errs, fmt.Errorf("property %s: KVP keys carry at most %d bytes and values %d bytes, no NUL", k, maxKVPKey, maxKVPValue))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return deploy.Permanent(fmt.Errorf("node %s: %w", n.Name, err))
	}
	return nil
}

// CheckImage inspects the VHDX at p (headers, region tables, metadata,
// BAT) without reaching any host; its error is deploy.Permanent.
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

// preflight checks the node, its answers and its image (before the host
// is reached) and says what a deploy would record.
func (d *Deployer) preflight(ctx context.Context, n deploy.Node) (*preflight, error) {
	if err := d.check(n); err != nil {
		return nil, err
	}
	rep, err := CheckImage(n.Image)
	if err != nil {
		return nil, err
	}
	if n.DiskGiB > 0 && uint64(n.DiskGiB)<<30 < rep.VirtualSize {
		return nil, deploy.Permanent(fmt.Errorf("disk %d GiB: smaller than the image's %d bytes; disks only grow", n.DiskGiB, rep.VirtualSize))
	}
	digest, err := d.digests.Digest(ctx, n.Image)
	if err != nil {
		return nil, deploy.Permanent(err)
	}
	sw, vlan := d.network(n)
	want := deploy.Record{
		State: deploy.MarkPending, Image: digest, Version: deploy.VersionFromName(n.Image),
		CPUs: cmp.Or(n.CPUs, DefaultCPUs), MemoryMiB: cmp.Or(n.MemoryMiB, DefaultMemoryMiB),
		DiskGiB: n.DiskGiB, Network: netRecord(sw, vlan), // 0 (the image's size) is not compared
		Answers: deploy.AnswersDigest(n.Properties), Cluster: n.Cluster,
		Control: n.Properties["ksmg.cluster.control_address"],
	}
	return &preflight{rep: rep, want: want}, nil
}

// network is the node's vSwitch and VLAN, else the target's.
func (d *Deployer) network(n deploy.Node) (string, int) {
	sw, vlan := n.Network, n.VLAN
	if sw == "" {
		sw = d.cfg.Switch
	}
	if vlan == 0 {
		vlan = d.cfg.VLAN
	}
	return sw, vlan
}

// netRecord is a vSwitch and VLAN as the record keeps them.
func netRecord(sw string, vlan int) string {
	if vlan == 0 {
		return sw
	}
	return sw + ":" + strconv.Itoa(vlan)
}

// Plan implements deploy.Deployer: the pre-flight, then what a deploy
// would do; it only reads the host.
func (d *Deployer) Plan(ctx context.Context, n deploy.Node) (deploy.Plan, error) {
	pre, err := d.preflight(ctx, n)
	if err != nil {
		return deploy.Plan{Node: n.Name, Target: d.Target()}, err
	}
	p, _, err := d.plan(ctx, n, pre)
	return p, err
}

func (d *Deployer) plan(ctx context.Context, n deploy.Node, pre *preflight) (p deploy.Plan, _ *VM, _ error) {
	p = deploy.Plan{Node: n.Name, Target: d.Target()}
	vm, err := d.host.FindVM(ctx, n.Name)
	if err != nil {
		return p, nil, err
	}
	recovery := ""
	if vm == nil {
		// A replace stopped between its renames leaves the VM in
		// service under AsideName: it is put back, never duplicated.
		if vm, err = d.host.FindVM(ctx, deploy.AsideName(n.Name)); err != nil {
			return p, nil, err
		}
		if vm == nil || !vm.Record().Marked() {
			p.Action = deploy.ActionCreate
			p.Reason = fmt.Sprintf("no VM %s on %s", n.Name, d.host.Name())
			return p, nil, nil
		}
		recovery = fmt.Sprintf("an interrupted replace left VM %s (%s) as %s: it is renamed back and an unfinished replacement %s removed first; then: ",
			n.Name, vm.ID, vm.Name, deploy.TempName(n.Name))
		defer func() { p.Reason = recovery + p.Reason }()
	}
	p.ID = vm.ID
	rec := vm.Record()
	drift, outdated := deploy.Differences(rec, pre.want)
	switch {
	case rec.Complete() && n.Replace:
		p.Action = deploy.ActionReplace
		p.Reason = fmt.Sprintf("VM %s exists (%s), deployed by ksmg; replace requested: a new VM is deployed as %s and swapped in", n.Name, vm.ID, deploy.TempName(n.Name))
	case rec.Complete() && outdated:
		p.Action, p.Drift = deploy.ActionOutdated, drift
		p.Reason = fmt.Sprintf("VM %s (%s) runs image %s, the node asks for %s; --replace deploys it", n.Name, vm.ID, orDash(rec.Version), orDash(pre.want.Version))
	case rec.Complete() && len(drift) > 0:
		p.Action, p.Drift = deploy.ActionDrift, drift
		p.Reason = fmt.Sprintf("VM %s (%s), deployed by ksmg, differs: %s", n.Name, vm.ID, strings.Join(drift, ", "))
	case rec.Complete():
		p.Action = deploy.ActionUnchanged
		p.Reason = fmt.Sprintf("VM %s exists (%s), deployed by ksmg", n.Name, vm.ID)
	case rec.Marked():
		p.Action = deploy.ActionReplace
		p.Reason = fmt.Sprintf("VM %s exists (%s) with %s=%q: leftover of an unfinished deploy", n.Name, vm.ID, deploy.MarkKey, rec.State)
	case n.ReplaceForeign:
		p.Action = deploy.ActionReplace
		p.Reason = fmt.Sprintf("VM %s exists (%s), not deployed by ksmg; replace of a foreign VM requested: a new VM is deployed as %s and swapped in", n.Name, vm.ID, deploy.TempName(n.Name))
	default:
		return p, vm, deploy.Permanent(fmt.Errorf("VM %s exists (%s) and was not deployed by ksmg (no %s in its notes); it is left alone (--replace-foreign replaces it)", n.Name, vm.ID, deploy.MarkKey))
	}
	for _, name := range deploy.SwapNames(n.Name, p, rec, recovery != "") {
		x, err := d.host.FindVM(ctx, name)
		if err != nil {
			return p, vm, err
		}
		if x != nil && !x.Record().Marked() {
			return p, vm, deploy.ErrNameTaken(name, x.ID)
		}
	}
	return p, vm, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

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

// Deploy implements deploy.Deployer.
func (d *Deployer) Deploy(ctx context.Context, n deploy.Node) (deploy.Result, error) {
	res, err := deploy.Timed("deploy", n.Name, d.Target(), func(res *deploy.Result) error { return d.deploy(ctx, n, res) })
	if err != nil {
		// Never let a secret answer reach a table or log through an
		// error that quotes a script or the host's output.
		err = scrub(err, n.Properties)
		res.Err = err
	}
	return res, err
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
	log := d.log.With("node", n.Name, "target", d.Target())
	if old != nil && old.Name == deploy.AsideName(n.Name) {
		log.Warn("an interrupted replace left the VM in service under another name; renaming it back", "id", old.ID, "as", old.Name)
		if err := d.host.Rename(ctx, old.ID, n.Name); err != nil {
			return err
		}
		old.Name = n.Name
		if err := d.clearMarked(ctx, deploy.TempName(n.Name)); err != nil {
			return fmt.Errorf("remove %s, left by an interrupted replace: %w", deploy.TempName(n.Name), err)
		}
	}
	switch p.Action {
	case deploy.ActionUnchanged, deploy.ActionOutdated:
		return nil
	case deploy.ActionDrift:
		if !n.ApplyDrift {
			return nil
		}
		return d.applyDrift(ctx, n, pre, old, res)
	case deploy.ActionCreate:
		return d.create(ctx, n, n.Name, n.Name, pre, res)
	}
	if rec := old.Record(); rec.Marked() && !rec.Complete() {
		// An unfinished deploy's leftover never served: replace it.
		log.Info("removing the leftover of an unfinished deploy", "id", p.ID, "reason", p.Reason)
		if err := d.host.Remove(ctx, n.Name, p.ID); err != nil {
			return err
		}
		return d.create(ctx, n, n.Name, n.Name, pre, res)
	}
	r, err := deploy.SwapIn(ctx, deploy.Swap{
		Name: n.Name, OldID: p.ID, Log: log,
		Clear: d.clearMarked,
		Deploy: func(ctx context.Context, name string) (deploy.Result, error) {
			var r deploy.Result
			// A fresh folder: the one of the VM in service stays its own.
			folder := name + "-" + time.Now().UTC().Format("20060102150405")
			err := d.create(ctx, n, name, folder, pre, &r)
			return r, err
		},
		Rename: d.host.Rename,
		Remove: func(ctx context.Context, id string) error { return d.removeVM(ctx, "", id, 0) },
	})
	res.ID, res.IP, res.SecretsLeft = r.ID, r.IP, r.SecretsLeft
	return err
}

// create deploys the node as a new VM called name whose disk and
// configuration live in the node folder folder.
func (d *Deployer) create(ctx context.Context, n deploy.Node, name, folder string, pre *preflight, res *deploy.Result) (err error) {
	log := d.log.With("node", n.Name, "target", d.Target())
	var id string
	// From the first byte copied, a failure removes what this deploy
	// made, even when ctx is what failed; once the guest runs, only an
	// interruption does (a guest that did not report is left for
	// inspection, marked pending; a replacement turned off, since it
	// has the address and host name of the VM in service).
	ok, started := false, false
	defer func() {
		switch {
		case ok:
		case started && ctx.Err() == nil && name != n.Name:
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			if serr := d.host.Stop(cctx, id, time.Second); serr != nil {
				err = fmt.Errorf("%w; and turning the unproven replacement %s off failed, it runs beside the VM in service: %w", err, id, scrub(serr, n.Properties))
				return
			}
			err = fmt.Errorf("%w; the replacement %s is left turned off, marked pending, for inspection (the next replace removes it)", err, id)
		case started && ctx.Err() == nil:
			log.Warn("the VM is left running, marked pending, for inspection; the next run replaces it", "id", id)
		default:
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			if err := d.host.Remove(cctx, folder, id); err != nil {
				log.Warn("cleanup after failed deploy", "err", scrub(err, n.Properties))
			}
		}
	}()
	var progress func(done, total int64)
	if n.Progress != nil {
		progress = func(done, total int64) { n.Progress("copy disk", done, total) }
	}
	path, err := d.host.CopyDisk(ctx, n.Image, folder, progress)
	if err != nil {
		return err
	}
	rec := pre.want
	rec.State, rec.DiskGiB = PendingMark, max(n.DiskGiB, int((pre.rep.VirtualSize+1<<30-1)>>30))
	sw, vlan := d.network(n)
	spec := VMSpec{
		Name: name, Path: d.cfg.Path, VHDX: path,
		CPUs: rec.CPUs, MemoryMiB: rec.MemoryMiB, Switch: sw, VLAN: vlan,
		Notes: Notes(rec),
	}
	if id, err = d.host.CreateVM(ctx, spec); err != nil {
		return err
	}
	res.ID = id
	if size := uint64(n.DiskGiB) << 30; size > pre.rep.VirtualSize {
		if err := d.host.ResizeDisk(ctx, path, size); err != nil {
			return err
		}
	}
	if len(n.Properties) > 0 {
		items := make([]KVPItem, 0, len(n.Properties))
		for _, k := range slices.Sorted(maps.Keys(n.Properties)) {
			items = append(items, KVPItem{k, n.Properties[k]})
		}
		if err := d.host.AddKVP(ctx, id, items); err != nil {
			return err
		}
	}
	if n.PowerOn {
		if err := d.host.Start(ctx, id); err != nil {
			return err
		}
		started = true
		if n.WaitIP > 0 {
			// One deadline for the address and first boot's signal.
			wctx, cancel := context.WithTimeout(ctx, n.WaitIP)
			ip, err := d.waitIP(wctx, n, id)
			if err == nil {
				res.IP = ip
				err = d.waitFirstboot(wctx, n, id)
			}
			cancel()
			if err != nil {
				return err
			}
			if err := d.removeSecrets(ctx, n, id); err != nil {
				return err
			}
		}
	}
	res.SecretsLeft = n.WaitIP == 0 && deploy.HasSecrets(n.Properties)
	rec.State = deploy.MarkComplete
	if err := d.host.SetNotes(ctx, id, Notes(rec)); err != nil {
		return err
	}
	ok = true
	log.Debug("deployed", "id", id, "ip", res.IP)
	return nil
}

// waiting tells n.Waiting every other poll what the deploy waits for
// until the returned stop is called.
func (d *Deployer) waiting(n deploy.Node, what string) (stop func()) {
	return deploy.Notify(n, what, 2*d.cfg.PollInterval)
}

// waitIP polls for the guest's address until ctx (limited to n.WaitIP)
// ends.
func (d *Deployer) waitIP(ctx context.Context, n deploy.Node, id string) (string, error) {
	defer d.waiting(n, "IP address")()
	t := time.NewTicker(d.cfg.PollInterval)
	defer t.Stop()
	for {
		ip, err := d.host.GuestIP(ctx, id)
		if err == nil && ip != "" {
			return ip, nil
		}
		if err != nil && ctx.Err() == nil {
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("wait for the guest's address: none reported within %s (hv_kvp_daemon running in the guest?): %w", n.WaitIP, ctx.Err())
		case <-t.C:
		}
	}
}

// waitFirstboot polls the VM's guest-to-host KVP items until first boot
// reports it applied its answers and scrubbed them in the guest
// (sources.DoneKey=sources.DoneValue in its pool 1), or ctx (limited to
// n.WaitIP) ends. An address alone does not prove that: a DHCP lease can
// come before first boot read its pool.
func (d *Deployer) waitFirstboot(ctx context.Context, n deploy.Node, id string) error {
	defer d.waiting(n, "first boot to report completion")()
	t := time.NewTicker(d.cfg.PollInterval)
	defer t.Stop()
	for {
		done, err := d.firstbootDone(ctx, id)
		if err == nil && done {
			return nil
		}
		if err != nil && ctx.Err() == nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("first boot did not report completion (%s=%s) within %s; the VM is left running, marked pending, for inspection: its console shows why: %w", sources.DoneKey, sources.DoneValue, n.WaitIP, ctx.Err())
		case <-t.C:
		}
	}
}

// firstbootDone reports whether the guest signalled first boot's
// completion.
func (d *Deployer) firstbootDone(ctx context.Context, id string) (bool, error) {
	items, err := d.host.GuestKVP(ctx, id)
	if err != nil {
		return false, err
	}
	v, found, err := kvp.GuestItem(items, sources.DoneKey)
	return err == nil && found && v == sources.DoneValue, err
}

// removeSecrets removes the secret first-boot answers from the VM's
// host-to-guest KVP items once first boot reported it is done with them, so
// they do not stay in the VM's configuration (and its exports). Only the
// key names reach the host.
func (d *Deployer) removeSecrets(ctx context.Context, n deploy.Node, id string) error {
	keys := deploy.SecretKeys(n.Properties)
	if len(keys) == 0 {
		return nil
	}
	d.log.Info("removing secret KVP items", "node", n.Name, "id", id, "keys", keys)
	return d.host.RemoveKVP(ctx, id, keys)
}

// scrub replaces secret property values in err's text.
func scrub(err error, props map[string]string) error {
	msg := err.Error()
	red := deploy.Redact(props)
	changed := false
	for k, v := range props {
		if red[k] != v && len(v) >= 4 && strings.Contains(msg, v) {
			msg = strings.ReplaceAll(msg, v, red[k])
			changed = true
		}
	}
	if !changed {
		return err
	}
	return scrubbed{msg, err}
}

type scrubbed struct {
	msg string
	err error
}

func (s scrubbed) Error() string { return s.msg }
func (s scrubbed) Unwrap() error { return s.err }

var (
	_ deploy.Deployer      = (*Deployer)(nil)
	_ deploy.AddressReader = (*Deployer)(nil)
)
