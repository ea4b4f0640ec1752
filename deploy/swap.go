package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Swap is what a driver gives SwapIn to replace the VM OldID of Name
// without destroying it first.
type Swap struct {
	Name  string
	OldID string
	// Clear removes a VM of the name that carries the mark, if there is
	// one: a replacement or an old VM an earlier, failed swap left.
	Clear func(ctx context.Context, name string) error
	// Deploy deploys the node as a new VM of the given name, finished
	// and checked (as a deploy of its own, marked complete last).
	Deploy func(ctx context.Context, name string) (Result, error)
	Rename func(ctx context.Context, id, name string) error
	// Remove removes a VM by ID: guest shutdown, power-off, VM and disks.
	Remove func(ctx context.Context, id string) error
	Log    *slog.Logger
}

// SwapNames are the names a deploy planned as p (the node's VM having
// record rec; aside: found as AsideName after a replace stopped between
// its renames) clears of marked VMs before it changes anything: a swap's
// TempName and AsideName, a recovery's TempName. A VM ksmg did not make
// under one of them stops the run (ErrNotOurs), so a plan checks them too.
func SwapNames(name string, p Plan, rec Record, aside bool) []string {
	switch {
	case p.Action == ActionReplace && (rec.Complete() || !rec.Marked()):
		return []string{TempName(name), AsideName(name)}
	case aside:
		return []string{TempName(name)}
	}
	return nil
}

// ErrNameTaken is the error of a name SwapNames lists that a VM ksmg did
// not make has.
func ErrNameTaken(name, id string) error {
	return Permanent(fmt.Errorf("VM %s (%s) is %w and has the name ksmg needs for the swap", name, id, ErrNotOurs))
}

// SwapIn replaces a finished VM: the new one is deployed under TempName
// and checked; then the old one is renamed to AsideName, the new one to
// Name, and only then is the old one removed. Until the new VM is proven,
// a failure leaves the old VM running under its name (a replacement that
// failed is removed, or, when its guest did not report, turned off and
// left marked pending for inspection: it must not run beside the VM in
// service, whose address and host name it has). A failure to remove the old VM after the swap leaves
// it as AsideName, still marked, for `ksmg deploy remove` (a fleet sees
// it as an orphan).
func SwapIn(ctx context.Context, s Swap) (Result, error) {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tmp, aside := TempName(s.Name), AsideName(s.Name)
	for _, n := range []string{tmp, aside} {
		if err := s.Clear(ctx, n); err != nil {
			return Result{}, fmt.Errorf("remove %s, left by an earlier replace: %w", n, err)
		}
	}
	log.Info("deploying the replacement under a temporary name", "vm", s.Name, "as", tmp)
	res, err := s.Deploy(ctx, tmp)
	if err != nil {
		return res, fmt.Errorf("replacement %s: %w (the VM %s in service is untouched)", tmp, err, s.Name)
	}
	// From here on the swap is finished even if ctx ends: a half-done
	// swap is worse than a late one.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	discard := func() {
		if err := s.Remove(sctx, res.ID); err != nil {
			log.Warn("could not remove the replacement; remove it by hand or run again", "vm", tmp, "id", res.ID, "err", err)
		}
	}
	if err := s.Rename(sctx, s.OldID, aside); err != nil {
		discard()
		return res, fmt.Errorf("rename %s (%s) to %s: %w (the VM in service is untouched; the replacement was removed)", s.Name, s.OldID, aside, err)
	}
	if err := s.Rename(sctx, res.ID, s.Name); err != nil {
		if berr := s.Rename(sctx, s.OldID, s.Name); berr != nil {
			return res, fmt.Errorf("rename %s to %s: %w; and renaming the old VM back failed too: %w (the old VM runs as %s, the replacement as %s)", tmp, s.Name, err, berr, aside, tmp)
		}
		discard()
		return res, fmt.Errorf("rename %s to %s: %w (the VM in service is back under its name; the replacement was removed)", tmp, s.Name, err)
	}
	log.Info("replacement in service; removing the old VM", "vm", s.Name, "id", res.ID, "old", s.OldID)
	if err := s.Remove(sctx, s.OldID); err != nil {
		return res, fmt.Errorf("the replacement is in service as %s (%s), but the old VM, now %s (%s), could not be removed: %w; remove it with ksmg deploy remove --name %s", s.Name, res.ID, aside, s.OldID, err, aside)
	}
	return res, nil
}

// ErrNotOurs is a VM of the name that ksmg did not make: Remove never
// touches it.
var ErrNotOurs = errors.New("not deployed by ksmg")
