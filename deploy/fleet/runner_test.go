package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/deploy"
)

// fleetYAML is an inventory of one control node (static, or DHCP) and n
// secondary nodes spread over the fake targets a and b.
func fleetYAML(n int, staticControl bool, extra string) string {
	var b strings.Builder
	b.WriteString("targets:\n  site-a: {kind: fake, instance: a, image: disk.img}\n  site-b: {kind: fake, instance: b, image: disk.img}\n")
	b.WriteString("cluster:\n  join_token: {file: run-token}\n" + extra + "nodes:\n")
	b.WriteString("  - {name: ctl, target: site-a, role: control")
	if staticControl {
		b.WriteString(", addresses: {ipv4: 192.0.2.10/24}")
	}
	b.WriteString("}\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  - {name: sec-%d, target: site-%s, role: secondary}\n", i, map[bool]string{true: "a", false: "b"}[i%2 == 0])
	}
	return b.String()
}

func openFleet(t *testing.T, body string) *Fleet {
	t.Helper()
	return openFleetLog(t, body, nil)
}

// openFleetLog is openFleet with the drivers' (and the open's) logger.
func openFleetLog(t *testing.T, body string, log *slog.Logger) *Fleet {
	t.Helper()
	for _, id := range []string{"a", "b"} {
		body = strings.ReplaceAll(body, "instance: "+id+",", fmt.Sprintf("instance: %q,", instance(t, id)))
	}
	p := writeInventory(t, body)
	if err := os.WriteFile(filepath.Join(filepath.Dir(p), "run-token"), []byte(testToken), 0o600); err != nil {
		t.Fatal(err)
	}
	inv, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(context.Background(), inv, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

var fastRetry = Options{Retries: 2, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}

func byNode(out []Outcome) map[string]Outcome {
	m := map[string]Outcome{}
	for _, o := range out {
		m[o.Node] = o
	}
	return m
}

// TestRunOrderAndBound: the control node is deployed, alone, before any
// secondary starts; secondaries run at most Concurrency at once (and do
// reach it); each secondary is told the control node's address.
func TestRunOrderAndBound(t *testing.T) {
	t.Parallel()
	for _, static := range []bool{true, false} {
		t.Run(fmt.Sprintf("static=%v", static), func(t *testing.T) {
			t.Parallel()
			a, b := newFake(t, "a"), newFake(t, "b")
			a.delay, b.delay = 20*time.Millisecond, 20*time.Millisecond
			f := openFleet(t, fleetYAML(12, static, ""))
			// one shared gauge: count in-flight deploys over both targets
			opt := fastRetry
			opt.Concurrency = 3
			g := &gauge{}
			a.gauge, b.gauge = g, g
			out := f.Run(context.Background(), opt)
			if n := Failed(out); n != 0 {
				t.Fatalf("%d nodes failed: %+v", n, out)
			}
			ctlDone := a.deployed["ctl"]
			for name, start := range merge(a.startAt, b.startAt) {
				if name != "ctl" && !start.After(ctlDone) {
					t.Errorf("secondary %s started %v before the control node finished", name, ctlDone.Sub(start))
				}
			}
			if g.max != 3 {
				t.Errorf("at most %d deploys ran at once, want exactly the bound 3", g.max)
			}
			wantAddr := "192.0.2.10"
			if !static {
				wantAddr = a.ip("ctl") // what its deploy reported
			}
			for _, o := range out {
				if o.Node == "ctl" {
					continue
				}
				fk := map[string]*fakeTarget{"site-a": a, "site-b": b}[o.Target]
				if got := fk.props[o.Node]["ksmg.cluster.control_address"]; got != wantAddr {
					t.Errorf("%s: control address %q, want %q", o.Node, got, wantAddr)
				}
				if fk.props[o.Node]["ksmg.cluster.join_token"] != testToken || fk.props[o.Node]["ksmg.cluster.role"] != "secondary" {
					t.Errorf("%s: role/token not set: role %q", o.Node, fk.props[o.Node]["ksmg.cluster.role"])
				}
				if o.Action != deploy.ActionCreate || o.Attempts != 1 || o.ID == "" {
					t.Errorf("%s: %+v", o.Node, o)
				}
			}
			if _, ok := a.props["ctl"]["ksmg.cluster.control_address"]; ok {
				t.Error("the control node was given a control address")
			}
		})
	}
}

func merge(ms ...map[string]time.Time) map[string]time.Time {
	out := map[string]time.Time{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// TestRunFailures: a transient failure is retried (the leftover replaced,
// not duplicated), a permanent one is not retried, a node that always
// fails uses up its retries, and none of it stops the other nodes; a re-run
// then redoes only what failed.
func TestRunFailures(t *testing.T) {
	t.Parallel()
	a, b := newFake(t, "a"), newFake(t, "b")
	f := openFleet(t, fleetYAML(6, true, ""))
	a.transient["sec-2"] = 2 // succeeds on the third attempt
	b.permanent["sec-1"] = true
	b.always["sec-3"] = true
	out := byNode(f.Run(context.Background(), fastRetry))
	check := func(node string, status Status, attempts int, errPart string) {
		t.Helper()
		o := out[node]
		if o.Status != status || o.Attempts != attempts || errPart == "" && o.Err != nil || errPart != "" && (o.Err == nil || !strings.Contains(o.Err.Error(), errPart)) {
			t.Errorf("%s: status %s attempts %d err %v; want %s, %d, %q", node, o.Status, o.Attempts, o.Err, status, attempts, errPart)
		}
	}
	check("sec-2", StatusOK, 3, "")
	check("sec-1", StatusFailed, 1, "datastore full")
	check("sec-3", StatusFailed, 3, "host busy")
	for _, n := range []string{"ctl", "sec-4", "sec-5", "sec-6"} {
		check(n, StatusOK, 1, "")
	}
	if out["sec-2"].Action != deploy.ActionCreate {
		t.Errorf("sec-2 reported %s; the run created it (its retries replaced the leftovers)", out["sec-2"].Action)
	}
	if a.created["sec-2"] != 3 || len(a.vms) != 4 /* ctl, sec-2, sec-4, sec-6 */ {
		t.Errorf("site-a: sec-2 created %d times, %d VMs; want 3 attempts leaving one VM among 4", a.created["sec-2"], len(a.vms))
	}
	if b.vms["sec-3"] == nil || b.vms["sec-3"].marked {
		t.Error("sec-3's failed VM should be an unmarked leftover")
	}

	// Re-run after the cause is fixed: only the failed nodes change.
	b.permanent["sec-1"], b.always["sec-3"] = false, false
	before := a.created["ctl"] + a.created["sec-4"]
	out = byNode(f.Run(context.Background(), fastRetry))
	if Failed(mapValues(out)) != 0 {
		t.Fatalf("re-run: %+v", out)
	}
	if out["sec-3"].Action != deploy.ActionReplace || out["sec-1"].Action != deploy.ActionCreate || out["ctl"].Action != deploy.ActionUnchanged {
		t.Errorf("re-run actions: sec-3 %s, sec-1 %s, ctl %s", out["sec-3"].Action, out["sec-1"].Action, out["ctl"].Action)
	}
	if a.created["ctl"]+a.created["sec-4"] != before || len(b.vms) != 3 {
		t.Errorf("re-run touched finished VMs or duplicated: site-b has %d VMs", len(b.vms))
	}
}

func mapValues(m map[string]Outcome) []Outcome {
	var out []Outcome
	for _, o := range m {
		out = append(out, o)
	}
	return out
}

// TestControlFails: secondaries are skipped with the control node's error.
func TestControlFails(t *testing.T) {
	t.Parallel()
	a, b := newFake(t, "a"), newFake(t, "b")
	a.permanent["ctl"] = true
	f := openFleet(t, fleetYAML(3, true, ""))
	out := f.Run(context.Background(), fastRetry)
	for _, o := range out {
		want := StatusSkipped
		if o.Node == "ctl" {
			want = StatusFailed
		}
		if o.Status != want || o.Err == nil || !strings.Contains(o.Err.Error(), "datastore full") {
			t.Errorf("%s: %s %v, want %s with the control's error", o.Node, o.Status, o.Err, want)
		}
	}
	if a.count()+b.count() != 0 {
		t.Errorf("%d VMs made although the control node failed", a.count()+b.count())
	}
}

// TestControlNoIP: a DHCP control node that reports no address cannot be
// joined; secondaries are skipped with the reason.
func TestControlNoIP(t *testing.T) {
	t.Parallel()
	a, _ := newFake(t, "a"), newFake(t, "b")
	a.noIP = true
	out := openFleet(t, fleetYAML(2, false, "")).Run(context.Background(), fastRetry)
	if out[0].Status != StatusFailed || !strings.Contains(out[0].Err.Error(), "reported no IP address") || out[1].Status != StatusSkipped {
		t.Errorf("outcomes %+v", out)
	}
}

// TestUnreachableTarget: a target that cannot be opened fails its own
// nodes only.
func TestUnreachableTarget(t *testing.T) {
	t.Parallel()
	newFake(t, "a") // b does not exist: "connection refused"
	out := byNode(openFleet(t, fleetYAML(4, true, "")).Run(context.Background(), fastRetry))
	for name, o := range out {
		wantOK := o.Target == "site-a"
		if (o.Status == StatusOK) != wantOK {
			t.Errorf("%s on %s: %s %v", name, o.Target, o.Status, o.Err)
		}
		if !wantOK && !strings.Contains(o.Err.Error(), "connection refused") {
			t.Errorf("%s: %v", name, o.Err)
		}
	}
}

// TestPlanTouchesNothing: Plan reports create for a new fleet and
// unchanged after a run, and makes no VM.
func TestPlanTouchesNothing(t *testing.T) {
	t.Parallel()
	a, b := newFake(t, "a"), newFake(t, "b")
	f := openFleet(t, fleetYAML(5, true, ""))
	rows := f.Plan(context.Background(), Options{})
	for _, r := range rows {
		if r.Err != nil || r.Action != deploy.ActionCreate {
			t.Errorf("plan %s: %s %v", r.Node, r.Action, r.Err)
		}
	}
	if a.count()+b.count() != 0 || len(a.started)+len(b.started) != 0 {
		t.Fatal("Plan deployed something")
	}
	var sb strings.Builder
	if err := WritePlan(&sb, rows); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sb.String(), "sec-5  site-b  create  no VM sec-5") {
		t.Errorf("plan table:\n%s", sb.String())
	}
	if out := f.Run(context.Background(), fastRetry); Failed(out) != 0 {
		t.Fatal(out)
	}
	for _, r := range f.Plan(context.Background(), Options{}) {
		if r.Action != deploy.ActionUnchanged {
			t.Errorf("plan after run %s: %s", r.Node, r.Action)
		}
	}
	// --replace plans a replacement of everything, still touching nothing
	n := len(a.started) + len(b.started)
	for _, r := range f.Plan(context.Background(), Options{Replace: true}) {
		if r.Action != deploy.ActionReplace {
			t.Errorf("plan with replace %s: %s", r.Node, r.Action)
		}
	}
	if len(a.started)+len(b.started) != n {
		t.Error("Plan with Replace deployed something")
	}
}

// TestCancel: once ctx is cancelled no further node starts; the others are
// reported skipped, and a second run completes the fleet without
// duplicates.
func TestCancel(t *testing.T) {
	t.Parallel()
	a, b := newFake(t, "a"), newFake(t, "b")
	a.delay, b.delay = 40*time.Millisecond, 40*time.Millisecond
	f := openFleet(t, fleetYAML(10, true, ""))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel) // control done, first secondary in flight
	opt := fastRetry
	opt.Concurrency = 1
	out := f.Run(ctx, opt)
	var ok, skipped int
	for _, o := range out {
		switch o.Status {
		case StatusOK:
			ok++
		case StatusSkipped:
			skipped++
			if !errors.Is(o.Err, context.Canceled) {
				t.Errorf("%s skipped with %v", o.Node, o.Err)
			}
		}
	}
	started := len(a.started) + len(b.started)
	if ok < 1 || skipped < 5 || started > 4 {
		t.Errorf("after cancel: %d ok, %d skipped, %d started", ok, skipped, started)
	}
	out = f.Run(context.Background(), opt)
	if Failed(out) != 0 {
		t.Fatalf("second run: %+v", out)
	}
	for name, c := range merge2(a.created, b.created) {
		if c != 1 {
			t.Errorf("%s created %d times", name, c)
		}
	}
	if a.count()+b.count() != 11 {
		t.Errorf("%d VMs, want 11", a.count()+b.count())
	}
}

func merge2(ms ...map[string]int) map[string]int {
	out := map[string]int{}
	for _, m := range ms {
		for k, v := range m {
			out[k] += v
		}
	}
	return out
}

// TestProbe: with cluster.control_probe, secondaries wait for the control
// node's port to accept connections, and are skipped when it never does.
// The test dials a real local listener in place of the control's address.
func TestProbe(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() }) // after the parallel subtests
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	probe := "  control_probe: {port: 25, timeout: 1s}\n"
	for _, listening := range []bool{true, false} {
		t.Run(fmt.Sprintf("listening=%v", listening), func(t *testing.T) {
			t.Parallel()
			newFake(t, "a")
			newFake(t, "b")
			f := openFleet(t, fleetYAML(2, true, probe))
			var dialed []string
			opt := fastRetry
			opt.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
				dialed = append(dialed, addr)
				if !listening {
					return nil, errors.New("connection refused")
				}
				return (&net.Dialer{}).DialContext(ctx, network, ln.Addr().String())
			}
			out := f.Run(context.Background(), opt)
			if len(dialed) == 0 || dialed[0] != "192.0.2.10:25" {
				t.Errorf("dialed %v, want the control's address and SMTP port", dialed)
			}
			if listening && Failed(out) != 0 || !listening && (out[0].Status != StatusFailed || out[1].Status != StatusSkipped ||
				!strings.Contains(out[1].Err.Error(), "does not answer")) {
				t.Errorf("outcomes: %+v", out)
			}
		})
	}
}

