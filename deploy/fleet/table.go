package fleet

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WritePlan prints the plan as a table: node, target, action, reason.
// The table shows no property values; WritePlanJSON shows them redacted.
func WritePlan(w io.Writer, rows []PlanRow) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tTARGET\tACTION\tREASON")
	for _, r := range rows {
		action, reason := string(r.Action), r.Reason
		if r.Err != nil {
			action, reason = "error", oneLine(r.Err.Error())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Node, r.Target, action, reason)
	}
	return tw.Flush()
}

// WriteResults prints one row per node: node, target, status, action, ID,
// IP, attempts, time, error.
func WriteResults(w io.Writer, out []Outcome) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tTARGET\tSTATUS\tACTION\tID\tIP\tATTEMPTS\tTIME\tERROR")
	for _, o := range out {
		errMsg := ""
		if o.Err != nil {
			errMsg = oneLine(o.Err.Error())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", o.Node, o.Target, o.Status, dash(string(o.Action)),
			dash(o.ID), dash(o.IP), o.Attempts, o.Elapsed.Round(10*time.Millisecond), errMsg)
	}
	ok := len(out) - Failed(out)
	fmt.Fprintf(tw, "\n%d of %d nodes ok\n", ok, len(out))
	return tw.Flush()
}

type jsonPlan struct {
	Node       string            `json:"node"`
	Target     string            `json:"target"`
	Action     string            `json:"action,omitempty"`
	Reason     string            `json:"reason,omitempty"`
	ID         string            `json:"id,omitempty"`
	Properties map[string]string `json:"properties,omitempty"` // secrets redacted
	Error      string            `json:"error,omitempty"`
}

type jsonOutcome struct {
	Node     string  `json:"node"`
	Target   string  `json:"target"`
	Status   Status  `json:"status"`
	Action   string  `json:"action,omitempty"`
	ID       string  `json:"id,omitempty"`
	IP       string  `json:"ip,omitempty"`
	Attempts int     `json:"attempts"`
	Seconds  float64 `json:"seconds"`
	Error    string  `json:"error,omitempty"`
}

// WritePlanJSON prints the plan as a JSON array.
func WritePlanJSON(w io.Writer, rows []PlanRow) error {
	js := make([]jsonPlan, len(rows))
	for i, r := range rows {
		js[i] = jsonPlan{Node: r.Node, Target: r.Target, Action: string(r.Action), Reason: r.Reason, ID: r.ID, Properties: r.Properties}
		if r.Err != nil {
			js[i].Error = r.Err.Error()
		}
	}
	return writeJSON(w, js)
}

// WriteResultsJSON prints the outcomes as a JSON array.
func WriteResultsJSON(w io.Writer, out []Outcome) error {
	js := make([]jsonOutcome, len(out))
	for i, o := range out {
		js[i] = jsonOutcome{Node: o.Node, Target: o.Target, Status: o.Status, Action: string(o.Action), ID: o.ID, IP: o.IP,
			Attempts: o.Attempts, Seconds: o.Elapsed.Seconds()}
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
