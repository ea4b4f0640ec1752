package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ksmg-appliance/ksmg/deploy"
)

// Options tune a fleet run.
type Options struct {
	Concurrency int           // nodes deployed at once; < 1 means 4
	Retries     int           // further attempts after a failure that is not deploy.IsPermanent
	Backoff     time.Duration // wait before the first retry, doubled for each next one; 0 means 5s
	MaxBackoff  time.Duration // cap of the doubling; 0 means 2m
	Replace     bool          // replace finished VMs too (deploy.Node.Replace; never a foreign VM)
	ApplyDrift  bool          // change drifted VMs in place where safe (deploy.Node.ApplyDrift)
	Prune       bool          // remove the cluster's VMs whose nodes left the inventory (orphans)
	// Only limits the run to these nodes (by name); nil is every node.
	Only []string
	// ShutdownTimeout is how long a removed VM's guest may take to shut
	// down; 0 means deploy.DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
	// Progress and Waiting, when set, are told of each node's uploads and
	// of what it waits for (see deploy.Node); they may be called from
	// several goroutines.
	Progress func(node, stage string, done, total int64)
	Waiting  func(node, what string, elapsed time.Duration)
	// Done, when set, is told when a node's deploy ended (its progress
	// can go).
	Done func(node string)
	// Dial is used by the control probe; nil is net.Dialer.DialContext.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// noControl says why the control node's address is unknown to a run
	// that leaves the control node out.
	noControl error
}

// needsControl says whether n is a Secondary node that is told the
// control node's address by the run.
func needsControl(n Node) bool {
	return n.Role == deploy.RoleSecondary && n.Properties["ksmg.cluster.control_address"] == ""
}

