// Package hyperv deploys the appliance VHDX to a Hyper-V host as a
// Generation 2 VM. It is registered as deploy driver "hyperv".
//
// Hyper-V operations sit behind one Host interface with two drivers:
// WinRM + PowerShell (any OS; scripts rendered from the embedded templates
// in scripts/, every value through pwsh.Quote; the disk goes over SMB) and
// WMI through github.com/microsoft/wmi (Windows only, wmi_windows.go; on
// the host itself or against a remote host with credentials).
//
// A deploy, in order: inspect the VHDX (nothing is created if it is not a
// valid VHDX); find a VM of the node's name; copy the disk to
// <share>\<name>\<name>.vhdx (host path <path>\<name>\<name>.vhdx); create
// the VM with Notes "ksmg.deploy=pending", CPU, static memory, vSwitch,
// VLAN and Secure Boot with the MicrosoftUEFICertificateAuthority template;
// grow the disk; add the first-boot answers as host-to-guest KVP items
// (Msvm_KvpExchangeDataItem, Source 0) while the VM is still off, so they
// are in the guest's pool 0 (/var/lib/hyperv/.kvp_pool_0, which
// firstboot/sources reads and scrubs) when hv_kvp_daemon starts; start;
// wait for the guest's address, which Hyper-V learns from the guest's KVP
// intrinsic items; when the deploy waits (Node.WaitIP > 0), wait within the
// same deadline for first boot's own signal, the guest-to-host item
// ksmg.firstboot=done (firstboot/sources.DoneKey, in the VM's
// GuestExchangeItems), which it writes after applying its answers and
// scrubbing them in the guest, then remove the secret answers
// (answers.IsSecret) from the VM's host-to-guest items (RemoveKvpItems,
// key names only) so they do not stay in its configuration and exports; if
// the signal does not come in time the deploy fails, retryably. Without
// WaitIP nothing says first boot is done and the items stay. Only then set
// Notes to "ksmg.deploy=complete". A
// failure after the disk was copied removes the VM and the node's folder,
// so a retry starts clean.
//
// Plan keeps the deploy package's idempotence contract as the vsphere
// driver does: a VM marked complete is left alone unless Replace is set;
// one marked pending is a leftover and is replaced; one without any
// ksmg.deploy mark was not made by ksmg and is never removed unless
// Replace is set.
package hyperv

import (
	"context"
	"fmt"
	"regexp"
	"strings"

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

// Mark returns the value of the ksmg.deploy line in the VM's notes and
// whether there is one.
func (v VM) Mark() (string, bool) {
	for _, l := range strings.Split(strings.ReplaceAll(v.Notes, "\r\n", "\n"), "\n") {
		if val, ok := strings.CutPrefix(strings.TrimSpace(l), deploy.MarkKey+"="); ok {
			return val, true
		}
	}
	return "", false
}

// Notes is the VM note carrying mark.
func Notes(mark string) string { return deploy.MarkKey + "=" + mark }

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
	// CopyDisk puts the local VHDX where the node's VM will use it and
	// returns its path on the host.
	CopyDisk(ctx context.Context, local, name string, progress func(done, total int64)) (string, error)
	// CreateVM creates a Generation 2 VM, off, and returns its ID.
	CreateVM(ctx context.Context, spec VMSpec) (string, error)
	// ResizeDisk grows the VHDX at the host path to size bytes.
	ResizeDisk(ctx context.Context, path string, size uint64) error
	// AddKVP adds host-to-guest KVP items to the VM.
	AddKVP(ctx context.Context, id string, items []KVPItem) error
	Start(ctx context.Context, id string) error
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
	// Remove turns off and removes the VM id (if not "") with its disks,
	// and deletes the node's folder.
	Remove(ctx context.Context, name, id string) error
	Close() error
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
