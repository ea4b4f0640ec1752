// Package hyperv deploys the appliance VHDX to a Hyper-V host as a
// Generation 2 VM. It is registered as deploy driver "hyperv".
//
// Hyper-V operations sit behind one Host interface with two drivers:
// WinRM + PowerShell (any OS; scripts rendered from the embedded templates
// in scripts/, every value through pwsh.Quote, every secret on the remote
// shell's standard input and never in script text, where script-block
// logging would record it; the disk goes over SMB) and WMI through
// github.com/microsoft/wmi (Windows only, wmi_windows.go; on the host
// itself or against a remote host with credentials).
//
// Plan is a pre-flight: the node and its answers checked as first boot
// will, the VHDX inspected (nothing is reached before it passed), the disk
// size, then the VM of the node's name read and compared with its record.
//
// A deploy, in order: the pre-flight; copy the disk to
// <share>\<folder>\<folder>.vhdx (host path <path>\<folder>\..., the
// folder being the node's name, or a fresh one for a replacement); create
// the VM with Notes carrying ksmg.deploy=pending and the record of what
// is deployed, CPU, static memory, vSwitch, VLAN, Secure Boot with the
// MicrosoftUEFICertificateAuthority template, and automatic start with the
// host and shutdown when the host stops; grow the disk; add the first-boot
// answers as host-to-guest KVP items (Msvm_KvpExchangeDataItem, Source 0)
// while the VM is still off, so they are in the guest's pool 0
// (/var/lib/hyperv/.kvp_pool_0, which firstboot/sources reads and scrubs)
// when hv_kvp_daemon starts; start; wait for the guest's address, which
// Hyper-V learns from the guest's KVP intrinsic items; when the deploy
// waits (Node.WaitIP > 0), wait within the same deadline for first boot's
// own signal, the guest-to-host item ksmg.firstboot=done
// (firstboot/sources.DoneKey, in the VM's GuestExchangeItems), which it
// writes after applying its answers and scrubbing them in the guest, then
// remove the secret answers (answers.IsSecret) from the VM's host-to-guest
// items (RemoveKvpItems, key names only) so they do not stay in its
// configuration and exports. Without WaitIP nothing says first boot is
// done: the items stay (Result.SecretsLeft) until Scrub. Only then are the
// Notes set to ksmg.deploy=complete. A failure before the VM started
// removes the VM and the node's folder, so a retry starts clean; a guest
// that does not report in time is left running, marked pending, for
// inspection (the next run replaces it).
//
// Plan keeps the deploy package's idempotence contract as the vsphere
// driver does: a VM marked complete is left alone (drift and outdated
// images reported, changed in place with ApplyDrift) unless Replace is set,
// and then swapped (deploy.SwapIn), never destroyed first; one marked
// pending is a leftover and is replaced; one without any ksmg.deploy mark
// was not made by ksmg and is never removed unless ReplaceForeign is set.
package hyperv

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ksmg-appliance/ksmg/deploy"
)

// Kind is the driver's name in inventories.
const Kind = "hyperv"

// SecureBootTemplate trusts the shim of a Linux distribution (the Windows
// template would refuse it).
const SecureBootTemplate = "MicrosoftUEFICertificateAuthority"

// PendingMark is the mark of a VM whose deploy has not finished.
const PendingMark = deploy.MarkPending

// VM is a Hyper-V VM as the driver sees it.
type VM struct {
	ID    string `json:"id"` // VMId GUID
	Name  string `json:"name"`
	Notes string `json:"notes"`
	State string `json:"state"`
}

// Record is the deploy record in the VM's notes (State "" when the notes
// carry no mark).
func (v VM) Record() deploy.Record { return deploy.ParseRecordText(v.Notes) }

// Notes is the VM note carrying the record, a key=value line each.
func Notes(r deploy.Record) string { return r.Text("\n") }

