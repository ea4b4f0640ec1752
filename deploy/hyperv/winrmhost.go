package hyperv

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/ksmg-appliance/ksmg/deploy/pwsh"
)

//go:embed scripts/*.ps1
var scriptFS embed.FS

var scripts = template.Must(template.New("").Funcs(pwsh.Funcs).ParseFS(scriptFS, "scripts/*.ps1"))

// PSHost is the WinRM + PowerShell driver: each operation is one script
// from scripts/, run by a pwsh.Runner; disks are copied by a pwsh.Copier.
// KVP values (secrets among them) go to the scripts on standard input,
// never into script text.
type PSHost struct {
	host   string
	run    pwsh.Runner
	copier pwsh.Copier
	share  string // UNC folder the copier writes to
	path   string // the same folder as the host sees it
}

// NewPSHost returns a Host that drives host through run and copies disks
// with copier into share, which the host sees as path.
func NewPSHost(host string, run pwsh.Runner, copier pwsh.Copier, share, path string) *PSHost {
	return &PSHost{host: host, run: run, copier: copier, share: share, path: path}
}

// Name implements Host.
func (h *PSHost) Name() string { return h.host }

// Close implements Host.
func (h *PSHost) Close() error { return nil }

// The data of the scripts, by template.
type (
	nameData   struct{ Name string }
	idData     struct{ ID string }
	createData struct {
		VMSpec
		MemoryBytes uint64
	}
	resizeData struct {
		VHDX      string
		SizeBytes uint64
	}
	kvpData struct {
		ID   string
		Keys []string // the values are the script's input
	}
	notesData  struct{ ID, Notes string }
	removeData struct{ ID, Root, Dir string }
	stopData   struct {
		ID             string
		TimeoutSeconds int
	}
	renameData      struct{ ID, Name string }
	reconfigureData struct {
		ID                     string
		CPUs                   int
		MemoryBytes, DiskBytes uint64
		Switch                 string
		VLAN                   int
	}
)

// script renders and runs one template with input on its standard input;
// a failing script becomes a *pwsh.ScriptError naming step.
func (h *PSHost) script(ctx context.Context, name, step string, data any, input pwsh.Input) (string, error) {
	s, err := pwsh.Render(scripts, name, data)
	if err != nil {
		return "", err
	}
	out, err := h.run.Run(ctx, s, input)
	if err != nil {
		return "", fmt.Errorf("%s: %w", step, err)
	}
	if out.ExitCode != 0 {
		return "", &pwsh.ScriptError{Step: step, ExitCode: out.ExitCode, Stderr: out.Stderr}
	}
	return strings.TrimSpace(out.Stdout), nil
}

// FindVM implements Host.
func (h *PSHost) FindVM(ctx context.Context, name string) (*VM, error) {
	out, err := h.script(ctx, "find.ps1", "find VM "+name, nameData{name}, nil)
	if err != nil {
		return nil, err
	}
	var vm *VM
	if err := json.Unmarshal([]byte(out), &vm); err != nil {
		return nil, fmt.Errorf("find VM %s: host answered %.200q: %w", name, out, err)
	}
	if vm != nil {
		if err := checkID(vm.ID); err != nil {
			return nil, fmt.Errorf("find VM %s: %w", name, err)
		}
	}
	return vm, nil
}

