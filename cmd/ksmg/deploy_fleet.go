package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/fleet"
)

// Exit statuses of `ksmg deploy fleet` besides 0 (every node ok) and 1
// (anything else, e.g. an unwritable output).
const (
	exitBadInventory = 2 // unreadable or invalid inventory; nothing was touched
	exitNodesFailed  = 3 // the run (or plan) finished, but not every node is ok
)

// fleetFlags are the flags of `ksmg deploy fleet` (and, in part, of
// `ksmg deploy remove fleet`).
type fleetFlags struct {
	plan            bool
	concurrency     int
	retries         int
	backoff         time.Duration
	replace         bool
	applyDrift      bool
	prune           bool
	scrub           bool
	only            []string
	shutdownTimeout time.Duration
}

func newDeployFleetCmd(a *app) *cobra.Command {
	var ff fleetFlags
	cmd := &cobra.Command{
		Use:   "fleet INVENTORY",
		Short: "Deploy a cluster of appliances across targets from one inventory (fleet.yaml)",
		Long: `fleet deploys every node of an inventory (see deploy/fleet/example/fleet.yaml):
the Control node first, the Secondary nodes once it answers, at most
--concurrency at a time. The inventory is checked completely before anything
is touched; every problem is reported as file:line: reason (exit status 2).

A node's failure does not stop the others. Failures other than permanent
ones (bad settings, missing datastore, rejected login, an untrusted
certificate) are retried with a doubling backoff, a target that cannot be
reached among them (reported once, not once per node); each retry plans
afresh, so a VM a failed attempt left half-made is replaced, never
duplicated. A node whose guest does not report in time (wait_ip) is left
running, marked pending, for inspection; the next run replaces it. If the
Control node fails, the Secondary nodes are skipped. Ctrl-C starts no
further node.

Running the same inventory again changes nothing already in place, and an
interrupted run can simply be run again. --plan runs every check a run
would (images, answers, targets) and shows what it would do: create,
replace, unchanged, drift (the VM's settings differ from the node's, with
the fields; on vSphere as the VM is now, changes by hand included), outdated (it runs another image) and orphan (a VM of the cluster
whose node left the inventory). --apply-drift changes what can change in
place, --replace redeploys (swapping a new VM in; a VM ksmg did not make is
never replaced by a fleet), --prune removes orphans, --only limits the run
to some nodes, --scrub clears the secret answers from nodes deployed
without waiting.

A table of the nodes is printed at the end (JSON with --json: the same
schema as a single deploy). Exit status: 0 every node ok, 2 invalid
inventory or flags, 3 some node failed or was skipped, 1 other errors.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFleet(cmd, a, &ff, args[0], cmd.OutOrStdout(), false)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&ff.plan, "plan", false, "run every check a run would and print what it would do; touch nothing")
	ff.addRun(f)
	f.BoolVar(&ff.replace, "replace", false, "replace nodes that are already deployed: each gets a new VM, swapped in once it is proven, the old one removed after")
	f.BoolVar(&ff.applyDrift, "apply-drift", false, "change drifted nodes in place where safe (CPUs, memory, disk growth, network)")
	f.BoolVar(&ff.prune, "prune", false, "remove the cluster's VMs whose nodes left the inventory (orphans)")
	f.BoolVar(&ff.scrub, "scrub", false, "clear the secret answers from nodes whose first boot reported completion; deploy nothing")
	f.DurationVar(&ff.shutdownTimeout, "shutdown-timeout", deploy.DefaultShutdownTimeout, "with --prune: how long a guest may take to shut down before its VM is turned off")
	return cmd
}

// addRun adds the flags every fleet run has.
func (ff *fleetFlags) addRun(f interface {
	IntVar(*int, string, int, string)
	DurationVar(*time.Duration, string, time.Duration, string)
	StringSliceVar(*[]string, string, []string, string)
}) {
	f.IntVar(&ff.concurrency, "concurrency", 4, "nodes deployed at once")
	f.IntVar(&ff.retries, "retries", 2, "further attempts of a node after a failure that is not permanent")
	f.DurationVar(&ff.backoff, "backoff", 5*time.Second, "wait before the first retry (doubled for each next one, at most 2m)")
	f.StringSliceVar(&ff.only, "only", nil, "only these nodes, by name (comma separated)")
}

// openFleet loads and opens the inventory for a run of ff.
func openFleet(cmd *cobra.Command, a *app, ff *fleetFlags, path string) (*fleet.Fleet, fleet.Options, error) {
	var opt fleet.Options
	if ff.concurrency < 1 {
		return nil, opt, &exitError{exitBadInventory, fmt.Errorf("--concurrency %d: must be at least 1", ff.concurrency)}
	}
	if ff.retries < 0 {
		return nil, opt, &exitError{exitBadInventory, fmt.Errorf("--retries %d: must not be negative", ff.retries)}
	}
	inv, err := fleet.Load(path)
	if err != nil {
		return nil, opt, &exitError{exitBadInventory, err}
	}
	if err := inv.CheckOnly(ff.only); err != nil {
		return nil, opt, &exitError{exitBadInventory, err}
	}
	log := a.logger()
	fl, err := fleet.Open(cmd.Context(), inv, log)
	if err != nil {
		var ie *fleet.InventoryError
		if errors.As(err, &ie) {
			return nil, opt, &exitError{exitBadInventory, err}
		}
		return nil, opt, err
	}
	progress := a.newProgress(cmd.ErrOrStderr())
	opt = fleet.Options{
		Concurrency: ff.concurrency, Retries: ff.retries, Backoff: ff.backoff,
		Replace: ff.replace, ApplyDrift: ff.applyDrift, Prune: ff.prune, Only: ff.only,
		ShutdownTimeout: ff.shutdownTimeout, Logger: log,
		Progress: progress.progress, Waiting: progress.waiting, Done: progress.done,
	}
	return fl, opt, nil
}

func runFleet(cmd *cobra.Command, a *app, ff *fleetFlags, path string, w io.Writer, remove bool) error {
	ctx := cmd.Context()
	fl, opt, err := openFleet(cmd, a, ff, path)
	if err != nil {
		return err
	}
	defer fl.Close()

	if ff.plan && !remove {
		rows := fl.Plan(ctx, opt)
		if a.json {
			err = fleet.WritePlanJSON(w, rows)
		} else {
			err = fleet.WritePlan(w, rows)
		}
		if err != nil {
			return fmt.Errorf("write plan: %w", err)
		}
		failed := 0
		for _, r := range rows {
			if r.Err != nil {
				failed++
			}
		}
		if failed > 0 {
			return &exitError{exitNodesFailed, fmt.Errorf("plan: %d of %d rows could not be planned", failed, len(rows))}
		}
		return nil
	}

	var out []fleet.Outcome
	what := "deployed"
	switch {
	case remove:
		out, what = fl.Remove(ctx, opt, ff.plan), "removed"
	case ff.scrub:
		out, what = fl.Scrub(ctx, opt), "scrubbed"
	default:
		out = fl.Run(ctx, opt)
	}
	if a.json {
		err = fleet.WriteResultsJSON(w, out)
	} else {
		err = fleet.WriteResults(w, out)
	}
	if err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if n := fleet.Failed(out); n > 0 {
		if ctx.Err() != nil {
			return &exitError{exitNodesFailed, fmt.Errorf("interrupted: %d of %d nodes not %s; run the same command again to finish", n, len(out), what)}
		}
		return &exitError{exitNodesFailed, fmt.Errorf("%d of %d nodes not %s (see the table)", n, len(out), what)}
	}
	return nil
}

// newRemoveFleetCmd is `ksmg deploy remove fleet`.
func newRemoveFleetCmd(a *app) *cobra.Command {
	var ff fleetFlags
	cmd := &cobra.Command{
		Use:   "fleet INVENTORY",
		Short: "Remove the nodes of an inventory (all, or --only some): ksmg's VMs only",
		Long: `Remove the inventory's nodes, the Secondary nodes first and the Control
node last (kept while a Secondary node stays deployed: one that could not
be removed, or one --only leaves out):
each VM gets a guest shutdown, is turned off if it has not stopped within
--shutdown-timeout, and is deleted with its disks, and with it what the
node's replaces left (<name>.ksmg-new, <name>.ksmg-old). Only VMs that
carry ksmg's deploy mark are removed; a VM of a node's name that ksmg did
not make is reported and left alone. --plan says what would go.
(Orphans, VMs of the cluster that no node names any more, are removed by
ksmg deploy fleet --prune.)`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFleet(cmd, a, &ff, args[0], cmd.OutOrStdout(), true)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&ff.plan, "plan", false, "print what would be removed and touch nothing")
	ff.addRun(f)
	f.DurationVar(&ff.shutdownTimeout, "shutdown-timeout", deploy.DefaultShutdownTimeout, "how long a guest may take to shut down before its VM is turned off")
	return cmd
}

// exactArgs is cobra.ExactArgs with a usage error (exit status 2).
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usage("%s: %v (see %s --help)", cmd.CommandPath(), err, cmd.CommandPath())
		}
		return nil
	}
}

// noArgs is cobra.NoArgs with a usage error (exit status 2).
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usage("%s: unexpected argument %q (flags start with --; see %s --help)", cmd.CommandPath(), strings.Join(args, " "), cmd.CommandPath())
	}
	return nil
}
