// Package deploy is what every target driver (vsphere, hyperv, scvmm) has in
// common: the Node an admin asks for, the Plan that says what a deploy would
// do, the Result it reports, and the Deployer interface the fleet runner and
// the ksmg command drive.
//
// Idempotence contract, kept by every driver: a VM the driver creates is
// marked MarkKey=MarkPending from its first moment on the target (vSphere:
// extraConfig, Hyper-V: Notes, SCVMM: Description) and MarkKey=MarkComplete
// as the very last step of its deploy, with a Record of what was deployed
// (image digest and version, CPUs, memory, disk, network, a digest of the
// non-secret answers). Plan then reads:
//   - no VM of the node's name: create;
//   - marked complete: unchanged, or drift (settings differ: Plan.Drift)
//     or outdated (another image) when its record says so; replace only
//     when Node.Replace, in place only what Node.ApplyDrift can change;
//   - marked pending: the leftover of an interrupted run, replaced;
//   - not marked at all: not ours; a permanent error unless
//     Node.ReplaceForeign, so a re-run never destroys someone's VM that
//     happens to share a name.
//
// So a re-run changes nothing in place and an interrupted run can simply be
// run again. A finished VM is replaced without being destroyed first
// (SwapIn): the new one is deployed under TempName, checked, renamed into
// place, and only then is the old one removed. Remove removes only VMs
// that carry the mark: a guest shutdown, a hard power-off after
// RemoveRequest.ShutdownTimeout, then the VM and its disks.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ksmg-appliance/ksmg/firstboot/answers"
)

// Roles of a node in a cluster (the same words as the first-boot answers).
const (
	RoleControl   = answers.RoleControl
	RoleSecondary = answers.RoleSecondary
)

// MarkKey names the mark a driver puts on a VM it creates; its value is
// MarkPending until the deploy finished and MarkComplete after.
const (
	MarkKey      = "ksmg.deploy"
	MarkPending  = "pending"
	MarkComplete = "complete"
)

// DefaultWaitIP is how long a deploy waits for the guest's address and
// first boot's completion signal unless told otherwise, for single
// deploys and fleets alike.
const DefaultWaitIP = 10 * time.Minute

// DefaultShutdownTimeout is how long Remove waits for a guest shutdown
// before it turns the VM off.
const DefaultShutdownTimeout = 2 * time.Minute

// Node is one appliance to put on one target.
type Node struct {
	Name      string // VM name on the target (unique per target)
	Role      string // RoleControl or RoleSecondary; "" is a standalone control node
	Image     string // local path of the OVA (vSphere) or VHDX (Hyper-V, SCVMM)
	CPUs      int    // 0: the image's default
	MemoryMiB int    // 0: the image's default
	DiskGiB   int    // 0: the size the image was built with; larger grows the disk
	// Network is the target network: vSphere port group, Hyper-V vSwitch,
	// SCVMM VM network. "" is the driver's default.
	Network string
	VLAN    int // Hyper-V/SCVMM VLAN ID; 0 is untagged
	// Properties are the first-boot answers under their ksmg.* keys
	// (firstboot/answers.Keys); they travel as vApp properties, guestinfo
	// OVF environment or KVP items. Secret values are never logged.
	Properties map[string]string
	PowerOn    bool
	// WaitIP is how long to wait for the guest to report an IP address
	// and first boot to report completion after power-on; 0 does not wait
	// (and the secret answers stay on the VM until Scrub).
	WaitIP time.Duration
	// Replace replaces a VM of the name that ksmg deployed, finished or
	// not; ReplaceForeign also one that ksmg did not make (never set by a
	// fleet).
	Replace, ReplaceForeign bool
	// ApplyDrift changes a finished VM whose settings drifted in place,
	// where that is safe (InPlace fields).
	ApplyDrift bool
	// Cluster names the fleet's cluster in the record; "" for a single
	// deploy.
	Cluster string
	// Progress, when set, receives upload progress; it may be called from
	// several goroutines.
	Progress func(stage string, done, total int64) `yaml:"-"`
	// Waiting, when set, is told while the deploy waits for the guest
	// (what, e.g. "IP address", and for how long so far), every few
	// seconds.
	Waiting func(what string, elapsed time.Duration) `yaml:"-"`
}

