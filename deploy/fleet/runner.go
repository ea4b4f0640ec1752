package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strconv"
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
	Replace     bool          // replace finished VMs too (deploy.Node.Replace)
	Logger      *slog.Logger
	// Dial is used by the control probe; nil is net.Dialer.DialContext.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
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
	StatusSkipped Status = "skipped" // never started: the control node failed, or the run was interrupted
)

// Outcome is what a run did to one node.
type Outcome struct {
	deploy.Result
	Status Status
}

// PlanRow is what a run would do to one node.
type PlanRow struct {
	deploy.Plan
	// Properties are the node's first-boot answers with secret values
	// replaced (deploy.Redact); a control address only the control
	// node's deploy can tell is shown as PendingAddress.
	Properties map[string]string
	Err        error
}

// PendingAddress stands in a plan for the control address of Secondary
// nodes when it is the IP the control node's deploy will report.
const PendingAddress = "<IP the control node reports>"

// Fleet is an inventory with its targets opened.
type Fleet struct {
	inv       *Inventory
	deployers map[string]deploy.Deployer
	openErrs  map[string]error // targets that could not be opened (unreachable, rejected login)
}

// Open opens every target of the inventory through its registered driver.
// A driver setting the driver rejects is an inventory problem and fails
// Open with all such problems (file:line: reason) before anything is
// touched; a target that is merely unreachable fails only its own nodes.
func Open(ctx context.Context, inv *Inventory) (*Fleet, error) {
	f := &Fleet{inv: inv, deployers: map[string]deploy.Deployer{}, openErrs: map[string]error{}}
	var (
		mu        sync.Mutex
		wg        sync.WaitGroup
		configErr []error
	)
	for _, t := range inv.Targets {
		opener, ok := deploy.Driver(t.Kind)
		if !ok {
			configErr = append(configErr, &posError{inv.File, t.Line, fmt.Sprintf("targets.%s: kind %q is not a known driver", t.Name, t.Kind)})
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var decodeErrs []error
			decode := func(v any) error {
				errs := t.decode(inv.File, v)
				decodeErrs = append(decodeErrs, errs...)
				return errors.Join(errs...)
			}
			d, err := opener(ctx, t.Name, decode)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case len(decodeErrs) > 0:
				configErr = append(configErr, decodeErrs...)
				if d != nil {
					d.Close()
				}
			case err != nil && deploy.IsPermanent(err):
				// a setting the driver checks beyond its YAML shape
				configErr = append(configErr, &posError{inv.File, t.Line, fmt.Sprintf("targets.%s: %v", t.Name, err)})
			case err != nil:
				f.openErrs[t.Name] = fmt.Errorf("open target %s: %w", t.Name, err)
			default:
				f.deployers[t.Name] = d
			}
		}()
	}
	wg.Wait()
	if len(configErr) > 0 {
		f.Close()
		return nil, &InventoryError{configErr}
	}
	return f, nil
}

// Close closes every opened target.
func (f *Fleet) Close() error {
	var errs []error
	for name, d := range f.deployers {
		if err := d.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close target %s: %w", name, err))
		}
	}
	f.deployers = map[string]deploy.Deployer{}
	return errors.Join(errs...)
}

// Inventory returns the fleet's inventory.
func (f *Fleet) Inventory() *Inventory { return f.inv }

func (f *Fleet) deployer(n Node) (deploy.Deployer, error) {
	if err := f.openErrs[n.Target]; err != nil {
		return nil, err
	}
	d, ok := f.deployers[n.Target]
	if !ok {
		return nil, fmt.Errorf("target %s is not open", n.Target)
	}
	return d, nil
}

