package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/internal/testsync"
)

// TestOrphansPruneOnly: a node that left the inventory is an orphan in the
// plan and is removed only with Prune; VMs of another cluster and single
// deploys never are; Only limits a run to some nodes.
func TestOrphansPruneOnly(t *testing.T) {
	t.Parallel()
	a, b := newFake(t, "a"), newFake(t, "b")
	f := openFleet(t, fleetYAML(4, true, ""))
	if out := f.Run(context.Background(), fastRetry); Failed(out) != 0 {
		t.Fatalf("first run: %+v", out)
	}
	// Someone else's cluster and a single deploy on the same target.
	a.mu.Lock()
	a.vms["other-ctl"] = &fakeVM{id: "vm-90", marked: true, cluster: "other"}
	a.vms["single"] = &fakeVM{id: "vm-91", marked: true}
	a.mu.Unlock()

	// sec-3 and sec-4 leave the inventory.
	f2 := openFleet(t, fleetYAML(2, true, ""))
	if f2.inv.Cluster != "ctl" {
		t.Fatalf("cluster %q, want the control node's name", f2.inv.Cluster)
	}
	rows := f2.Plan(context.Background(), fastRetry)
	var orphans []string
	for _, r := range rows {
		if r.Action == deploy.ActionOrphan {
			orphans = append(orphans, r.Node)
			if !strings.Contains(r.Reason, "--prune removes it") {
				t.Errorf("orphan reason %q", r.Reason)
			}
		}
	}
	if slices.Sort(orphans); strings.Join(orphans, ",") != "sec-3,sec-4" {
		t.Fatalf("orphans %v, want sec-3 and sec-4 only", orphans)
	}
	var buf bytes.Buffer
	if err := WritePlan(&buf, rows); err != nil || !strings.Contains(buf.String(), "sec-3  site-b  orphan") {
		t.Errorf("plan table:\n%s", buf.String())
	}

	// Without Prune nothing goes.
	if out := f2.Run(context.Background(), fastRetry); len(out) != 3 || b.count() != 2 {
		t.Errorf("run without prune: %d outcomes, %d VMs on b", len(out), b.count())
	}
	opt := fastRetry
	opt.Prune = true
	out := f2.Run(context.Background(), opt)
	if len(out) != 5 || Failed(out) != 0 {
		t.Fatalf("run with prune: %+v", out)
	}
	for _, o := range out[3:] {
		if o.Action != deploy.ActionRemove {
			t.Errorf("prune outcome %+v", o)
		}
	}
	if b.count() != 1 || a.count() != 4 { // b: sec-1; a: ctl, sec-2, other-ctl, single
		t.Errorf("after prune: %d VMs on a, %d on b", a.count(), b.count())
	}

	// Only: just sec-2 (its VM replaced), nothing else touched.
	opt = fastRetry
	opt.Only, opt.Replace = []string{"sec-2"}, true
	a.mu.Lock()
	before := len(a.started)
	a.mu.Unlock()
	out = f2.Run(context.Background(), opt)
	a.mu.Lock()
	started := a.started[before:]
	a.mu.Unlock()
	if len(out) != 1 || out[0].Node != "sec-2" || !slices.Equal(started, []string{"sec-2"}) {
		t.Errorf("only sec-2: outcomes %+v, deploys %v", out, started)
	}
	if err := f2.inv.CheckOnly([]string{"sec-9"}); err == nil || !strings.Contains(err.Error(), "sec-9") {
		t.Errorf("unknown --only name: %v", err)
	}
}

// TestRemoveNodes: the inventory's nodes are removed, Secondary nodes
// first, the control node last; a plan removes nothing.
func TestRemoveNodes(t *testing.T) {
	t.Parallel()
	a, b := newFake(t, "a"), newFake(t, "b")
	f := openFleet(t, fleetYAML(3, true, ""))
	if out := f.Run(context.Background(), fastRetry); Failed(out) != 0 {
		t.Fatal(out)
	}
	out := f.Remove(context.Background(), fastRetry, true)
	if len(out) != 4 || Failed(out) != 0 || a.count()+b.count() != 4 {
		t.Fatalf("plan: %+v", out)
	}
	out = f.Remove(context.Background(), fastRetry, false)
	if Failed(out) != 0 || a.count()+b.count() != 0 || out[len(out)-1].Node != "ctl" {
		t.Fatalf("remove: %+v", out)
	}
	if got := a.removed[len(a.removed)-1]; got != "ctl" {
		t.Errorf("removed on a in the order %v: want the control node last", a.removed)
	}
}