func (o *Options) defaults() {
	if o.Concurrency < 1 {
		o.Concurrency = 4
	}
	if o.Retries < 0 {
		o.Retries = 0
	}
	if o.Backoff <= 0 {
		o.Backoff = 5 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Dial == nil {
		o.Dial = (&net.Dialer{}).DialContext
	}
}

// Status of a node after a run.
type Status string

const (
	StatusOK      Status = "ok"
	StatusFailed  Status = "failed"
	StatusSkipped Status = "skipped" // never started: the control node failed, its target is down, or the run was interrupted
)

// Outcome is what a run did to one node.
type Outcome struct {
	deploy.Result
	Status Status
}

// PlanRow is what a run would do to one node (or, Action orphan, to a VM
// of the cluster no node names any more).
type PlanRow struct {
	deploy.Plan
	// Properties are the node's first-boot answers with secret values
	// replaced (deploy.Redact); a control address only the control
	// node's deploy can tell is shown as PendingAddress.
	Properties map[string]string
	// What the node asks for (0 or "": the image's or target's default).
	CPUs, MemoryMiB, DiskGiB int
	Network                  string
	VLAN                     int
	Err                      error
}

// PendingAddress stands in a plan for the control address of Secondary
// nodes when it is the IP the control node's deploy will report.
const PendingAddress = "<IP the control node reports>"

// TargetError is a target that could not be opened (unreachable, its TLS
// handshake failed): every node on it fails with it, and tables and logs
// report it once.
type TargetError struct {
	Target string
	Err    error
}

func (e *TargetError) Error() string { return "target " + e.Target + " unreachable: " + e.Err.Error() }
func (e *TargetError) Unwrap() error { return e.Err }

// target is one opened (or not yet opened) target of the fleet.
type target struct {
	t  Target
	mu sync.Mutex
	d  deploy.Deployer
	// err is the last open's error, tries how often it was tried.
	err    error
	tries  int
	logged bool
}

// Fleet is an inventory with its targets opened.
type Fleet struct {
	inv     *Inventory
	targets map[string]*target
	log     *slog.Logger
}

// Open opens every target of the inventory through its registered driver,
// in parallel. A driver setting the driver rejects is an inventory problem
// and fails Open with all such problems (file:line: reason) before
// anything is touched; a target that is merely unreachable fails (and is
// tried again with) its own nodes only. log, when not nil, gets the
// drivers' lines.
func Open(ctx context.Context, inv *Inventory, log *slog.Logger) (*Fleet, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{inv: inv, targets: map[string]*target{}, log: log}
	var (
		mu        sync.Mutex
		wg        sync.WaitGroup
		configErr []error
	)
	for _, t := range inv.Targets {
		tg := &target{t: t}
		f.targets[t.Name] = tg
		wg.Go(func() {
			errs := f.open(ctx, tg)
			if len(errs) > 0 {
				mu.Lock()
				configErr = append(configErr, errs...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(configErr) > 0 {
		f.Close()
		return nil, &InventoryError{configErr}
	}
	return f, nil
}

// open opens tg through its driver (tg.mu held or not yet shared); it
// returns the inventory problems the driver found.
func (f *Fleet) open(ctx context.Context, tg *target) []error {
	t := tg.t
	opener, ok := deploy.Driver(t.Kind)
	if !ok {
		return []error{&posError{f.inv.File, t.Line, fmt.Sprintf("targets.%s: kind %q is not a known driver", t.Name, t.Kind)}}
	}
	var decodeErrs []error
	decode := func(v any) error {
		errs := t.decode(f.inv.File, v)
		decodeErrs = append(decodeErrs, errs...)
		return errors.Join(errs...)
	}
	tg.tries++
	d, err := opener(ctx, deploy.TargetSpec{Name: t.Name, Decode: decode, Dir: f.inv.Dir, Logger: f.log})
	switch {
	case len(decodeErrs) > 0:
		if d != nil {
			d.Close()
		}
		return decodeErrs
	case err != nil && deploy.IsPermanent(err) && tg.tries == 1:
		// a setting the driver checks beyond its YAML shape, or a
		// certificate it cannot trust
		return []error{&posError{f.inv.File, t.Line, fmt.Sprintf("targets.%s: %v", t.Name, err)}}
	case err != nil:
		tg.err = &TargetError{Target: t.Name, Err: err}
		if !tg.logged {
			tg.logged = true
			f.log.Error("target unreachable", "target", t.Name, "err", err)
		}
	default:
		tg.d, tg.err = d, nil
	}
	return nil
}

// deployer returns the node's target, opened; a target that could not be
// opened is tried again once per attempt of the nodes on it (the first
// node to get there does, the others share its answer).
func (f *Fleet) deployer(ctx context.Context, target string, attempt int) (deploy.Deployer, error) {
	tg := f.targets[target]
	if tg == nil {
		return nil, fmt.Errorf("target %s is not in the inventory", target)
	}
	tg.mu.Lock()
	defer tg.mu.Unlock()
	if tg.d != nil {
		return tg.d, nil
	}
	if tg.tries <= attempt && !deploy.IsPermanent(tg.err) && ctx.Err() == nil {
		f.open(ctx, tg)
		if tg.d != nil {
			f.log.Info("target reachable again", "target", target)
			return tg.d, nil
		}
	}
	return nil, tg.err
}

// Close closes every opened target.
func (f *Fleet) Close() error {
	var errs []error
	for name, tg := range f.targets {
		tg.mu.Lock()
		if tg.d != nil {
			if err := tg.d.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close target %s: %w", name, err))
			}
			tg.d = nil
		}
		tg.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Inventory returns the fleet's inventory.
func (f *Fleet) Inventory() *Inventory { return f.inv }

// CheckOnly reports names of only that no node of the inventory has.
func (inv *Inventory) CheckOnly(only []string) error {
	var unknown []string
	for _, name := range only {
		if !slices.ContainsFunc(inv.Nodes, func(n Node) bool { return n.Name == name }) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		names := make([]string, len(inv.Nodes))
		for i, n := range inv.Nodes {
			names[i] = n.Name
		}
		return fmt.Errorf("--only %s: no such node in %s (nodes: %s)", strings.Join(unknown, ","), inv.File, strings.Join(names, ", "))
	}
	return nil
}

// selected reports whether n is in the run (opt.Only).
func (o *Options) selected(name string) bool {
	return len(o.Only) == 0 || slices.Contains(o.Only, name)
}

// node is the deploy.Node of n as the run deploys it.
func (f *Fleet) node(n Node, opt Options) deploy.Node {
	dn := n.Node
	dn.Properties = maps.Clone(n.Properties)
	dn.Replace, dn.ApplyDrift, dn.ReplaceForeign = opt.Replace, opt.ApplyDrift, false
	if opt.Progress != nil {
		dn.Progress = func(stage string, done, total int64) { opt.Progress(n.Name, stage, done, total) }
	}
	if opt.Waiting != nil {
		dn.Waiting = func(what string, elapsed time.Duration) { opt.Waiting(n.Name, what, elapsed) }
	}
	return dn
}

// Plan asks every node's target what a run would do, and, with
// opt.Prune, which VMs of the cluster no node names any more (orphans).
// It changes nothing.
func (f *Fleet) Plan(ctx context.Context, opt Options) []PlanRow {
	opt.defaults()
	var rows []PlanRow
	for _, n := range f.inv.Nodes {
		if !opt.selected(n.Name) {
			continue
		}
		r := PlanRow{Properties: deploy.Redact(n.Properties), CPUs: n.CPUs, MemoryMiB: n.MemoryMiB, DiskGiB: n.DiskGiB, Network: n.Network, VLAN: n.VLAN}
		r.Node, r.Target = n.Name, n.Target
		if n.Role == deploy.RoleSecondary && r.Properties["ksmg.cluster.control_address"] == "" {
			r.Properties["ksmg.cluster.control_address"] = PendingAddress
		}
		rows = append(rows, r)
	}
	// Secondary nodes are planned with the address the run tells them:
	// the control VM's current one, unless the run replaces the control
	// node (then its deploy reports it). --only without the control node:
	// the run asks its VM too, and a changing Secondary node without it
	// fails.
	var ctlAddr string
	var noControl error
	ctlOut := f.inv.Control < 0 || !opt.selected(f.inv.Nodes[f.inv.Control].Name)
	if (ctlOut || !opt.Replace) && slices.ContainsFunc(f.inv.Nodes, func(n Node) bool { return opt.selected(n.Name) && needsControl(n) }) {
		ctlAddr, noControl = f.deployedControlAddress(ctx)
	}
	sem := make(chan struct{}, opt.Concurrency)
	var wg sync.WaitGroup
	for i := range rows {
		n := f.inv.Nodes[slices.IndexFunc(f.inv.Nodes, func(n Node) bool { return n.Name == rows[i].Node && n.Target == rows[i].Target })]
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				rows[i].Err = ctx.Err()
				return
			}
			d, err := f.deployer(ctx, n.Target, 0)
			if err != nil {
				rows[i].Err = err
				return
			}
			dn := f.node(n, opt)
			if needsControl(n) && ctlAddr != "" {
				dn.Properties["ksmg.cluster.control_address"] = ctlAddr
				rows[i].Properties["ksmg.cluster.control_address"] = ctlAddr
			}
			p, err := d.Plan(ctx, dn)
			if err != nil {
				rows[i].Err = fmt.Errorf("plan: %w", err)
				return
			}
			p.Node, p.Target = n.Name, n.Target
			rows[i].Plan = p
			if ctlOut && needsControl(n) && ctlAddr == "" && p.Action != deploy.ActionUnchanged {
				rows[i].Err = controlUnknown(noControl)
			}
		})
	}
	wg.Wait()
	return append(rows, f.orphans(ctx, opt)...)
}

// orphans are the VMs of the cluster on the inventory's targets that no
// node of the inventory names there (a node removed from the inventory or
// moved to another target, or the old VM of a swap that could not be
// removed), as plan rows.
func (f *Fleet) orphans(ctx context.Context, opt Options) []PlanRow {
	var rows []PlanRow
	for _, t := range f.inv.Targets {
		d, err := f.deployer(ctx, t.Name, 0)
		if err != nil {
			continue // its nodes report it
		}
		vms, err := d.Deployed(ctx)
		if err != nil {
			rows = append(rows, PlanRow{Plan: deploy.Plan{Node: "-", Target: t.Name}, Err: fmt.Errorf("list the cluster's VMs: %w", err)})
			continue
		}
		for _, vm := range vms {
			if vm.Record.Cluster != f.inv.Cluster || slices.ContainsFunc(f.inv.Nodes, func(n Node) bool { return n.Name == vm.Name && n.Target == t.Name }) {
				continue
			}
			if inSwap(f.inv.Nodes, t.Name, vm.Name, vms) {
				continue
			}
			if !opt.selected(vm.Name) {
				continue
			}
			reason := fmt.Sprintf("VM %s (%s) of cluster %s is in no node of the inventory", vm.Name, vm.ID, f.inv.Cluster)
			moved := slices.IndexFunc(f.inv.Nodes, func(n Node) bool { return n.Name == vm.Name })
			if moved >= 0 {
				reason = fmt.Sprintf("VM %s (%s): node %s moved to %s", vm.Name, vm.ID, vm.Name, f.inv.Nodes[moved].Target)
			}
			switch {
			case opt.Prune && moved >= 0:
				reason += "; --prune removes it once the node's deploy there succeeded"
			case opt.Prune:
				reason += "; --prune removes it"
			default:
				reason += "; left alone (--prune removes it)"
			}
			rows = append(rows, PlanRow{Plan: deploy.Plan{Node: vm.Name, Target: t.Name, Action: deploy.ActionOrphan, Reason: reason, ID: vm.ID}})
		}
	}
	slices.SortFunc(rows, func(a, b PlanRow) int { return strings.Compare(a.Target+"/"+a.Node, b.Target+"/"+b.Node) })
	return rows
}

// inSwap says whether the VM name on target is a node's aside or temporary
// name (deploy.SwapIn) while the node has no finished VM of its own: a
// replace stopped between its renames left the VM in service (and its
// replacement) so, and the node's deploy puts it back. Beside a finished
// VM of the node they are leftovers, orphans like any other.
func inSwap(nodes []Node, target, name string, vms []deploy.VM) bool {
	return slices.ContainsFunc(nodes, func(n Node) bool {
		return n.Target == target && (name == deploy.AsideName(n.Name) || name == deploy.TempName(n.Name)) &&
			!slices.ContainsFunc(vms, func(vm deploy.VM) bool { return vm.Name == n.Name && vm.Record.Complete() })
	})
}

// Run deploys the fleet: the control node first, then, once it answers,
// every secondary node, at most opt.Concurrency at a time; with
// opt.Prune, the cluster's orphans are removed last. A node's failure does
// not stop the others; a cancelled ctx starts no further node. The
// outcomes are in inventory order, orphans after them.
func (f *Fleet) Run(ctx context.Context, opt Options) []Outcome {
	opt.defaults()
	var nodes []Node
	for _, n := range f.inv.Nodes {
		if opt.selected(n.Name) {
			nodes = append(nodes, n)
		}
	}
	out := make([]Outcome, len(nodes))
	ctl := -1
	for i, n := range nodes {
		out[i].Node, out[i].Target = n.Name, n.Target
		if n.Role == deploy.RoleControl {
			ctl = i
		}
	}
	sem := make(chan struct{}, opt.Concurrency)

	// The control node, alone: Secondary nodes are told its address.
	ctlAddr := f.inv.ControlAddress
	var ready error
	if ctl >= 0 {
		// A control node replaced at a new address (DHCP) cuts off the
		// Secondary nodes this run leaves out: they are told.
		var left []string
		for _, n := range f.inv.Nodes {
			if needsControl(n) && !opt.selected(n.Name) {
				left = append(left, n.Name)
			}
		}
		var before string
		if opt.Replace && ctlAddr == "" && len(left) > 0 {
			before, _ = f.deployedControlAddress(ctx)
		}
		out[ctl] = f.deployNode(ctx, opt, nodes[ctl])
		ctlAddr, ready = f.controlReady(ctx, opt, &out[ctl])
		if before != "" && ctlAddr != "" && ctlAddr != before {
			opt.Logger.Warn("the control node has a new address; Secondary nodes outside this run still join the old one: replace them (--replace --only "+strings.Join(left, ",")+")",
				"node", nodes[ctl].Name, "old", before, "new", ctlAddr, "nodes", strings.Join(left, ","))
		}
	} else if ctlAddr == "" && slices.ContainsFunc(nodes, needsControl) {
		// --only without the control node: its VM tells its address.
		if ctlAddr, opt.noControl = f.deployedControlAddress(ctx); ctlAddr != "" {
			opt.Logger.Info("secondary nodes join the deployed control node", "address", ctlAddr)
		}
	}

	var wg sync.WaitGroup
	for i, n := range nodes {
		if i == ctl {
			continue
		}
		if ready != nil {
			out[i].Status, out[i].Err = StatusSkipped, ready
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			out[i].Status, out[i].Err = StatusSkipped, fmt.Errorf("not started: %w", context.Cause(ctx))
			continue
		}
		n.Properties = maps.Clone(n.Properties)
		if needsControl(n) && ctlAddr != "" {
			n.Properties["ksmg.cluster.control_address"] = ctlAddr
		}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i] = f.deployNode(ctx, opt, n)
		})
	}
	wg.Wait()
	if opt.Prune && ctx.Err() == nil {
		out = append(out, f.prune(ctx, opt, out)...)
	}
	return out
}

// prune removes the cluster's orphans. The VM a node left on its former
// target (the node moved) goes only once the node's deploy in this run
// (done) succeeded: until then it is the one serving.
func (f *Fleet) prune(ctx context.Context, opt Options, done []Outcome) []Outcome {
	var out []Outcome
	for _, r := range f.orphans(ctx, opt) {
		o := Outcome{Result: deploy.Result{Node: r.Node, Target: r.Target, ID: r.ID}}
		if r.Err != nil {
			o.Status, o.Err = StatusFailed, r.Err
			out = append(out, o)
			continue
		}
		if i := slices.IndexFunc(done, func(o Outcome) bool { return o.Node == r.Node }); i >= 0 && done[i].Status != StatusOK {
			o.Status = StatusSkipped
			o.Err = fmt.Errorf("kept: node %s moved to %s, where its deploy did not succeed (%s); this VM goes once it does", r.Node, done[i].Target, done[i].Status)
			opt.Logger.Warn("orphan kept", "vm", r.Node, "target", r.Target, "err", o.Err)
			out = append(out, o)
			continue
		}
		opt.Logger.Info("removing orphan", "vm", r.Node, "target", r.Target, "reason", r.Reason)
		o = f.onNode(ctx, r.Node, r.Target, func(d deploy.Deployer) (deploy.Result, error) {
			return d.Remove(ctx, deploy.RemoveRequest{Name: r.Node, ShutdownTimeout: opt.ShutdownTimeout})
		})
		if o.Err != nil {
			opt.Logger.Error("orphan not removed", "vm", r.Node, "target", r.Target, "err", o.Err)
		}
		out = append(out, o)
	}
	return out
}

// Remove removes the inventory's nodes (opt.Only, or all), secondaries
// first and the control node last, and only when no Secondary node stays
// deployed (one of the run that could not be removed, or one the run
// leaves out): ours only, a guest shutdown first. With plan it only says
// what would go, and what would be kept.
func (f *Fleet) Remove(ctx context.Context, opt Options, plan bool) []Outcome {
	opt.defaults()
	var nodes []Node
	for _, n := range f.inv.Nodes {
		if opt.selected(n.Name) && n.Role != deploy.RoleControl {
			nodes = append(nodes, n)
		}
	}
	for _, n := range f.inv.Nodes {
		if opt.selected(n.Name) && n.Role == deploy.RoleControl {
			nodes = append(nodes, n)
		}
	}
	out := make([]Outcome, len(nodes))
	sem := make(chan struct{}, opt.Concurrency)
	var wg sync.WaitGroup
	last := len(nodes)
	if last > 0 && nodes[last-1].Role == deploy.RoleControl {
		last-- // the control node after every other
	}
	run := func(i int) {
		n := nodes[i]
		out[i] = f.onNode(ctx, n.Name, n.Target, func(d deploy.Deployer) (deploy.Result, error) {
			return d.Remove(ctx, deploy.RemoveRequest{Name: n.Name, Plan: plan, ShutdownTimeout: opt.ShutdownTimeout})
		})
	}
	for i := range last {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			run(i)
		})
	}
	wg.Wait()
	if last < len(nodes) {
		// Secondary nodes depend on the control node: it stays while one
		// that was to go still runs.
		var kept []string
		for _, o := range out[:last] {
			if o.Status != StatusOK && !plan {
				kept = append(kept, o.Node)
			}
		}
		kept = append(kept, f.stayingSecondaries(ctx, opt)...)
		if len(kept) > 0 {
			n := nodes[last]
			out[last] = Outcome{Result: deploy.Result{Node: n.Name, Target: n.Target}, Status: StatusSkipped}
			out[last].Err = fmt.Errorf("kept: Secondary nodes %s stay deployed and depend on it; remove them first", strings.Join(kept, ", "))
			opt.Logger.Warn("control node kept", "node", n.Name, "err", out[last].Err)
		} else {
			run(last)
		}
	}
	return out
}