// Plan asks every node's target what a run would do. It changes nothing.
func (f *Fleet) Plan(ctx context.Context, opt Options) []PlanRow {
	opt.defaults()
	rows := make([]PlanRow, len(f.inv.Nodes))
	sem := make(chan struct{}, opt.Concurrency)
	var wg sync.WaitGroup
	for i, n := range f.inv.Nodes {
		rows[i].Node, rows[i].Target = n.Name, n.Target
		rows[i].Properties = deploy.Redact(n.Properties)
		if n.Role == deploy.RoleSecondary && rows[i].Properties["ksmg.cluster.control_address"] == "" {
			rows[i].Properties["ksmg.cluster.control_address"] = PendingAddress
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				rows[i].Err = ctx.Err()
				return
			}
			d, err := f.deployer(n)
			if err != nil {
				rows[i].Err = err
				return
			}
			dn := n.Node
			dn.Replace = opt.Replace
			p, err := d.Plan(ctx, dn)
			if err != nil {
				rows[i].Err = fmt.Errorf("plan: %w", err)
				return
			}
			p.Node, p.Target = n.Name, n.Target
			rows[i].Plan = p
		}()
	}
	wg.Wait()
	return rows
}

// Run deploys the fleet: the control node first, then, once it answers,
// every secondary node, at most opt.Concurrency at a time. A node's failure
// does not stop the others; a cancelled ctx starts no further node. The
// outcomes are in inventory order.
func (f *Fleet) Run(ctx context.Context, opt Options) []Outcome {
	opt.defaults()
	nodes := f.inv.Nodes
	out := make([]Outcome, len(nodes))
	for i, n := range nodes {
		out[i].Node, out[i].Target = n.Name, n.Target
	}
	ctl := f.inv.Control
	sem := make(chan struct{}, opt.Concurrency)

	// The control node, alone: Secondary nodes are told its address.
	out[ctl] = f.deployNode(ctx, opt, nodes[ctl].Node, nodes[ctl].Target)
	ctlAddr, ready := f.controlReady(ctx, opt, &out[ctl])

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
		dn := n.Node
		dn.Properties = maps.Clone(n.Properties)
		if dn.Role == deploy.RoleSecondary && dn.Properties["ksmg.cluster.control_address"] == "" && ctlAddr != "" {
			dn.Properties["ksmg.cluster.control_address"] = ctlAddr
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i] = f.deployNode(ctx, opt, dn, n.Target)
		}()
	}
	wg.Wait()
	return out
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
// permanent. Every attempt plans afresh, so a VM a failed attempt left
// half-made is replaced by the next one, never duplicated.
func (f *Fleet) deployNode(ctx context.Context, opt Options, n deploy.Node, target string) Outcome {
	start := time.Now()
	o := Outcome{Result: deploy.Result{Node: n.Name, Target: target}}
	log := opt.Logger.With("node", n.Name, "target", target)
	d, err := f.deployer(Node{Node: n, Target: target})
	if err != nil {
		o.Status, o.Err, o.Elapsed = StatusFailed, err, time.Since(start)
		return o
	}
	n.Replace = opt.Replace
	wait := opt.Backoff
	var first deploy.Action
	for attempt := 1; ; attempt++ {
		o.Attempts = attempt
		res, err := attemptNode(ctx, d, n, &first)
		if err == nil {
			o.Result, o.Status = res, StatusOK
			o.Node, o.Target, o.Attempts = n.Name, target, attempt
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
		if deploy.IsPermanent(err) || attempt > opt.Retries || ctx.Err() != nil {
			o.Status, o.Elapsed = StatusFailed, time.Since(start)
			log.Error("node failed", "attempts", attempt, "err", err)
			return o
		}
		log.Warn("node attempt failed, retrying", "attempt", attempt, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			o.Status, o.Elapsed = StatusFailed, time.Since(start)
			return o
		case <-time.After(wait):
		}
		wait = min(wait*2, opt.MaxBackoff)
	}
}

func attemptNode(ctx context.Context, d deploy.Deployer, n deploy.Node, first *deploy.Action) (deploy.Result, error) {
	p, err := d.Plan(ctx, n)
	if err != nil {
		return deploy.Result{}, fmt.Errorf("plan: %w", err)
	}
	if *first == "" {
		*first = p.Action
	}
	if n.Role == deploy.RoleSecondary && n.Properties["ksmg.cluster.control_address"] == "" && p.Action != deploy.ActionUnchanged {
		return deploy.Result{}, deploy.Permanent(fmt.Errorf("the control node's address is unknown (it reported no IP); give the control node a static address or set cluster.control_address"))
	}
	res, err := d.Deploy(ctx, n)
	if err != nil {
		return res, fmt.Errorf("deploy: %w", err)
	}
	return res, nil
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
