package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WritePlan prints the plan as a table: node, target, action, reason.
// The table shows no property values; WritePlanJSON shows them redacted.
// A target that could not be opened is reported once, under the table.
func WritePlan(w io.Writer, rows []PlanRow) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tTARGET\tACTION\tREASON")
	down := targetErrors{}
	for _, r := range rows {
		action, reason := string(r.Action), r.Reason
		if r.Err != nil {
			action, reason = "error", down.note(r.Err)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Node, r.Target, action, reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return down.write(w)
}

// WriteResults prints one row per node: node, target, status, action, ID,
// IP, attempts, time, and a note (the error, the drift left, or that
// secrets remain on the VM).
func WriteResults(w io.Writer, out []Outcome) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tTARGET\tSTATUS\tACTION\tID\tIP\tATTEMPTS\tTIME\tNOTE")
	down := targetErrors{}
	secretsLeft := 0
	for _, o := range out {
		note := ""
		switch {
		case o.Err != nil:
			note = down.note(o.Err)
		case len(o.Drift) > 0:
			note = "not changed in place: " + strings.Join(o.Drift, ", ")
		case o.SecretsLeft:
			note = "secrets remain on the VM"
			secretsLeft++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", o.Node, o.Target, o.Status, dash(string(o.Action)),
			dash(o.ID), dash(o.IP), o.Attempts, o.Elapsed.Round(10*time.Millisecond), note)
	}
	ok := len(out) - Failed(out)
	fmt.Fprintf(tw, "\n%d of %d nodes ok\n", ok, len(out))
	if err := tw.Flush(); err != nil {
		return err
	}
	if secretsLeft > 0 {
		fmt.Fprintf(w, "%d node(s) keep their secret answers (admin password, join token) in their settings: nothing waited for first boot to report completion; run the same command with --scrub once it has\n", secretsLeft)
	}
	return down.write(w)
}

// targetErrors collects the targets that could not be opened, to report
// each once.
type targetErrors map[string]error

// note is the table's text for err: a target that is down is named, its
// error written once below the table.
func (t targetErrors) note(err error) string {
	var te *TargetError
	if errors.As(err, &te) {
		t[te.Target] = te.Err
		return "target " + te.Target + " unreachable (see below)"
	}
	return oneLine(err.Error())
}

func (t targetErrors) write(w io.Writer) error {
	for _, name := range slicesSorted(t) {
		if _, err := fmt.Fprintf(w, "target %s unreachable: %s\n", name, oneLine(t[name].Error())); err != nil {
			return err
		}
	}
	return nil
}

func slicesSorted(m targetErrors) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// JSONPlan is one row of a plan as --json prints it.
type JSONPlan struct {
	Node       string            `json:"node"`
	Target     string            `json:"target"`
	Action     string            `json:"action,omitempty"`
	Reason     string            `json:"reason,omitempty"`
	ID         string            `json:"id,omitempty"`
	Drift      []string          `json:"drift,omitempty"`
	CPUs       int               `json:"cpus"`       // 0: the image's
	MemoryMiB  int               `json:"memory_mib"` // 0: the image's
	DiskGiB    int               `json:"disk_gib"`   // 0: the image's size
	Network    string            `json:"network,omitempty"`
	VLAN       int               `json:"vlan,omitempty"`
	Properties map[string]string `json:"properties,omitempty"` // secrets redacted
	Error      string            `json:"error,omitempty"`
}

// JSONOutcome is one node's result as --json prints it: the same for a
// single deploy (an array of one) and a fleet.
type JSONOutcome struct {
	Node        string   `json:"node"`
	Target      string   `json:"target"`
	Status      Status   `json:"status"`
	Action      string   `json:"action,omitempty"`
	ID          string   `json:"id,omitempty"`
	IP          string   `json:"ip,omitempty"`
	Attempts    int      `json:"attempts"`
	Seconds     float64  `json:"seconds"`
	Drift       []string `json:"drift,omitempty"`
	SecretsLeft bool     `json:"secrets_left,omitempty"`
	Error       string   `json:"error,omitempty"`
}

// WritePlanJSON prints the plan as a JSON array.
func WritePlanJSON(w io.Writer, rows []PlanRow) error {
	js := make([]JSONPlan, len(rows))
	for i, r := range rows {
		js[i] = JSONPlan{Node: r.Node, Target: r.Target, Action: string(r.Action), Reason: r.Reason, ID: r.ID, Drift: r.Drift,
			CPUs: r.CPUs, MemoryMiB: r.MemoryMiB, DiskGiB: r.DiskGiB, Network: r.Network, VLAN: r.VLAN, Properties: r.Properties}
		if r.Err != nil {
			js[i].Error = r.Err.Error()
		}
	}
	return writeJSON(w, js)
}

// WriteResultsJSON prints the outcomes as a JSON array.
func WriteResultsJSON(w io.Writer, out []Outcome) error {
	js := make([]JSONOutcome, len(out))
	for i, o := range out {
		js[i] = JSONOutcome{Node: o.Node, Target: o.Target, Status: o.Status, Action: string(o.Action), ID: o.ID, IP: o.IP,
			Attempts: o.Attempts, Seconds: o.Elapsed.Seconds(), Drift: o.Drift, SecretsLeft: o.SecretsLeft}
		if o.Err != nil {
			js[i].Error = o.Err.Error()
		}
	}
	return writeJSON(w, js)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // "<secret>" stays readable
	return enc.Encode(v)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
