// Command benchdeploy is the deploy benchmark (make bench-deploy): a fleet
// of nodes into govmomi's vCenter simulator (vcsim) through the fleet
// runner with its bounded concurrency, and the same nodes imported one at
// a time with the same vsphere driver, in the same run, each into a fresh
// simulator; it prints the wall time of each and the ratio.
//
// vcsim answers in microseconds where a real vCenter takes tens to
// hundreds of milliseconds per call, and its CPU work competes with ours on
// the same host; so with no added latency the ratio mostly measures local
// CPU parallelism. -delay adds the simulator's per-call latency
// (Model.DelayConfig) to stand for a real vCenter's round trips; every
// setting is printed with its results.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"gopkg.in/yaml.v3"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/fleet"
	_ "github.com/ksmg-appliance/ksmg/deploy/vsphere" // registers kind vsphere
	"github.com/ksmg-appliance/ksmg/deploy/vsphere/vspheretest"
)

func main() {
	nodes := flag.Int("nodes", 100, "fleet size (1 control + nodes-1 secondaries)")
	conc := flag.Int("concurrency", 4, "the fleet runner's concurrency (ksmg deploy fleet's default is 4)")
	delays := flag.String("delay", "0,20", "comma-separated simulated latencies per vSphere API call, in ms; each is one round")
	flag.Parse()
	// the driver and the OVA writer log every step; the benchmark prints
	// only its results
	slog.SetDefault(slog.New(slog.DiscardHandler))
	if err := run(*nodes, *conc, *delays); err != nil {
		fmt.Fprintln(os.Stderr, "benchdeploy:", err)
		os.Exit(1)
	}
}

func run(nodes, conc int, delays string) error {
	if nodes < 2 || conc < 1 {
		return fmt.Errorf("-nodes must be at least 2 and -concurrency at least 1")
	}
	tb := &benchTB{}
	defer tb.cleanup()
	ova := vspheretest.SmallOVA(tb)
	if tb.err != nil {
		return tb.err
	}
	fmt.Printf("deploy benchmark: %d nodes (1 control + %d secondaries), OVA %s (%d MiB disk), vcsim VPX model, %d CPUs\n",
		nodes, nodes-1, filepath.Base(ova), vspheretest.DiskCapacity>>20, runtime.NumCPU())
	for _, ds := range strings.Split(delays, ",") {
		delay, err := strconv.Atoi(strings.TrimSpace(ds))
		if err != nil || delay < 0 {
			return fmt.Errorf("-delay %q: not a list of milliseconds", delays)
		}
		fmt.Printf("\nsimulated latency per API call: %d ms\n", delay)
		fl, err := round(tb, ova, nodes, delay, conc)
		if err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
		fmt.Printf("  ksmg deploy fleet (concurrency %d): %8.2fs\n", conc, fl.Seconds())
		seq, err := round(tb, ova, nodes, delay, 0)
		if err != nil {
			return fmt.Errorf("one at a time: %w", err)
		}
		fmt.Printf("  one at a time (same driver):       %8.2fs\n", seq.Seconds())
		fmt.Printf("  ratio one-at-a-time / fleet:       %8.2fx\n", seq.Seconds()/fl.Seconds())
	}
	return nil
}