// TestTargetDown: a target that cannot be reached fails its nodes without
// a log line each and is reported once under the table; it is tried again
// on the next attempt, and a target that came back is used.
func TestTargetDown(t *testing.T) {
	t.Parallel()
	newFake(t, "a") // b does not answer yet
	var logs testsync.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	f := openFleetLog(t, fleetYAML(4, true, ""), log)
	opt := fastRetry
	opt.Retries = 0
	opt.Logger = log
	out := f.Run(context.Background(), opt)
	down := 0
	for _, o := range out {
		if o.Target == "site-b" {
			down++
			if o.Status != StatusSkipped || !strings.Contains(o.Err.Error(), "target site-b unreachable") {
				t.Errorf("node on the down target: %+v", o)
			}
		}
	}
	if down != 2 {
		t.Fatalf("%d nodes on site-b", down)
	}
	var buf bytes.Buffer
	if err := WriteResults(&buf, out); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "connection refused"); n != 1 {
		t.Errorf("the target's error is in the table %d times, want once:\n%s", n, buf.String())
	}
	if strings.Count(logs.String(), `"node failed"`) != 0 || strings.Count(logs.String(), `"target unreachable"`) != 1 {
		t.Errorf("logs: want the target reported once and no node failure lines:\n%s", logs.String())
	}

	// b comes up: the next run reaches it (opened again), no new Open.
	b := newFake(t, "b")
	out = f.Run(context.Background(), fastRetry)
	if Failed(out) != 0 || b.count() != 2 {
		t.Errorf("after the target came back: %+v", out)
	}
}

// TestWaitingProgress: a node's waits reach Options.Waiting with its name.
func TestWaitingProgress(t *testing.T) {
	t.Parallel()
	a, _ := newFake(t, "a"), newFake(t, "b")
	a.wait = 30 * time.Millisecond
	f := openFleet(t, fleetYAML(1, true, ""))
	var mu sync.Mutex
	seen := map[string]string{}
	opt := fastRetry
	opt.Waiting = func(node, what string, elapsed time.Duration) {
		mu.Lock()
		seen[node] = what
		mu.Unlock()
	}
	if out := f.Run(context.Background(), opt); Failed(out) != 0 {
		t.Fatal(out)
	}
	if seen["ctl"] != "IP address" {
		t.Errorf("waits seen %v", seen)
	}
}

// TestResultsJSONSchema: the JSON rows carry drift and secrets_left.
func TestResultsJSONSchema(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	out := []Outcome{{Result: deploy.Result{Node: "n", Target: "t", Action: deploy.ActionDrift, Drift: []string{"cpus 2 → 4"}, SecretsLeft: true}, Status: StatusOK}}
	if err := WriteResultsJSON(&buf, out); err != nil {
		t.Fatal(err)
	}
	var rows []JSONOutcome
	if err := json.Unmarshal(buf.Bytes(), &rows); err != nil || len(rows) != 1 || rows[0].Drift[0] != "cpus 2 → 4" || !rows[0].SecretsLeft {
		t.Errorf("%s (%v)", buf.String(), err)
	}
	buf.Reset()
	if err := WritePlanJSON(&buf, []PlanRow{{Plan: deploy.Plan{Node: "n", Action: deploy.ActionCreate}, CPUs: 4, MemoryMiB: 8192, DiskGiB: 200, Network: "DMZ"}}); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`"cpus": 4`, `"memory_mib": 8192`, `"disk_gib": 200`, `"network": "DMZ"`} {
		if !strings.Contains(buf.String(), w) {
			t.Errorf("plan JSON lacks %s:\n%s", w, buf.String())
		}
	}
}

