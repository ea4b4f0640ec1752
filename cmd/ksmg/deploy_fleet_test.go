package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"gopkg.in/yaml.v3"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/vsphere/vspheretest"
)

// memTarget is an in-memory target for the command's tests, registered as
// kind "clitest": the command is tested for its flags, output and exit
// statuses here; the runner against the vSphere simulator in deploy/fleet.
type memTarget struct {
	mu   sync.Mutex
	vms  map[string]bool // name -> finished
	fail map[string]bool
}

var memTargets = struct {
	sync.Mutex
	m map[string]*memTarget
}{m: map[string]*memTarget{}}

// registerCLITest registers the in-memory target once per test binary
// (deploy keeps one driver registry per process).
var registerCLITest = sync.OnceFunc(func() {
	deploy.Register("clitest", func(ctx context.Context, t deploy.TargetSpec) (deploy.Deployer, error) {
		var c struct {
			Store string `yaml:"store"`
		}
		if err := t.Decode(&c); err != nil {
			return nil, err
		}
		memTargets.Lock()
		defer memTargets.Unlock()
		mt, ok := memTargets.m[c.Store]
		if !ok {
			mt = &memTarget{vms: map[string]bool{}, fail: map[string]bool{}}
			memTargets.m[c.Store] = mt
		}
		return mt, nil
	})
})

func (m *memTarget) Target() string { return "clitest" }

func (m *memTarget) Deployed(ctx context.Context) ([]deploy.VM, error) { return nil, nil }

func (m *memTarget) Remove(ctx context.Context, r deploy.RemoveRequest) (deploy.Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.vms[r.Name]; !ok {
		return deploy.Result{Node: r.Name, Action: deploy.ActionAbsent}, nil
	}
	if !r.Plan {
		delete(m.vms, r.Name)
	}
	return deploy.Result{Node: r.Name, Action: deploy.ActionRemove, ID: "id-" + r.Name}, nil
}

func (m *memTarget) Scrub(ctx context.Context, n deploy.Node) (deploy.Result, error) {
	return deploy.Result{Node: n.Name, Action: deploy.ActionScrub, ID: "id-" + n.Name}, nil
}
func (m *memTarget) Close() error { return nil }

func (m *memTarget) Plan(ctx context.Context, n deploy.Node) (deploy.Plan, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	done, ok := m.vms[n.Name]
	switch {
	case !ok:
		return deploy.Plan{Node: n.Name, Action: deploy.ActionCreate, Reason: "no VM"}, nil
	case done && !n.Replace:
		return deploy.Plan{Node: n.Name, Action: deploy.ActionUnchanged, Reason: "deployed by ksmg", ID: "id-" + n.Name}, nil
	}
	return deploy.Plan{Node: n.Name, Action: deploy.ActionReplace, Reason: "leftover", ID: "id-" + n.Name}, nil
}

func (m *memTarget) Deploy(ctx context.Context, n deploy.Node) (deploy.Result, error) {
	p, _ := m.Plan(ctx, n)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail[n.Name] {
		return deploy.Result{}, deploy.Permanent(errors.New("no space left on datastore"))
	}
	m.vms[n.Name] = true
	return deploy.Result{Node: n.Name, Action: p.Action, ID: "id-" + n.Name, IP: "198.51.100.7"}, nil
}

// runKsmg runs a fresh ksmg command tree in-process (retries without
// waiting) and returns its stdout.
func runKsmg(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCmd(newApp())
	root.SetOut(&out)
	root.SetArgs(append(args, "--backoff", "1ms"))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	}
	return 1
}