// round deploys the fleet into a fresh simulator: through the fleet runner
// with concurrency conc, or, for conc 0, node after node with the driver's
// Deploy (the control node first, as the runner does). It checks that
// exactly the fleet's VMs were made.
func round(tb *benchTB, ova string, nodes, delay, conc int) (time.Duration, error) {
	model := simulator.VPX()
	model.DelayConfig.Delay = delay
	var elapsed time.Duration
	err := model.Run(func(ctx context.Context, c *vim25.Client) error {
		vspheretest.SafeFindChild(ctx, c) // a vcsim bug, see there
		inv, err := inventory(tb, c, ova, nodes)
		if err != nil {
			return err
		}
		before, err := countVMs(ctx, c)
		if err != nil {
			return err
		}
		start := time.Now()
		if conc > 0 {
			f, err := fleet.Open(ctx, inv, nil)
			if err != nil {
				return err
			}
			defer f.Close()
			out := f.Run(ctx, fleet.Options{Concurrency: conc, Retries: 0, Logger: slog.New(slog.DiscardHandler)})
			elapsed = time.Since(start)
			if n := fleet.Failed(out); n > 0 {
				var sb strings.Builder
				_ = fleet.WriteResults(&sb, out) // a strings.Builder takes every write
				return fmt.Errorf("%d nodes failed:\n%s", n, sb.String())
			}
		} else {
			open, _ := deploy.Driver("vsphere")
			d, err := open(ctx, deploy.TargetSpec{Name: "sim", Dir: inv.Dir, Decode: func(v any) error { return inv.Targets[0].Decode(inv.File, v) }})
			if err != nil {
				return err
			}
			defer d.Close()
			ctl := inv.Nodes[inv.Control].Node
			if _, err := d.Deploy(ctx, ctl); err != nil {
				return err
			}
			for i, n := range inv.Nodes {
				if i == inv.Control {
					continue
				}
				if _, err := d.Deploy(ctx, n.Node); err != nil {
					return err
				}
			}
			elapsed = time.Since(start)
		}
		after, err := countVMs(ctx, c)
		if err != nil {
			return err
		}
		if after-before != nodes {
			return fmt.Errorf("%d VMs made, want %d", after-before, nodes)
		}
		return nil
	})
	return elapsed, err
}

// inventory writes and loads the benchmark's fleet.yaml.
func inventory(tb *benchTB, c *vim25.Client, ova string, nodes int) (*fleet.Inventory, error) {
	target, err := yaml.Marshal(vspheretest.Target(tb, c))
	if err != nil {
		return nil, err
	}
	dir := tb.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("bench-join-token-0123456789\n"), 0o600); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "images: {ova: %s}\ndefaults:\n  wait_ip: 0s\n  properties: {ksmg.eula.accepted: \"true\"}\n", ova)
	b.WriteString("targets:\n  sim:\n    kind: vsphere\n")
	for _, l := range strings.Split(strings.TrimSpace(string(target)), "\n") {
		b.WriteString("    " + l + "\n")
	}
	fmt.Fprintf(&b, "cluster: {join_token: {file: %s}}\nnodes:\n", tok)
	b.WriteString("  - {name: ksmg-control, target: sim, role: control, addresses: {ipv4: 192.0.2.10/24}}\n")
	for i := 1; i < nodes; i++ {
		fmt.Fprintf(&b, "  - {name: ksmg-%03d, target: sim, role: secondary}\n", i)
	}
	p := filepath.Join(dir, "fleet.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	if tb.err != nil {
		return nil, tb.err
	}
	return fleet.Load(p)
}

func countVMs(ctx context.Context, c *vim25.Client) (int, error) {
	v, err := view.NewManager(c).CreateContainerView(ctx, c.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		return 0, err
	}
	defer func() { _ = v.Destroy(ctx) }()
	var vms []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name"}, &vms); err != nil {
		return 0, err
	}
	return len(vms), nil
}

// benchTB lets the test helpers of vspheretest (small OVA, simulator
// target) run in this program: embedding testing.TB satisfies the
// interface, and the methods the helpers call are implemented here.
type benchTB struct {
	testing.TB
	dirs     []string
	cleanups []func()
	err      error
}

func (b *benchTB) Helper() {}
func (b *benchTB) TempDir() string {
	d, err := os.MkdirTemp("", "benchdeploy-")
	if err != nil {
		b.Fatal(err)
	}
	b.dirs = append(b.dirs, d)
	return d
}
func (b *benchTB) Fatal(args ...any) { b.Fatalf("%s", fmt.Sprint(args...)) }
func (b *benchTB) Fatalf(format string, args ...any) {
	// the helpers stop at Fatal; a program cannot Goexit its caller safely
	b.cleanup()
	fmt.Fprintf(os.Stderr, "benchdeploy: "+format+"\n", args...)
	os.Exit(1)
}
func (b *benchTB) Errorf(format string, args ...any) { b.err = fmt.Errorf(format, args...) }
func (b *benchTB) Cleanup(f func())                  { b.cleanups = append(b.cleanups, f) }
func (b *benchTB) cleanup() {
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		b.cleanups[i]()
	}
	b.cleanups = nil
	for _, d := range b.dirs {
		os.RemoveAll(d)
	}
	b.dirs = nil
}