// TestOnlySecondaryDHCPControl: --only a secondary node of a cluster whose
// control node has no static address (it has the IP its VM reports) must
// tell the secondary the control node's current address, without
// deploying the control node, as a whole run would.
func TestOnlySecondaryDHCPControl(t *testing.T) {
	t.Parallel()
	a, b := newFake(t, "a"), newFake(t, "b")
	if out := openFleet(t, fleetYAML(2, false, "")).Run(context.Background(), fastRetry); Failed(out) != 0 {
		t.Fatalf("first run: %+v", out)
	}
	ctlIP := a.ip("ctl")
	a.mu.Lock()
	started := len(a.started)
	a.mu.Unlock()
	f := openFleet(t, fleetYAML(3, false, ""))
	for _, opt := range []Options{{Only: []string{"sec-3"}}, {Only: []string{"sec-1"}, Replace: true}} {
		o := fastRetry
		o.Only, o.Replace = opt.Only, opt.Replace
		out := f.Run(context.Background(), o)
		if len(out) != 1 || out[0].Status != StatusOK {
			t.Fatalf("run --only %v: %+v", opt.Only, out)
		}
	}
	b.mu.Lock()
	got3, got1 := b.props["sec-3"]["ksmg.cluster.control_address"], b.props["sec-1"]["ksmg.cluster.control_address"]
	b.mu.Unlock()
	if got3 != ctlIP || got1 != ctlIP {
		t.Errorf("control address told to sec-3 %q, sec-1 %q; want the control node's %q", got3, got1, ctlIP)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.started) != started {
		t.Errorf("the control node was deployed again: %v", a.started)
	}
}

// TestPlanOnlySecondary: --plan --only a Secondary node must run the check
// the run would: it shows the address the deployed control VM reports, and
// where there is none (the control node not deployed) it fails the row as
// the run fails the node, instead of a plan that passes and a run that
// does not.
func TestPlanOnlySecondary(t *testing.T) {
	t.Parallel()
	a, _ := newFake(t, "a"), newFake(t, "b")
	only := Options{Only: []string{"sec-1"}}

	f := openFleet(t, fleetYAML(2, false, ""))
	rows := f.Plan(context.Background(), only)
	if len(rows) != 1 || rows[0].Err == nil || !strings.Contains(rows[0].Err.Error(), "control node ctl is not deployed") {
		t.Fatalf("plan --only sec-1 with no control VM: %+v; want the row failed as the run fails", rows)
	}
	o := fastRetry
	o.Only = only.Only
	if out := f.Run(context.Background(), o); len(out) != 1 || out[0].Status != StatusFailed || !deploy.IsPermanent(out[0].Err) {
		t.Fatalf("run --only sec-1 with no control VM: %+v; want it failed permanently", out)
	}

	if out := f.Run(context.Background(), fastRetry); Failed(out) != 0 {
		t.Fatalf("whole run: %+v", out)
	}
	f = openFleet(t, fleetYAML(3, false, ""))
	rows = f.Plan(context.Background(), Options{Only: []string{"sec-3"}})
	if len(rows) != 1 || rows[0].Err != nil || rows[0].Action != deploy.ActionCreate {
		t.Fatalf("plan --only sec-3: %+v", rows)
	}
	if got, want := rows[0].Properties["ksmg.cluster.control_address"], a.ip("ctl"); got != want {
		t.Errorf("plan --only sec-3 shows control address %q; want the control VM's %q", got, want)
	}
}

// TestPruneSparesInterruptedSwap: a replace stopped between its renames
// leaves the VM in service as <node>.ksmg-old (and its replacement as
// <node>.ksmg-new) with nothing under the node's name; the node's next
// deploy puts it back. That VM is no orphan: --prune must not remove it,
// even when the node's deploy fails in that run, and the plan must not
// say it would. Once the node's own VM is in place, a <node>.ksmg-old left
// by a swap whose removal failed is an orphan again.
func TestPruneSparesInterruptedSwap(t *testing.T) {
	t.Parallel()
	_, b := newFake(t, "a"), newFake(t, "b")
	f := openFleet(t, fleetYAML(1, true, ""))
	if out := f.Run(context.Background(), fastRetry); Failed(out) != 0 {
		t.Fatalf("first run: %+v", out)
	}
	b.mu.Lock()
	inService := b.vms["sec-1"]
	delete(b.vms, "sec-1")
	b.vms[deploy.AsideName("sec-1")] = inService
	b.vms[deploy.TempName("sec-1")] = &fakeVM{id: "vm-77", marked: true, cluster: inService.cluster}
	b.permanent["sec-1"] = true // this run's deploy of sec-1 fails
	b.mu.Unlock()

	opt := fastRetry
	opt.Prune = true
	for _, r := range f.Plan(context.Background(), opt) {
		if r.Action == deploy.ActionOrphan && r.Node == deploy.AsideName("sec-1") {
			t.Errorf("plan --prune: %s (the VM in service) is an orphan: %s", r.Node, r.Reason)
		}
	}
	f.Run(context.Background(), opt)
	b.mu.Lock()
	vm := b.vms[deploy.AsideName("sec-1")]
	removed := slices.Clone(b.removed)
	b.mu.Unlock()
	if vm != inService {
		t.Fatalf("--prune removed %s, the VM in service (removed: %v)", deploy.AsideName("sec-1"), removed)
	}

	// The node's VM back in place: an old VM left beside it is an orphan.
	b.mu.Lock()
	b.permanent["sec-1"] = false
	delete(b.vms, deploy.TempName("sec-1"))
	b.vms["sec-1"] = &fakeVM{id: "vm-78", marked: true, cluster: inService.cluster}
	b.mu.Unlock()
	f.Run(context.Background(), opt)
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.vms[deploy.AsideName("sec-1")]; ok {
		t.Errorf("%s beside a finished sec-1 was not pruned (removed: %v)", deploy.AsideName("sec-1"), b.removed)
	}
}

