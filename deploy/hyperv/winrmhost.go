package hyperv

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"strings"
	"text/template"

	"github.com/ksmg-appliance/ksmg/deploy/pwsh"
)

//go:embed scripts/*.ps1
var scriptFS embed.FS

var scripts = template.Must(template.New("").Funcs(pwsh.Funcs).ParseFS(scriptFS, "scripts/*.ps1"))

// PSHost is the WinRM + PowerShell driver: each operation is one script
// from scripts/, run by a pwsh.Runner; disks are copied by a pwsh.Copier.
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

// script renders and runs one template; a failing script becomes a
// *pwsh.ScriptError naming step.
func (h *PSHost) script(ctx context.Context, name, step string, data any) (string, error) {
	s, err := pwsh.Render(scripts, name, data)
	if err != nil {
		return "", err
	}
	out, err := h.run.Run(ctx, s)
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
	out, err := h.script(ctx, "find.ps1", "find VM "+name, struct{ Name string }{name})
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

// CopyDisk implements Host.
func (h *PSHost) CopyDisk(ctx context.Context, local, name string, progress func(done, total int64)) (string, error) {
	remote := joinWin(h.share, name, name+".vhdx")
	if err := h.copier.Copy(ctx, local, remote, progress); err != nil {
		return "", fmt.Errorf("copy disk to %s: %w", remote, err)
	}
	return joinWin(h.path, name, name+".vhdx"), nil
}

// CreateVM implements Host.
func (h *PSHost) CreateVM(ctx context.Context, s VMSpec) (string, error) {
	data := struct {
		VMSpec
		MemoryBytes uint64
	}{s, uint64(s.MemoryMiB) << 20}
	id, err := h.script(ctx, "create.ps1", "create VM "+s.Name, data)
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
	_, err := h.script(ctx, "resize.ps1", "resize disk "+path, struct {
		VHDX      string
		SizeBytes uint64
	}{path, size})
	return err
}

// AddKVP implements Host.
func (h *PSHost) AddKVP(ctx context.Context, id string, items []KVPItem) error {
	if err := checkID(id); err != nil {
		return err
	}
	_, err := h.script(ctx, "kvp.ps1", "add KVP items to VM "+id, struct {
		ID    string
		Items []KVPItem
	}{id, items})
	return err
}

type idData struct{ ID string }

// Start implements Host.
func (h *PSHost) Start(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	_, err := h.script(ctx, "start.ps1", "start VM "+id, idData{id})
	return err
}

// GuestIP implements Host.
func (h *PSHost) GuestIP(ctx context.Context, id string) (string, error) {
	if err := checkID(id); err != nil {
		return "", err
	}
	return h.script(ctx, "ip.ps1", "guest address of VM "+id, idData{id})
}

// GuestKVP implements Host.
func (h *PSHost) GuestKVP(ctx context.Context, id string) ([]string, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	out, err := h.script(ctx, "guestkvp.ps1", "guest KVP items of VM "+id, idData{id})
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
	_, err := h.script(ctx, "unkvp.ps1", "remove KVP items from VM "+id, struct {
		ID   string
		Keys []string
	}{id, keys})
	return err
}

// SetNotes implements Host.
func (h *PSHost) SetNotes(ctx context.Context, id, notes string) error {
	if err := checkID(id); err != nil {
		return err
	}
	_, err := h.script(ctx, "notes.ps1", "set notes of VM "+id, struct{ ID, Notes string }{id, notes})
	return err
}

// Remove implements Host.
func (h *PSHost) Remove(ctx context.Context, name, id string) error {
	if id != "" {
		if err := checkID(id); err != nil {
			return err
		}
	}
	_, err := h.script(ctx, "remove.ps1", "remove VM "+name, struct{ ID, Dir string }{id, joinWin(h.path, name)})
	return err
}

var _ Host = (*PSHost)(nil)
