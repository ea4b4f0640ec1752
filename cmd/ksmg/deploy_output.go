package main

import (
	"fmt"
	"io"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/fleet"
)

// Output of the single-node deploy commands (vsphere, hyperv, scvmm): one
// line per node, or with --json the same JSON a fleet prints (an array of
// one row), so scripts read both alike.

// writePlan prints one node's plan: a line, or JSON with --json, where
// planErr (a plan that failed) is the row's error; the line is for a plan
// that did not fail.
func (a *app) writePlan(out io.Writer, p deploy.Plan, n deploy.Node, planErr error) error {
	if a.json {
		return fleet.WritePlanJSON(out, []fleet.PlanRow{{Plan: p, Properties: deploy.Redact(n.Properties),
			CPUs: n.CPUs, MemoryMiB: n.MemoryMiB, DiskGiB: n.DiskGiB, Network: n.Network, VLAN: n.VLAN, Err: planErr}})
	}
	id := p.ID
	if id == "" {
		id = "-"
	}
	_, err := fmt.Fprintf(out, "%s %s %s: %s\n", p.Action, p.Node, id, p.Reason)
	return err
}

// writeResult prints one node's result and returns the deploy error (or
// the write error when the deploy succeeded).
func (a *app) writeResult(out io.Writer, res deploy.Result, err error) error {
	if a.json {
		o := fleet.Outcome{Result: res, Status: fleet.StatusOK}
		if err != nil {
			o.Status, o.Err = fleet.StatusFailed, err
		}
		if e := fleet.WriteResultsJSON(out, []fleet.Outcome{o}); e != nil && err == nil {
			err = e
		}
		return err
	}
	if err != nil {
		return err
	}
	ip := res.IP
	if ip == "" {
		ip = "-"
	}
	if _, err = fmt.Fprintf(out, "%s %s %s %s\n", res.Action, res.Node, res.ID, ip); err != nil {
		return err
	}
	if len(res.Drift) > 0 {
		verb := "differs"
		if res.Action == deploy.ActionReconfigure {
			verb = "still differs (cannot change in place; --replace redeploys it)"
		}
		_, err = fmt.Fprintf(out, "%s %s: %v\n", res.Node, verb, res.Drift)
	}
	if res.SecretsLeft {
		_, err = fmt.Fprintf(out, "%s: the secret answers (admin password, hash, join token) remain in the VM's settings until first boot reports completion; run the same command with --scrub then\n", res.Node)
	}
	return err
}
