package hyperv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/hyperv/kvp"
	"github.com/ksmg-appliance/ksmg/deploy/pwsh"
	"github.com/ksmg-appliance/ksmg/firstboot/answers"
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

func opener(ctx context.Context, name string, decode func(v any) error) (deploy.Deployer, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		return nil, deploy.Permanent(fmt.Errorf("hyperv target %s: %w", name, err))
	}
	return Open(ctx, name, cfg)
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
	name string
	cfg  Config
	host Host
	log  *slog.Logger

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

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// check validates n for this driver; errors are deploy.Permanent.
func (d *Deployer) check(n deploy.Node) error {
	errs := []error{n.Validate()}
	if n.Name != "" && (!nameRE.MatchString(n.Name) || strings.HasSuffix(n.Name, ".")) {
		// The name is also the node's folder on the host.
		errs = append(errs, fmt.Errorf("name %q: Hyper-V nodes need letters, digits, '.', '-', '_' (a folder of that name holds the disk)", n.Name))
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

// Plan implements deploy.Deployer; it only reads the target.
func (d *Deployer) Plan(ctx context.Context, n deploy.Node) (deploy.Plan, error) {
	if err := d.check(n); err != nil {
		return deploy.Plan{Node: n.Name, Target: d.Target()}, err
	}
	return d.plan(ctx, n)
}

func (d *Deployer) plan(ctx context.Context, n deploy.Node) (deploy.Plan, error) {
	p := deploy.Plan{Node: n.Name, Target: d.Target()}
	vm, err := d.host.FindVM(ctx, n.Name)
	if err != nil {
		return p, err
	}
	if vm == nil {
		p.Action = deploy.ActionCreate
		p.Reason = fmt.Sprintf("no VM %s on %s", n.Name, d.host.Name())
		return p, nil
	}
	p.ID = vm.ID
	mark, has := vm.Mark()
	complete := has && mark == deploy.MarkComplete
	switch {
	case complete && !n.Replace:
		p.Action = deploy.ActionUnchanged
		p.Reason = fmt.Sprintf("VM %s exists (%s), deployed by ksmg", n.Name, vm.ID)
	case complete:
		p.Action = deploy.ActionReplace
		p.Reason = fmt.Sprintf("VM %s exists (%s), deployed by ksmg; replace requested", n.Name, vm.ID)
	case has:
		p.Action = deploy.ActionReplace
		p.Reason = fmt.Sprintf("VM %s exists (%s) with %s=%q: leftover of an unfinished deploy", n.Name, vm.ID, deploy.MarkKey, mark)
	case n.Replace:
		p.Action = deploy.ActionReplace
		p.Reason = fmt.Sprintf("VM %s exists (%s), not deployed by ksmg; replace requested", n.Name, vm.ID)
	default:
		return p, deploy.Permanent(fmt.Errorf("VM %s exists (%s) and was not deployed by ksmg (no %s in its notes); it is left alone, replace it explicitly if it should go", n.Name, vm.ID, deploy.MarkKey))
	}
	return p, nil
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
	start := time.Now()
	res := deploy.Result{Node: n.Name, Target: d.Target(), Attempts: 1}
	err := d.deploy(ctx, n, &res)
	res.Elapsed = time.Since(start)
	if err != nil {
		// Never let a secret answer reach a table or log through an
		// error that quotes a script or the host's output.
		err = scrub(fmt.Errorf("deploy %s to %s: %w", n.Name, d.Target(), err), n.Properties)
		res.Err = err
	}
	return res, err
}

func (d *Deployer) deploy(ctx context.Context, n deploy.Node, res *deploy.Result) error {
	if err := d.check(n); err != nil {
		return err
	}
	rep, err := vhdx.Inspect(n.Image)
	if err != nil {
		return deploy.Permanent(fmt.Errorf("image: %w", err))
	}
	var size uint64
	if n.DiskGiB > 0 {
		size = uint64(n.DiskGiB) << 30
		if size < rep.VirtualSize {
			return deploy.Permanent(fmt.Errorf("disk %d GiB: smaller than the image's %d bytes; disks only grow", n.DiskGiB, rep.VirtualSize))
		}
	}
	defer d.lockName(n.Name)()

	p, err := d.plan(ctx, n)
	if err != nil {
		return err
	}
	res.Action, res.ID = p.Action, p.ID
	if p.Action == deploy.ActionUnchanged {
		return nil
	}
	log := d.log.With("node", n.Name, "target", d.Target())
	if p.Action == deploy.ActionReplace {
		log.Info("removing existing VM", "id", p.ID, "reason", p.Reason)
		if err := d.host.Remove(ctx, n.Name, p.ID); err != nil {
			return err
		}
	}

	var id string
	// From the first byte copied, a failure removes what this deploy
	// made, even when ctx is what failed.
	ok := false
	defer func() {
		if ok {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if err := d.host.Remove(cctx, n.Name, id); err != nil {
			log.Warn("cleanup after failed deploy", "err", scrub(err, n.Properties))
		}
	}()
	var progress func(done, total int64)
	if n.Progress != nil {
		progress = func(done, total int64) { n.Progress("copy disk", done, total) }
	}
	path, err := d.host.CopyDisk(ctx, n.Image, n.Name, progress)
	if err != nil {
		return err
	}
	spec := VMSpec{
		Name: n.Name, Path: d.cfg.Path, VHDX: path,
		CPUs: n.CPUs, MemoryMiB: n.MemoryMiB, Switch: n.Network, VLAN: n.VLAN,
		Notes: Notes(PendingMark),
	}
	if spec.CPUs == 0 {
		spec.CPUs = DefaultCPUs
	}
	if spec.MemoryMiB == 0 {
		spec.MemoryMiB = DefaultMemoryMiB
	}
	if spec.Switch == "" {
		spec.Switch = d.cfg.Switch
	}
	if spec.VLAN == 0 {
		spec.VLAN = d.cfg.VLAN
	}
	if id, err = d.host.CreateVM(ctx, spec); err != nil {
		return err
	}
	res.ID = id
	if size > rep.VirtualSize {
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
		if n.WaitIP > 0 {
			// One deadline for the address and first boot's signal.
			wctx, cancel := context.WithTimeout(ctx, n.WaitIP)
			ip, err := d.waitIP(wctx, id, n.WaitIP)
			if err == nil {
				res.IP = ip
				err = d.waitFirstboot(wctx, id, n.WaitIP)
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
	if err := d.host.SetNotes(ctx, id, Notes(deploy.MarkComplete)); err != nil {
		return err
	}
	ok = true
	log.Info("deployed", "id", id, "ip", res.IP)
	return nil
}

// waitIP polls for the guest's address until ctx (limited to limit) ends.
func (d *Deployer) waitIP(ctx context.Context, id string, limit time.Duration) (string, error) {
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
			return "", fmt.Errorf("wait for the guest's address: none reported within %s (hv_kvp_daemon running in the guest?): %w", limit, ctx.Err())
		case <-t.C:
		}
	}
}

// waitFirstboot polls the VM's guest-to-host KVP items until first boot
// reports it applied its answers and scrubbed them in the guest
// (sources.DoneKey=sources.DoneValue in its pool 1), or ctx (limited to
// limit) ends. An address alone does not prove that: a DHCP lease can come
// before first boot read its pool.
func (d *Deployer) waitFirstboot(ctx context.Context, id string, limit time.Duration) error {
	t := time.NewTicker(d.cfg.PollInterval)
	defer t.Stop()
	for {
		items, err := d.host.GuestKVP(ctx, id)
		if err == nil {
			var v string
			var found bool
			if v, found, err = kvp.GuestItem(items, sources.DoneKey); err == nil && found && v == sources.DoneValue {
				return nil
			}
		}
		if err != nil && ctx.Err() == nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("first boot did not report completion (%s=%s) within %s; the VM's console shows why: %w", sources.DoneKey, sources.DoneValue, limit, ctx.Err())
		case <-t.C:
		}
	}
}

// removeSecrets removes the secret first-boot answers from the VM's
// host-to-guest KVP items once first boot reported it is done with them, so
// they do not stay in the VM's configuration (and its exports). Only the
// key names reach the host.
func (d *Deployer) removeSecrets(ctx context.Context, n deploy.Node, id string) error {
	var keys []string
	for _, k := range slices.Sorted(maps.Keys(n.Properties)) {
		if answers.IsSecret(k) {
			keys = append(keys, k)
		}
	}
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

var _ deploy.Deployer = (*Deployer)(nil)