// stayingSecondaries are the Secondary nodes a removal leaves out
// (opt.Only) whose VMs are deployed, or whose target cannot tell: they
// keep the control node.
func (f *Fleet) stayingSecondaries(ctx context.Context, opt Options) []string {
	var stay []string
	for _, n := range f.inv.Nodes {
		if n.Role != deploy.RoleSecondary || opt.selected(n.Name) {
			continue
		}
		o := f.onNode(ctx, n.Name, n.Target, func(d deploy.Deployer) (deploy.Result, error) {
			return d.Remove(ctx, deploy.RemoveRequest{Name: n.Name, Plan: true})
		})
		switch {
		case o.Err != nil:
			stay = append(stay, n.Name+" (not known: "+o.Err.Error()+")")
		case o.Action == deploy.ActionRemove:
			stay = append(stay, n.Name)
		}
	}
	return stay
}

// Scrub clears the secret answers from every node (opt.Only, or all)
// whose first boot reported completion.
func (f *Fleet) Scrub(ctx context.Context, opt Options) []Outcome {
	opt.defaults()
	var out []Outcome
	for _, n := range f.inv.Nodes {
		if !opt.selected(n.Name) {
			continue
		}
		out = append(out, f.onNode(ctx, n.Name, n.Target, func(d deploy.Deployer) (deploy.Result, error) {
			return d.Scrub(ctx, f.node(n, opt))
		}))
	}
	return out
}