// TestPlanTellsControlAddress: a whole-fleet plan whose control node stays
// (no --replace) plans its Secondary nodes with the address the control VM
// reports now, as the run deploys them, so a Secondary node told another
// address shows drift in the plan, not only in the run. With --replace the
// control node gets a new VM and its address is not known yet.
func TestPlanTellsControlAddress(t *testing.T) {
	t.Parallel()
	a, b := newFake(t, "a"), newFake(t, "b")
	f := openFleet(t, fleetYAML(2, false, ""))
	if out := f.Run(context.Background(), fastRetry); Failed(out) != 0 {
		t.Fatalf("first run: %+v", out)
	}
	rows := f.Plan(context.Background(), fastRetry)
	b.mu.Lock()
	planned := b.planned["sec-1"]["ksmg.cluster.control_address"]
	b.mu.Unlock()
	if want := a.ip("ctl"); planned != want || rows[1].Properties["ksmg.cluster.control_address"] != want {
		t.Errorf("plan: sec-1 planned with control address %q, shown %q; want the control VM's %q", planned, rows[1].Properties["ksmg.cluster.control_address"], want)
	}
	opt := fastRetry
	opt.Replace = true
	rows = f.Plan(context.Background(), opt)
	if got := rows[1].Properties["ksmg.cluster.control_address"]; got != PendingAddress {
		t.Errorf("plan --replace: sec-1's control address shown %q, want %q", got, PendingAddress)
	}
}