// ListVMs implements Host.
func (h *PSHost) ListVMs(ctx context.Context) ([]VM, error) {
	out, err := h.script(ctx, "list.ps1", "list VMs", struct{}{}, nil)
	if err != nil {
		return nil, err
	}
	var r struct {
		VMs json.RawMessage `json:"vms"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return nil, fmt.Errorf("list VMs: host answered %.200q: %w", out, err)
	}
	// Windows PowerShell may write a one-element array as the element.
	var vms []VM
	if len(r.VMs) > 0 && r.VMs[0] == '{' {
		var one VM
		err = json.Unmarshal(r.VMs, &one)
		vms = []VM{one}
	} else if len(r.VMs) > 0 && string(r.VMs) != "null" {
		err = json.Unmarshal(r.VMs, &vms)
	}
	if err != nil {
		return nil, fmt.Errorf("list VMs: %w", err)
	}
	for _, vm := range vms {
		if err := checkID(vm.ID); err != nil {
			return nil, fmt.Errorf("list VMs: %w", err)
		}
	}
	return vms, nil
}

// CopyDisk implements Host.
func (h *PSHost) CopyDisk(ctx context.Context, local, folder string, progress func(done, total int64)) (string, error) {
	remote := joinWin(h.share, folder, folder+".vhdx")
	if err := h.copier.Copy(ctx, local, remote, progress); err != nil {
		return "", fmt.Errorf("copy disk to %s: %w", remote, err)
	}
	return joinWin(h.path, folder, folder+".vhdx"), nil
}

// CreateVM implements Host.
func (h *PSHost) CreateVM(ctx context.Context, s VMSpec) (string, error) {
	id, err := h.script(ctx, "create.ps1", "create VM "+s.Name, createData{s, uint64(s.MemoryMiB) << 20}, nil)
	if err != nil {
		return "", err
	}
	if err := checkID(id); err != nil {
		return "", fmt.Errorf("create VM %s: %w", s.Name, err)
	}
	return id, nil
}

// ResizeDisk implements Host.
func (h *PSHost) ResizeDisk(ctx context.Context, path string, size uint64) error {
	_, err := h.script(ctx, "resize.ps1", "resize disk "+path, resizeData{path, size}, nil)
	return err
}

// AddKVP implements Host: the keys are in the script, the values on its
// standard input.
func (h *PSHost) AddKVP(ctx context.Context, id string, items []KVPItem) error {
	if err := checkID(id); err != nil {
		return err
	}
	data := kvpData{ID: id}
	in := pwsh.Input{}
	for _, it := range items {
		data.Keys = append(data.Keys, it.Key)
		in[it.Key] = it.Value
	}
	_, err := h.script(ctx, "kvp.ps1", "add KVP items to VM "+id, data, in)
	return err
}

// Start implements Host.
func (h *PSHost) Start(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	_, err := h.script(ctx, "start.ps1", "start VM "+id, idData{id}, nil)
	return err
}

// Stop implements Host.
func (h *PSHost) Stop(ctx context.Context, id string, timeout time.Duration) error {
	if err := checkID(id); err != nil {
		return err
	}
	_, err := h.script(ctx, "stop.ps1", "stop VM "+id, stopData{id, int(timeout.Round(time.Second) / time.Second)}, nil)
	return err
}

// GuestIP implements Host.
func (h *PSHost) GuestIP(ctx context.Context, id string) (string, error) {
	if err := checkID(id); err != nil {
		return "", err
	}
	return h.script(ctx, "ip.ps1", "guest address of VM "+id, idData{id}, nil)
}

// GuestKVP implements Host.
func (h *PSHost) GuestKVP(ctx context.Context, id string) ([]string, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	out, err := h.script(ctx, "guestkvp.ps1", "guest KVP items of VM "+id, idData{id}, nil)
	if err != nil {
		return nil, err
	}
	var r struct {
		Items json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return nil, fmt.Errorf("guest KVP items of VM %s: host answered %.200q: %w", id, out, err)
	}
	// Windows PowerShell may write a one-element array as the element.
	var items []string
	if len(r.Items) > 0 && r.Items[0] == '"' {
		var one string
		err = json.Unmarshal(r.Items, &one)
		items = []string{one}
	} else if len(r.Items) > 0 && string(r.Items) != "null" {
		err = json.Unmarshal(r.Items, &items)
	}
	if err != nil {
		return nil, fmt.Errorf("guest KVP items of VM %s: want a list of strings: %w", id, err)
	}
	return items, nil
}

// RemoveKVP implements Host.
func (h *PSHost) RemoveKVP(ctx context.Context, id string, keys []string) error {
	if err := checkID(id); err != nil {
		return err
	}
	_, err := h.script(ctx, "unkvp.ps1", "remove KVP items from VM "+id, kvpData{id, keys}, nil)
	return err
}

// SetNotes implements Host.
func (h *PSHost) SetNotes(ctx context.Context, id, notes string) error {
	if err := checkID(id); err != nil {
		return err
	}
	_, err := h.script(ctx, "notes.ps1", "set notes of VM "+id, notesData{id, notes}, nil)
	return err
}

// Rename implements Host.
func (h *PSHost) Rename(ctx context.Context, id, name string) error {
	if err := checkID(id); err != nil {
		return err
	}
	_, err := h.script(ctx, "rename.ps1", "rename VM "+id+" to "+name, renameData{id, name}, nil)
	return err
}

// Reconfigure implements Host.
func (h *PSHost) Reconfigure(ctx context.Context, id string, c Change) error {
	if err := checkID(id); err != nil {
		return err
	}
	data := reconfigureData{ID: id, CPUs: c.CPUs, MemoryBytes: uint64(c.MemoryMiB) << 20, DiskBytes: c.DiskBytes, Switch: c.Switch, VLAN: c.VLAN}
	_, err := h.script(ctx, "reconfigure.ps1", "reconfigure VM "+id, data, nil)
	return err
}

// Remove implements Host.
func (h *PSHost) Remove(ctx context.Context, folder, id string) error {
	if id != "" {
		if err := checkID(id); err != nil {
			return err
		}
	}
	dir := ""
	if folder != "" {
		dir = joinWin(h.path, folder)
	}
	_, err := h.script(ctx, "remove.ps1", "remove VM "+id+" "+folder, removeData{id, h.path, dir}, nil)
	return err
}

var _ Host = (*PSHost)(nil)
