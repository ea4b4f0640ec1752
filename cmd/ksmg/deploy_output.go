package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/ksmg-appliance/ksmg/deploy"
)

// Output of the single-node deploy commands (vsphere, hyperv, scvmm): one
// line per node, or one JSON object with --json.

// writePlan prints one node's plan: a line, or JSON with --json.
func (a *app) writePlan(out io.Writer, p deploy.Plan) error {
	if a.json {
		return json.NewEncoder(out).Encode(p)
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
		type jsonResult struct {
			Node, Target, Action, ID, IP, Error string
			ElapsedSeconds                      float64
		}
		j := jsonResult{Node: res.Node, Target: res.Target, Action: string(res.Action), ID: res.ID, IP: res.IP, ElapsedSeconds: res.Elapsed.Seconds()}
		if err != nil {
			j.Error = err.Error()
		}
		if e := json.NewEncoder(out).Encode(j); e != nil && err == nil {
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
	_, err = fmt.Fprintf(out, "%s %s %s %s\n", res.Action, res.Node, res.ID, ip)
	return err
}
