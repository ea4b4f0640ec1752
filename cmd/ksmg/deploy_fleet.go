package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/ksmg-appliance/ksmg/deploy/fleet"
)

// Exit statuses of `ksmg deploy fleet` besides 0 (every node ok) and 1
// (anything else, e.g. an unwritable output).
const (
	exitBadInventory = 2 // unreadable or invalid inventory; nothing was touched
	exitNodesFailed  = 3 // the run (or plan) finished, but not every node is ok
)

// fleetFlags are the flags of `ksmg deploy fleet`.
type fleetFlags struct {
	plan        bool
	concurrency int
	retries     int
	backoff     time.Duration
	replace     bool
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
ones (bad settings, missing datastore, rejected login) are retried with a
doubling backoff; each retry plans afresh, so a VM a failed attempt left
half-made is replaced, never duplicated. If the Control node fails, the
Secondary nodes are skipped. Ctrl-C starts no further node.

Running the same inventory again changes nothing already in place, and an
interrupted run can simply be run again. --plan shows what a run would do
(create, replace, unchanged) and touches nothing.

A table of the nodes is printed at the end (JSON with --json). Exit status:
0 every node ok, 2 invalid inventory, 3 some node failed or was skipped,
1 other errors.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFleet(cmd, a, &ff, args[0], cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&ff.plan, "plan", false, "print what would be created, replaced or left alone, and touch nothing")
	f.IntVar(&ff.concurrency, "concurrency", 4, "nodes deployed at once")
	f.IntVar(&ff.retries, "retries", 2, "further attempts of a node after a failure that is not permanent")
	f.DurationVar(&ff.backoff, "backoff", 5*time.Second, "wait before the first retry (doubled for each next one, at most 2m)")
	f.BoolVar(&ff.replace, "replace", false, "replace nodes that are already deployed (destroys and redeploys them)")
	return cmd
}

func runFleet(cmd *cobra.Command, a *app, ff *fleetFlags, path string, w io.Writer) error {
	if ff.concurrency < 1 {
		return &exitError{exitBadInventory, fmt.Errorf("--concurrency %d: must be at least 1", ff.concurrency)}
	}
	if ff.retries < 0 {
		return &exitError{exitBadInventory, fmt.Errorf("--retries %d: must not be negative", ff.retries)}
	}
	ctx := cmd.Context()
	inv, err := fleet.Load(path)
	if err != nil {
		return &exitError{exitBadInventory, err}
	}
	fl, err := fleet.Open(ctx, inv)
	if err != nil {
		var ie *fleet.InventoryError
		if errors.As(err, &ie) {
			return &exitError{exitBadInventory, err}
		}
		return err
	}
	defer fl.Close()
	opt := fleet.Options{
		Concurrency: ff.concurrency,
		Retries:     ff.retries,
		Backoff:     ff.backoff,
		Replace:     ff.replace,
		Logger:      a.logger(),
	}

	if ff.plan {
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
			return &exitError{exitNodesFailed, fmt.Errorf("plan: %d of %d nodes could not be planned", failed, len(rows))}
		}
		return nil
	}

	out := fl.Run(ctx, opt)
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
			return &exitError{exitNodesFailed, fmt.Errorf("interrupted: %d of %d nodes not deployed; run the same command again to finish", n, len(out))}
		}
		return &exitError{exitNodesFailed, fmt.Errorf("%d of %d nodes not deployed (see the table)", n, len(out))}
	}
	return nil
}