// onNode runs call once on the VM name's target and makes its outcome.
func (f *Fleet) onNode(ctx context.Context, name, target string, call func(deploy.Deployer) (deploy.Result, error)) Outcome {
	o := Outcome{Result: deploy.Result{Node: name, Target: target}}
	d, err := f.deployer(ctx, target, 0)
	if err == nil {
		o.Result, err = call(d)
		o.Node, o.Target = name, target
	}
	o.Status, o.Err = StatusOK, err
	if err != nil {
		o.Status = StatusFailed
	}
	return o
}

// controlReady says whether Secondary nodes may follow the control node
// (nil) and the address they join.
func (f *Fleet) controlReady(ctx context.Context, opt Options, o *Outcome) (string, error) {
	if o.Status != StatusOK {
		return "", fmt.Errorf("control node %s failed: %w", o.Node, o.Err)
	}
	addr := f.inv.ControlAddress
	if addr == "" {
		addr = o.IP
	}
	if addr == "" && o.Action != deploy.ActionUnchanged {
		err := fmt.Errorf("control node %s reported no IP address (give it a static address, cluster.control_address, or a wait_ip)", o.Node)
		o.Status, o.Err = StatusFailed, err
		return "", err
	}
	if p := f.inv.Probe; p.Port != 0 {
		host := addr
		if host == "" {
			host = o.IP
		}
		if err := probe(ctx, opt, host, p); err != nil {
			o.Status, o.Err = StatusFailed, err
			return "", fmt.Errorf("control node %s does not answer: %w", o.Node, err)
		}
	}
	return addr, nil
}

