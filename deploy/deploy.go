// Package deploy is what every target driver (vsphere, hyperv, scvmm) has in
// common: the Node an admin asks for, the Plan that says what a deploy would
// do, the Result it reports, and the Deployer interface the fleet runner and
// the ksmg command drive.
//
// Idempotence contract, kept by every driver: a VM the driver creates is
// marked MarkKey=MarkPending from its first moment on the target (vSphere:
// extraConfig, Hyper-V: Notes, SCVMM: Description) and MarkKey=MarkComplete
// as the very last step of its deploy. Plan then reads:
//   - no VM of the node's name: create;
//   - marked complete: unchanged (replace only when Node.Replace);
//   - marked pending: the leftover of an interrupted run, replaced;
//   - not marked at all: not ours; a permanent error unless Node.Replace,
//     so a re-run never destroys someone's VM that happens to share a name.
//
// So a re-run changes nothing in place and an interrupted run can simply be
// run again.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
	// after power-on; 0 does not wait.
	WaitIP  time.Duration
	Replace bool // replace a finished VM of the same name
	// Progress, when set, receives upload progress; it may be called from
	// several goroutines.
	Progress func(stage string, done, total int64) `yaml:"-"`
}

// Validate checks what every driver needs; drivers check their own extras.
func (n *Node) Validate() error {
	var errs []error
	if n.Name == "" {
		errs = append(errs, errors.New("name: must not be empty"))
	} else if strings.ContainsAny(n.Name, `/\"'`+"`$\x00\n\r") {
		errs = append(errs, fmt.Errorf("name %q: must not contain / \\ quotes $ or control characters", n.Name))
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
	return errors.Join(errs...)
}

// Action is what a deploy does (or would do) to a node.
type Action string

const (
	ActionCreate    Action = "create"    // no VM of that name
	ActionReplace   Action = "replace"   // pending leftover, or Replace asked
	ActionUnchanged Action = "unchanged" // a finished VM is in place
)

// Plan is what Deploy would do to one node; Plan never changes the target.
type Plan struct {
	Node   string
	Target string
	Action Action
	Reason string // why, e.g. "VM ksmg-1 exists (vm-42), deployed by ksmg"
	ID     string // the existing VM's ID, if any
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
}

// Deployer puts nodes on one target. Implementations are safe for
// concurrent use by several goroutines (the fleet runner deploys several
// nodes of one target at once).
type Deployer interface {
	// Target names the target for tables and logs, e.g. "vsphere:vc-prague".
	Target() string
	Plan(ctx context.Context, n Node) (Plan, error)
	Deploy(ctx context.Context, n Node) (Result, error)
	Close() error
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

// Opener makes a Deployer for one named target of an inventory. decode fills
// the driver's configuration struct from the target's YAML and rejects
// unknown keys.
type Opener func(ctx context.Context, name string, decode func(v any) error) (Deployer, error)

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