// Validate checks what every driver needs; drivers check their own extras.
func (n *Node) Validate() error {
	var errs []error
	if n.Name == "" {
		errs = append(errs, errors.New("name: must not be empty"))
	} else if strings.ContainsAny(n.Name, `/\"'`+"`$\x00\n\r") {
		errs = append(errs, fmt.Errorf("name %q: must not contain / \\ quotes $ or control characters", n.Name))
	} else if base, ok := strings.CutSuffix(n.Name, TempName("")); ok {
		errs = append(errs, fmt.Errorf("name %q: ends in %s, the name a replace of %s gives its new VM (a replace or remove of %s removes a VM so named)", n.Name, TempName(""), base, base))
	} else if base, ok := strings.CutSuffix(n.Name, AsideName("")); ok {
		errs = append(errs, fmt.Errorf("name %q: ends in %s, the name a replace of %s gives the old VM (a replace or remove of %s removes a VM so named)", n.Name, AsideName(""), base, base))
	}
	switch n.Role {
	case "", RoleControl, RoleSecondary:
	default:
		errs = append(errs, fmt.Errorf("role %q: expected %q or %q", n.Role, RoleControl, RoleSecondary))
	}
	if n.Image == "" {
		errs = append(errs, errors.New("image: must not be empty"))
	}
	if n.CPUs < 0 || n.MemoryMiB < 0 || n.DiskGiB < 0 || n.VLAN < 0 || n.VLAN > 4094 {
		errs = append(errs, errors.New("cpus, memory, disk must not be negative and vlan must be 0-4094"))
	}
	for _, k := range slices.Sorted(maps.Keys(n.Properties)) {
		if !strings.HasPrefix(k, answers.Prefix) {
			errs = append(errs, fmt.Errorf("property %q: first-boot keys start with %q", k, answers.Prefix))
		}
	}
	if n.WaitIP < 0 {
		errs = append(errs, errors.New("wait_ip must not be negative"))
	}
	if n.WaitIP > 0 && !n.PowerOn {
		errs = append(errs, errors.New("waiting for the guest's address needs power-on"))
	}
	errs = append(errs, CheckAnswers(n.Properties)...)
	return errors.Join(errs...)
}

// Action is what a deploy does (or would do) to a node.
type Action string

const (
	ActionCreate      Action = "create"      // no VM of that name
	ActionReplace     Action = "replace"     // pending leftover, or Replace asked
	ActionUnchanged   Action = "unchanged"   // a finished VM is in place, as asked
	ActionDrift       Action = "drift"       // a finished VM is in place with other settings (Plan.Drift)
	ActionOutdated    Action = "outdated"    // a finished VM is in place from another image
	ActionReconfigure Action = "reconfigure" // drift applied in place (Node.ApplyDrift)
	ActionOrphan      Action = "orphan"      // a VM of the cluster whose node left the inventory
	ActionRemove      Action = "remove"      // removed (or would be)
	ActionAbsent      Action = "absent"      // nothing to remove
	ActionScrub       Action = "scrub"       // secrets cleared from a finished VM
)

// Plan is what Deploy would do to one node; Plan never changes the target.
type Plan struct {
	Node   string
	Target string
	Action Action
	Reason string // why, e.g. "VM ksmg-1 exists (vm-42), deployed by ksmg"
	ID     string // the existing VM's ID, if any
	// IP is the existing VM's guest address where the plan reads it
	// anyway (vSphere, SCVMM; AddressReader elsewhere): a run that leaves
	// the control node out (--only) tells its Secondary nodes this.
	IP string
	// Drift lists the settings that differ from the VM's record, as
	// "field have → want" (DriftField names the field).
	Drift []string
}

// Result is what a deploy did to one node.
type Result struct {
	Node     string
	Target   string
	Action   Action
	ID       string // the VM's ID on the target: moref, Hyper-V VM GUID, SCVMM VM ID
	IP       string // the guest's IP address, when waited for
	Attempts int
	Elapsed  time.Duration
	Err      error
	Drift    []string // as in Plan
	// SecretsLeft says the secret answers are still in the VM's settings
	// (no completion signal was awaited): Scrub them once first boot is
	// done.
	SecretsLeft bool
}

// VM is a VM on a target that carries the mark.
type VM struct {
	Name   string
	ID     string
	State  string // power state as the target says it
	Record Record
}

// RemoveRequest asks Deployer.Remove to remove one VM.
type RemoveRequest struct {
	Name string
	// Plan only says what would be removed.
	Plan bool
	// ShutdownTimeout is how long a guest shutdown may take before the
	// VM is turned off; 0 means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
}

// Deployer puts nodes on one target. Implementations are safe for
// concurrent use by several goroutines (the fleet runner deploys several
// nodes of one target at once).
type Deployer interface {
	// Target names the target for tables and logs, e.g. "vsphere:vc-prague".
	Target() string
	Plan(ctx context.Context, n Node) (Plan, error)
	Deploy(ctx context.Context, n Node) (Result, error)
	// Deployed lists the VMs ksmg deployed (marked) where this target
	// deploys.
	Deployed(ctx context.Context) ([]VM, error)
	// Remove removes the VM of the name if it carries the mark (a VM
	// without it is a permanent error): guest shutdown, power-off after
	// the timeout, the VM and its disks deleted. Action ActionAbsent when
	// there is none.
	Remove(ctx context.Context, r RemoveRequest) (Result, error)
	// Scrub clears the secret answers from a finished VM's settings once
	// its first boot reported completion (a permanent error before).
	Scrub(ctx context.Context, n Node) (Result, error)
	Close() error
}