// deployedControlAddress is the address the control node's VM reports
// now, read through a plan (nothing is changed), for a run that leaves the
// control node out (--only) while Secondary nodes need its address. The
// error says why there is none (no finished control VM, no address
// reported, its target down); only Secondary nodes that change need it.
func (f *Fleet) deployedControlAddress(ctx context.Context) (string, error) {
	if f.inv.Control < 0 || f.inv.Control >= len(f.inv.Nodes) || f.inv.Nodes[f.inv.Control].Role != deploy.RoleControl {
		return "", errors.New("the inventory has no control node")
	}
	n := f.inv.Nodes[f.inv.Control]
	d, err := f.deployer(ctx, n.Target, 0)
	if err != nil {
		return "", fmt.Errorf("control node %s: %w", n.Name, err)
	}
	p, err := d.Plan(ctx, f.node(n, Options{}))
	if err != nil {
		return "", fmt.Errorf("control node %s: plan: %w", n.Name, err)
	}
	switch p.Action {
	case deploy.ActionUnchanged, deploy.ActionDrift, deploy.ActionOutdated:
	default:
		return "", fmt.Errorf("control node %s is not deployed and finished (%s: %s)", n.Name, p.Action, p.Reason)
	}
	addr := p.IP
	if r, ok := d.(deploy.AddressReader); ok && addr == "" {
		if addr, err = r.GuestAddress(ctx, p.ID); err != nil {
			return "", fmt.Errorf("control node %s: read its address: %w", n.Name, err)
		}
	}
	if addr == "" {
		return "", fmt.Errorf("control node %s (%s) reports no IP address", n.Name, p.ID)
	}
	return addr, nil
}