// TestResultTables: the table and JSON have a row per node with its error.
func TestResultTables(t *testing.T) {
	t.Parallel()
	out := []Outcome{
		{Result: deploy.Result{Node: "ctl", Target: "site-a", Action: deploy.ActionCreate, ID: "vm-1", IP: "192.0.2.10", Attempts: 1, Elapsed: 1500 * time.Millisecond}, Status: StatusOK},
		{Result: deploy.Result{Node: "sec-1", Target: "site-b", Attempts: 3, Err: errors.New("deploy: task\nfailed")}, Status: StatusFailed},
	}
	var sb strings.Builder
	if err := WriteResults(&sb, out); err != nil {
		t.Fatal(err)
	}
	want := "NODE   TARGET  STATUS  ACTION  ID    IP          ATTEMPTS  TIME  NOTE\n" +
		"ctl    site-a  ok      create  vm-1  192.0.2.10  1         1.5s  \n" +
		"sec-1  site-b  failed  -       -     -           3         0s    deploy: task failed\n"
	if !strings.HasPrefix(sb.String(), want) || !strings.Contains(sb.String(), "1 of 2 nodes ok") {
		t.Errorf("table:\n%s\nwant:\n%s", sb.String(), want)
	}
	sb.Reset()
	if err := WriteResultsJSON(&sb, out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sb.String(), `"error": "deploy: task\nfailed"`) || !strings.Contains(sb.String(), `"seconds": 1.5`) {
		t.Errorf("json:\n%s", sb.String())
	}
}

// TestPlanJSONRedacted: the JSON plan shows each node's first-boot answers
// with secrets redacted, and a DHCP control node's address as pending.
func TestPlanJSONRedacted(t *testing.T) {
	t.Parallel()
	newFake(t, "a")
	newFake(t, "b")
	f := openFleet(t, fleetYAML(1, false, ""))
	var sb strings.Builder
	if err := WritePlanJSON(&sb, f.Plan(context.Background(), Options{})); err != nil {
		t.Fatal(err)
	}
	js := sb.String()
	if strings.Contains(js, testToken) {
		t.Errorf("plan shows the join token:\n%s", js)
	}
	for _, want := range []string{`"ksmg.cluster.join_token": "<secret>"`, `"ksmg.cluster.control_address": "` + PendingAddress + `"`, `"action": "create"`} {
		if !strings.Contains(js, want) {
			t.Errorf("plan JSON lacks %s:\n%s", want, js)
		}
	}
}