// ValidRemoveName checks the name of a VM to remove: any name a node may
// have, and the names a replace leaves (TempName, AsideName), which an
// admin removes by hand.
func ValidRemoveName(name string) error {
	base := strings.TrimSuffix(strings.TrimSuffix(name, TempName("")), AsideName(""))
	if base == "" {
		base = name
	}
	return (&Node{Name: base, Image: "-"}).Validate()
}

// AddressReader is a Deployer whose plans do not read the guest's
// address (it costs one more call to the host), and that reads it on
// request: the VM of that ID's current address, "" while it reports none.
type AddressReader interface {
	GuestAddress(ctx context.Context, id string) (string, error)
}

// permanent marks errors a retry cannot fix (bad configuration, missing
// datastore, rejected credentials).
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as not worth retrying.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// TargetSpec is one target of an inventory as a driver's Opener gets it.
type TargetSpec struct {
	Name string
	// Decode fills the driver's configuration struct from the target's
	// YAML and rejects unknown keys.
	Decode func(v any) error
	// Dir is the inventory's directory: relative paths in the settings
	// (password_file, ca_cert) are taken from it.
	Dir string
	// Logger gets the driver's progress lines; nil discards them.
	Logger *slog.Logger
}

// Opener makes a Deployer for one named target of an inventory.
type Opener func(ctx context.Context, t TargetSpec) (Deployer, error)

// Path resolves p (a setting's file path) against dir unless it is
// absolute or empty.
func Path(dir, p string) string {
	if p == "" || dir == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

var (
	driversMu sync.Mutex
	drivers   = map[string]Opener{}
)

// Register makes a driver available to inventories under kind ("vsphere",
// "hyperv", "scvmm"); drivers call it from init.
func Register(kind string, o Opener) {
	driversMu.Lock()
	defer driversMu.Unlock()
	if _, dup := drivers[kind]; dup {
		panic("deploy: driver registered twice: " + kind)
	}
	drivers[kind] = o
}

// Driver returns the opener registered for kind.
func Driver(kind string) (Opener, bool) {
	driversMu.Lock()
	defer driversMu.Unlock()
	o, ok := drivers[kind]
	return o, ok
}

// Drivers lists the registered kinds, sorted.
func Drivers() []string {
	driversMu.Lock()
	defer driversMu.Unlock()
	ks := make([]string, 0, len(drivers))
	for k := range drivers {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Redact returns props with every secret value (answers.IsSecret) replaced,
// for plans and logs.
func Redact(props map[string]string) map[string]string {
	out := make(map[string]string, len(props))
	for k, v := range props {
		if answers.IsSecret(k) && v != "" {
			v = "<secret>"
		}
		out[k] = v
	}
	return out
}

// Timed runs f for the VM name on target, as verb ("deploy", "remove"),
// and returns its Result with Node, Target, Attempts and Elapsed set and
// its error, if any, as "verb name on target: ..." (also in Result.Err).
// The drivers' Deploy, Remove and Scrub are this around their work.
func Timed(verb, name, target string, f func(res *Result) error) (Result, error) {
	start := time.Now()
	res := Result{Node: name, Target: target, Attempts: 1}
	err := f(&res)
	res.Elapsed = time.Since(start)
	if err != nil {
		err = fmt.Errorf("%s %s on %s: %w", verb, name, target, err)
		res.Err = err
	}
	return res, err
}

// HasSecrets reports whether any secret answer of props has a value: a
// deploy that does not wait for first boot leaves them on the VM.
func HasSecrets(props map[string]string) bool {
	for k, v := range props {
		if answers.IsSecret(k) && v != "" {
			return true
		}
	}
	return false
}

// SecretKeys are the keys of props' secret answers that have a value,
// sorted.
func SecretKeys(props map[string]string) []string {
	var keys []string
	for _, k := range slices.Sorted(maps.Keys(props)) {
		if answers.IsSecret(k) && props[k] != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// Notify tells n.Waiting every interval what the deploy waits for, until
// the returned stop is called.
func Notify(n Node, what string, interval time.Duration) (stop func()) {
	if n.Waiting == nil {
		return func() {}
	}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(max(interval, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n.Waiting(what, time.Since(start))
			}
		}
	}()
	return sync.OnceFunc(func() { close(done) })
}