// controlUnknown is the error of a Secondary node that must be told the
// control node's address when none is known; why, when set, says why.
func controlUnknown(why error) error {
	if why == nil {
		why = errors.New("it reported no IP")
	}
	return deploy.Permanent(fmt.Errorf("the control node's address is unknown: %w; give the control node a static address, set cluster.control_address, or include the control node in the run", why))
}

// probe waits until a TCP connection to host:port succeeds.
func probe(ctx context.Context, opt Options, host string, p Probe) error {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h // a control_address with its cluster port
	}
	if host == "" {
		return fmt.Errorf("probe: no address for the control node")
	}
	target := net.JoinHostPort(host, strconv.Itoa(p.Port))
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	var last error
	for {
		c, err := opt.Dial(ctx, "tcp", target)
		if err == nil {
			c.Close()
			opt.Logger.Info("control node answers", "address", target)
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("probe %s: no answer within %s: %w", target, p.Timeout, last)
		case <-time.After(2 * time.Second):
		}
	}
}

// deployNode plans and deploys one node, retrying failures that are not
// permanent (a target that could not be opened among them). Every attempt
// plans afresh, so a VM a failed attempt left half-made is replaced by the
// next one, never duplicated.
func (f *Fleet) deployNode(ctx context.Context, opt Options, n Node) Outcome {
	if opt.Done != nil {
		defer opt.Done(n.Name)
	}
	start := time.Now()
	o := Outcome{Result: deploy.Result{Node: n.Name, Target: n.Target}}
	log := opt.Logger.With("node", n.Name, "target", n.Target)
	dn := f.node(n, opt)
	wait := opt.Backoff
	var first deploy.Action
	for attempt := 1; ; attempt++ {
		o.Attempts = attempt
		res, err := f.attemptNode(ctx, dn, n.Target, attempt, &first, opt.noControl)
		if err == nil {
			o.Result, o.Status = res, StatusOK
			o.Node, o.Target, o.Attempts = n.Name, n.Target, attempt
			if attempt > 1 && first != "" {
				o.Action = first // what the run did, not what the last retry saw
			}
			o.Elapsed = time.Since(start)
			log.Info("node deployed", "action", o.Action, "id", o.ID, "ip", o.IP, "attempts", attempt)
			return o
		}
		o.Err = err
		if first != "" {
			o.Action = first
		}
		var te *TargetError
		down := errors.As(err, &te)
		if deploy.IsPermanent(err) || attempt > opt.Retries || ctx.Err() != nil {
			o.Status, o.Elapsed = StatusFailed, time.Since(start)
			if down {
				o.Status = StatusSkipped // the target is reported, once
			} else {
				log.Error("node failed", "attempts", attempt, "err", err)
			}
			return o
		}
		if !down {
			log.Warn("node attempt failed, retrying", "attempt", attempt, "in", wait, "err", err)
		}
		select {
		case <-ctx.Done():
			o.Status, o.Elapsed = StatusFailed, time.Since(start)
			return o
		case <-time.After(wait):
		}
		wait = min(wait*2, opt.MaxBackoff)
	}
}

func (f *Fleet) attemptNode(ctx context.Context, n deploy.Node, target string, attempt int, first *deploy.Action, noControl error) (deploy.Result, error) {
	d, err := f.deployer(ctx, target, attempt)
	if err != nil {
		return deploy.Result{}, err
	}
	p, err := d.Plan(ctx, n)
	if err != nil {
		return deploy.Result{}, fmt.Errorf("plan: %w", err)
	}
	if *first == "" {
		*first = p.Action
	}
	if n.Role == deploy.RoleSecondary && n.Properties["ksmg.cluster.control_address"] == "" && p.Action != deploy.ActionUnchanged {
		return deploy.Result{}, controlUnknown(noControl)
	}
	// The driver's error names the node and the target itself.
	return d.Deploy(ctx, n)
}

// Failed counts the outcomes that are not ok.
func Failed(out []Outcome) int {
	n := 0
	for _, o := range out {
		if o.Status != StatusOK {
			n++
		}
	}
	return n
}