// TestPruneMovedNodeUnproven: a node moved to another target leaves its
// VM on the old one as an orphan. --prune must not remove it before the
// node's new VM is proven: when the node's deploy on the new target fails,
// the old VM is the one still serving.
func TestPruneMovedNodeUnproven(t *testing.T) {
	t.Parallel()
	a, b := newFake(t, "a"), newFake(t, "b")
	body := fleetYAML(1, true, "")
	if out := openFleet(t, body).Run(context.Background(), fastRetry); Failed(out) != 0 {
		t.Fatalf("first run: %+v", out)
	}
	moved := strings.Replace(body, "{name: sec-1, target: site-b", "{name: sec-1, target: site-a", 1)
	if moved == body {
		t.Fatal("inventory not changed")
	}
	a.mu.Lock()
	a.permanent["sec-1"] = true
	a.mu.Unlock()
	opt := fastRetry
	opt.Prune = true
	out := openFleet(t, moved).Run(context.Background(), opt)
	b.mu.Lock()
	_, kept := b.vms["sec-1"]
	b.mu.Unlock()
	if !kept {
		t.Errorf("--prune removed sec-1's VM on site-b while its deploy on site-a failed: %+v", out)
	}
	if Failed(out) == 0 {
		t.Errorf("outcomes %+v: want sec-1 failed", out)
	}

	// Once sec-1 runs on site-a, the old VM goes.
	a.mu.Lock()
	a.permanent["sec-1"] = false
	a.mu.Unlock()
	if out := openFleet(t, moved).Run(context.Background(), opt); Failed(out) != 0 {
		t.Fatalf("run after the fix: %+v", out)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.vms["sec-1"]; ok {
		t.Error("sec-1's old VM on site-b was not pruned once the node ran on site-a")
	}
}

// TestRemoveKeepsControlForSecondaries: Secondary nodes depend on the
// control node, which is why it goes last; when a Secondary node could not
// be removed (it still serves), the control node is kept, and the outcome
// says why, not removed from under it.
func TestRemoveKeepsControlForSecondaries(t *testing.T) {
	t.Parallel()
	a, b := newFake(t, "a"), newFake(t, "b")
	f := openFleet(t, fleetYAML(2, true, ""))
	if out := f.Run(context.Background(), fastRetry); Failed(out) != 0 {
		t.Fatal(out)
	}
	b.mu.Lock()
	b.removeFail = map[string]bool{"sec-1": true}
	b.mu.Unlock()
	out := f.Remove(context.Background(), fastRetry, false)
	a.mu.Lock()
	_, ctlKept := a.vms["ctl"]
	a.mu.Unlock()
	if !ctlKept {
		t.Fatalf("the control node was removed while sec-1 still runs: %+v", out)
	}
	last := out[len(out)-1]
	if last.Node != "ctl" || last.Status == StatusOK || last.Err == nil || !strings.Contains(last.Err.Error(), "sec-1") {
		t.Errorf("control node's outcome %+v: want it kept, naming sec-1", last)
	}
	b.mu.Lock()
	b.removeFail = nil
	b.mu.Unlock()
	if out := f.Remove(context.Background(), fastRetry, false); Failed(out) != 0 || a.count()+b.count() != 0 {
		t.Errorf("remove again: %+v", out)
	}
}

// TestReplaceControlMovesWarns: replacing only the control node of a
// cluster whose control node has a DHCP address gives it a new address;
// the Secondary nodes left out of the run still point at the old one. The
// run must say so, naming them and both addresses.
func TestReplaceControlMovesWarns(t *testing.T) {
	t.Parallel()
	a, _ := newFake(t, "a"), newFake(t, "b")
	f := openFleet(t, fleetYAML(2, false, ""))
	if out := f.Run(context.Background(), fastRetry); Failed(out) != 0 {
		t.Fatalf("first run: %+v", out)
	}
	old := a.ip("ctl")
	a.mu.Lock()
	a.newIP = map[string]string{"ctl": "198.51.100.99"}
	a.mu.Unlock()
	var logs testsync.Buffer
	opt := fastRetry
	opt.Only, opt.Replace = []string{"ctl"}, true
	opt.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	if out := f.Run(context.Background(), opt); Failed(out) != 0 {
		t.Fatalf("replace --only ctl: %+v", out)
	}
	got := logs.String()
	for _, want := range []string{old, "198.51.100.99", "sec-1", "sec-2"} {
		if !strings.Contains(got, want) {
			t.Errorf("run log lacks %q:\n%s", want, got)
		}
	}
}

// TestRemoveOnlyControlRefused: removing only the control node while
// Secondary nodes of the cluster stay deployed would leave them joined to
// nothing; it is refused, naming them, and nothing is removed. Once they
// are gone, it is removed.
func TestRemoveOnlyControlRefused(t *testing.T) {
	t.Parallel()
	a, b := newFake(t, "a"), newFake(t, "b")
	f := openFleet(t, fleetYAML(2, true, ""))
	if out := f.Run(context.Background(), fastRetry); Failed(out) != 0 {
		t.Fatal(out)
	}
	opt := fastRetry
	opt.Only = []string{"ctl"}
	for _, plan := range []bool{true, false} {
		out := f.Remove(context.Background(), opt, plan)
		if len(out) != 1 || out[0].Status == StatusOK || out[0].Err == nil || !strings.Contains(out[0].Err.Error(), "sec-1") || !strings.Contains(out[0].Err.Error(), "sec-2") {
			t.Errorf("remove --only ctl (plan %v): %+v; want it refused, naming sec-1 and sec-2", plan, out)
		}
	}
	if a.count() != 2 || b.count() != 1 {
		t.Fatalf("VMs on a %d, on b %d after a refused remove", a.count(), b.count())
	}
	opt.Only = []string{"sec-1", "sec-2"}
	if out := f.Remove(context.Background(), opt, false); Failed(out) != 0 {
		t.Fatalf("remove the Secondary nodes: %+v", out)
	}
	opt.Only = []string{"ctl"}
	if out := f.Remove(context.Background(), opt, false); Failed(out) != 0 || a.count() != 0 {
		t.Errorf("remove --only ctl once alone: %+v", out)
	}
}