// VMSpec is a VM to create.
type VMSpec struct {
	Name      string
	Path      string // host folder under which Hyper-V keeps the VM (<path>\<name>)
	VHDX      string // host path of the copied disk
	CPUs      int
	MemoryMiB int
	Switch    string
	VLAN      int // 0: untagged
	Notes     string
}

// KVPItem is one host-to-guest key/value.
type KVPItem struct{ Key, Value string }

// Guest pool record limits (firstboot/sources: 512-byte keys, 2048-byte
// values, each with its terminating NUL).
const (
	maxKVPKey   = 511
	maxKVPValue = 2047
)

// Host is what a deploy needs from a Hyper-V host. Errors from a step
// name the step and, for scripts, carry the host's own words.
type Host interface {
	// Name is the host's name for tables and logs.
	Name() string
	// FindVM returns the VM named name, nil if there is none; several
	// VMs of that name are an error.
	FindVM(ctx context.Context, name string) (*VM, error)
	// ListVMs returns the VMs whose notes carry the deploy mark.
	ListVMs(ctx context.Context) ([]VM, error)
	// CopyDisk puts the local VHDX into the node folder folder (under the
	// configured path) and returns its path on the host.
	CopyDisk(ctx context.Context, local, folder string, progress func(done, total int64)) (string, error)
	// CreateVM creates a Generation 2 VM, off, and returns its ID.
	CreateVM(ctx context.Context, spec VMSpec) (string, error)
	// ResizeDisk grows the VHDX at the host path to size bytes.
	ResizeDisk(ctx context.Context, path string, size uint64) error
	// AddKVP adds host-to-guest KVP items to the VM; the values (secrets
	// among them) never enter a script's text.
	AddKVP(ctx context.Context, id string, items []KVPItem) error
	Start(ctx context.Context, id string) error
	// Stop shuts the guest down through the integration services and
	// turns the VM off if it is not off within timeout.
	Stop(ctx context.Context, id string, timeout time.Duration) error
	// GuestIP returns the guest's reported address, "" while it has none.
	GuestIP(ctx context.Context, id string) (string, error)
	// GuestKVP returns the guest-to-host KVP items of the VM (the
	// guest's pool 1): the raw XML-embedded Msvm_KvpExchangeDataItem
	// instances of its GuestExchangeItems, none while the guest reports
	// none. kvp.GuestItem decodes them.
	GuestKVP(ctx context.Context, id string) ([]string, error)
	// RemoveKVP removes host-to-guest KVP items by key; only the names
	// travel, never the values.
	RemoveKVP(ctx context.Context, id string, keys []string) error
	SetNotes(ctx context.Context, id, notes string) error
	Rename(ctx context.Context, id, name string) error
	// Reconfigure changes what c sets (zero fields stay); CPUs and memory
	// only while the VM is off.
	Reconfigure(ctx context.Context, id string, c Change) error
	// Remove turns off and removes the VM id (if not "") with its disks,
	// and deletes the node folder folder (if not "") and the folders of
	// its disks, as far as they are inside the configured path.
	Remove(ctx context.Context, folder, id string) error
	Close() error
}

// Change is what Host.Reconfigure changes; zero fields stay as they are.
type Change struct {
	CPUs, MemoryMiB int
	DiskBytes       uint64 // grow the VM's disk to this size
	Switch          string // connect the adapter to this vSwitch, tagged with VLAN (0: untagged)
	VLAN            int
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// checkID rejects anything but a VM GUID, the only IDs the drivers accept.
func checkID(id string) error {
	if !guidRE.MatchString(id) {
		return fmt.Errorf("VM id %q is not a GUID", id)
	}
	return nil
}

// joinWin joins Windows path elements with single backslashes.
func joinWin(elem ...string) string {
	var parts []string
	for i, e := range elem {
		if i > 0 {
			e = strings.TrimLeft(e, `\`)
		}
		if i < len(elem)-1 {
			e = strings.TrimRight(e, `\`)
		}
		parts = append(parts, e)
	}
	return strings.Join(parts, `\`)
}