func TestDeployFleetCommand(t *testing.T) {
	registerCLITest()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "disk.img"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Parallel()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("cli-test-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	store := filepath.Base(dir) // one in-memory target per test run
	inv := `targets:
  mem: {kind: clitest, store: ` + store + `, image: disk.img}
cluster:
  join_token: {file: token}
nodes:
  - {name: ctl, target: mem, role: control, addresses: {ipv4: 192.0.2.10/24}}
  - {name: sec-1, target: mem, role: secondary}
  - {name: sec-2, target: mem, role: secondary}
`
	p := filepath.Join(dir, "fleet.yaml")
	if err := os.WriteFile(p, []byte(inv), 0o644); err != nil {
		t.Fatal(err)
	}

	// --plan: a table of creates, nothing made
	out, err := runKsmg(t, "deploy", "fleet", p, "--plan")
	if err != nil || !strings.Contains(out, "sec-2  mem     create  no VM") {
		t.Fatalf("--plan: %v\n%s", err, out)
	}
	mt := memTargets.m[store]
	if len(mt.vms) != 0 {
		t.Fatal("--plan deployed something")
	}

	// the run: all ok, exit 0, a row per node
	out, err = runKsmg(t, "deploy", "fleet", p, "--concurrency", "2")
	if err != nil || strings.Count(out, "  ok  ") != 3 || !strings.Contains(out, "3 of 3 nodes ok") {
		t.Fatalf("run: %v\n%s", err, out)
	}

	// re-run with --json: all unchanged
	out, err = runKsmg(t, "deploy", "fleet", p, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct{ Node, Status, Action, ID string }
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if len(rows) != 3 {
		t.Fatalf("json rows: %+v", rows)
	}
	for _, r := range rows {
		if r.Status != "ok" || r.Action != "unchanged" || r.ID != "id-"+r.Node {
			t.Errorf("re-run row %+v, want ok/unchanged", r)
		}
	}

	// a failing node: exit status 3, the others still fine
	mt.fail["sec-1"] = true
	out, err = runKsmg(t, "deploy", "fleet", p, "--replace")
	if exitCode(err) != exitNodesFailed || !strings.Contains(err.Error(), "1 of 3 nodes not deployed") ||
		!strings.Contains(out, "no space left on datastore") || !strings.Contains(out, "2 of 3 nodes ok") {
		t.Errorf("failing node: exit %d %v\n%s", exitCode(err), err, out)
	}

	// bad inventory and bad flags: exit status 2 with file:line
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(inv, "role: secondary}", "role: secondary, colour: red}", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = runKsmg(t, "deploy", "fleet", bad)
	if exitCode(err) != exitBadInventory || !strings.Contains(err.Error(), bad+`:7: nodes[1] (sec-1): unknown key "colour"`) {
		t.Errorf("bad inventory: exit %d %v", exitCode(err), err)
	}
	_, err = runKsmg(t, "deploy", "fleet", filepath.Join(dir, "missing.yaml"))
	if exitCode(err) != exitBadInventory {
		t.Errorf("missing inventory: exit %d %v", exitCode(err), err)
	}
	_, err = runKsmg(t, "deploy", "fleet", p, "--concurrency", "0")
	if exitCode(err) != exitBadInventory {
		t.Errorf("--concurrency 0: exit %d %v", exitCode(err), err)
	}
}

// TestDeployFleetSimulator: the command end to end with the vsphere driver
// in govmomi's simulator (no vCenter can run here): a 1+3 fleet deployed,
// the re-run all unchanged, --plan then all unchanged too.
func TestDeployFleetSimulator(t *testing.T) {
	ovaPath := vspheretest.SmallOVA(t)
	t.Parallel()
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("cli-sim-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		vspheretest.SafeFindChild(ctx, c)
		target, err := yaml.Marshal(vspheretest.Target(t, c))
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		b.WriteString("images: {ova: " + ovaPath + "}\ndefaults: {wait_ip: 0s, properties: {ksmg.eula.accepted: \"true\"}}\ntargets:\n  vc:\n    kind: vsphere\n")
		for _, l := range strings.Split(strings.TrimSpace(string(target)), "\n") {
			b.WriteString("    " + l + "\n")
		}
		b.WriteString("cluster: {join_token: {file: " + token + "}}\nnodes:\n  - {name: ctl, target: vc, role: control, addresses: {ipv4: 192.0.2.10/24}}\n")
		for _, n := range []string{"sec-1", "sec-2", "sec-3"} {
			b.WriteString("  - {name: " + n + ", target: vc, role: secondary}\n")
		}
		p := filepath.Join(t.TempDir(), "fleet.yaml")
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		before := len(vspheretest.VMs(ctx, t, c))
		out, err := runKsmg(t, "deploy", "fleet", p)
		if err != nil || strings.Count(out, " ok ") != 4 || strings.Count(out, "create") != 4 {
			t.Fatalf("deploy: %v\n%s", err, out)
		}
		if got := len(vspheretest.VMs(ctx, t, c)); got != before+4 {
			t.Errorf("%d VMs, want %d", got, before+4)
		}
		out, err = runKsmg(t, "deploy", "fleet", p)
		if err != nil || strings.Count(out, "unchanged") != 4 {
			t.Errorf("re-run: %v\n%s", err, out)
		}
		out, err = runKsmg(t, "deploy", "fleet", p, "--plan")
		if err != nil || strings.Count(out, "unchanged") != 4 {
			t.Errorf("--plan: %v\n%s", err, out)
		}
		if got := len(vspheretest.VMs(ctx, t, c)); got != before+4 {
			t.Errorf("%d VMs after the re-run and plan, want %d", got, before+4)
		}
	}, simulator.VPX())
}
