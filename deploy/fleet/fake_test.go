package fleet

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/deploy"
)

// fakeTarget is an in-test hypervisor for the runner's unit tests (the
// simulator tests in vsphere_test.go use the real vsphere driver). It keeps
// the deploy package's idempotence contract: a VM is marked once its
// deploy finished; an unmarked VM is a leftover and is replaced.
type fakeTarget struct {
	name  string
	delay time.Duration
	gauge *gauge // shared across targets, when set

	mu          sync.Mutex
	vms         map[string]*fakeVM
	created     map[string]int // VMs ever created per name
	started     []string       // Deploy calls in order
	inflight    int
	maxInflight int
	transient   map[string]int  // node -> failures left (each leaves an unmarked VM)
	permanent   map[string]bool // node -> always fails, permanently
	always      map[string]bool // node -> always fails, transiently
	noIP        bool
	nextID      int
	props       map[string]map[string]string // last deployed properties
	planned     map[string]map[string]string // last planned properties
	deployed    map[string]time.Time         // when the node's deploy finished
	startAt     map[string]time.Time         // when its last Deploy began
	removed     []string                     // VMs Remove removed
	removeFail  map[string]bool              // VM -> Remove fails
	wait        time.Duration                // a deploy "waits for the guest" this long
	newIP       map[string]string            // node -> the address its next VM gets (DHCP)
	ips         map[string]string            // node -> its VM's address, when not the default
}

type fakeVM struct {
	id      string
	marked  bool
	cluster string
}

type fakeConfig struct {
	Instance string `yaml:"instance"`
	Delay    string `yaml:"delay"`
}

var (
	fakesMu sync.Mutex
	fakes   = map[string]*fakeTarget{}
)

func init() {
	deploy.Register("fake", func(ctx context.Context, t deploy.TargetSpec) (deploy.Deployer, error) {
		name := t.Name
		var c fakeConfig
		if err := t.Decode(&c); err != nil {
			return nil, err
		}
		fakesMu.Lock()
		defer fakesMu.Unlock()
		f, ok := fakes[c.Instance]
		if !ok {
			return nil, fmt.Errorf("fake instance %q: connection refused", c.Instance)
		}
		if c.Delay != "" {
			d, err := time.ParseDuration(c.Delay)
			if err != nil {
				return nil, deploy.Permanent(fmt.Errorf("delay: %w", err))
			}
			f.delay = d
		}
		f.name = name
		return f, nil
	})
}

// newFake makes a fake target reachable as instance id in the inventories
// of test t (openFleet names it so; tests run in parallel).
func newFake(t *testing.T, id string) *fakeTarget {
	id = instance(t, id)
	f := &fakeTarget{vms: map[string]*fakeVM{}, created: map[string]int{}, transient: map[string]int{},
		permanent: map[string]bool{}, always: map[string]bool{}, props: map[string]map[string]string{}, planned: map[string]map[string]string{}, deployed: map[string]time.Time{}, startAt: map[string]time.Time{}}
	fakesMu.Lock()
	fakes[id] = f
	fakesMu.Unlock()
	t.Cleanup(func() {
		fakesMu.Lock()
		delete(fakes, id)
		fakesMu.Unlock()
	})
	return f
}

func (f *fakeTarget) Target() string { return "fake:" + f.name }
func (f *fakeTarget) Close() error   { return nil }

func (f *fakeTarget) Plan(ctx context.Context, n deploy.Node) (deploy.Plan, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := deploy.Plan{Node: n.Name, Target: f.Target()}
	f.planned[n.Name] = n.Properties
	vm, ok := f.vms[n.Name]
	switch {
	case !ok:
		p.Action, p.Reason = deploy.ActionCreate, "no VM "+n.Name
	case !vm.marked:
		p.Action, p.Reason, p.ID = deploy.ActionReplace, "unfinished leftover", vm.id
	case n.Replace:
		p.Action, p.Reason, p.ID = deploy.ActionReplace, "replace asked", vm.id
	default:
		p.Action, p.Reason, p.ID, p.IP = deploy.ActionUnchanged, "deployed by ksmg", vm.id, f.ip(n.Name)
	}
	return p, nil
}

func (f *fakeTarget) Deploy(ctx context.Context, n deploy.Node) (deploy.Result, error) {
	p, _ := f.Plan(ctx, n)
	if p.Action == deploy.ActionUnchanged {
		return deploy.Result{Node: n.Name, Target: f.Target(), Action: p.Action, ID: p.ID, IP: f.ip(n.Name)}, nil
	}
	f.mu.Lock()
	f.started = append(f.started, n.Name)
	f.startAt[n.Name] = time.Now()
	f.inflight++
	f.maxInflight = max(f.maxInflight, f.inflight)
	f.mu.Unlock()
	f.gauge.add(1)
	defer func() {
		f.gauge.add(-1)
		f.mu.Lock()
		f.inflight--
		f.mu.Unlock()
	}()
	select {
	case <-time.After(f.delay):
	case <-ctx.Done():
		return deploy.Result{}, ctx.Err()
	}
	if f.wait > 0 && n.Waiting != nil {
		n.Waiting("IP address", 0)
		time.Sleep(f.wait)
		n.Waiting("IP address", f.wait)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.permanent[n.Name] {
		return deploy.Result{}, deploy.Permanent(errors.New("datastore full"))
	}
	f.nextID++
	delete(f.vms, n.Name) // replace: the old one goes
	vm := &fakeVM{id: "vm-" + strconv.Itoa(f.nextID), cluster: n.Cluster}
	f.vms[n.Name] = vm
	f.created[n.Name]++
	if f.always[n.Name] {
		return deploy.Result{}, errors.New("task failed: host busy")
	}
	if f.transient[n.Name] > 0 {
		f.transient[n.Name]--
		return deploy.Result{}, errors.New("task failed: connection reset")
	}
	vm.marked = true
	if ip, ok := f.newIP[n.Name]; ok {
		if f.ips == nil {
			f.ips = map[string]string{}
		}
		f.ips[n.Name] = ip
	}
	f.props[n.Name] = n.Properties
	f.deployed[n.Name] = time.Now()
	return deploy.Result{Node: n.Name, Target: f.Target(), Action: p.Action, ID: vm.id, IP: f.ip(n.Name)}, nil
}

func (f *fakeTarget) Deployed(ctx context.Context) ([]deploy.VM, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []deploy.VM
	for name, vm := range f.vms {
		rec := deploy.Record{State: deploy.MarkPending, Cluster: vm.cluster}
		if vm.marked {
			rec.State = deploy.MarkComplete
		}
		out = append(out, deploy.VM{Name: name, ID: vm.id, Record: rec})
	}
	return out, nil
}

func (f *fakeTarget) Remove(ctx context.Context, r deploy.RemoveRequest) (deploy.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	res := deploy.Result{Node: r.Name, Target: f.Target(), Action: deploy.ActionAbsent}
	vm, ok := f.vms[r.Name]
	if ok {
		res.Action, res.ID = deploy.ActionRemove, vm.id
		if !r.Plan && f.removeFail[r.Name] {
			return res, errors.New("task failed: the VM is locked")
		}
		if !r.Plan {
			delete(f.vms, r.Name)
			f.removed = append(f.removed, r.Name)
		}
	}
	return res, nil
}

func (f *fakeTarget) Scrub(ctx context.Context, n deploy.Node) (deploy.Result, error) {
	return deploy.Result{Node: n.Name, Target: f.Target(), Action: deploy.ActionScrub}, nil
}

func (f *fakeTarget) ip(name string) string {
	if f.noIP {
		return ""
	}
	if ip, ok := f.ips[name]; ok {
		return ip
	}
	return "198.51.100." + strconv.Itoa(len(name))
}

// count is the number of VMs on the target now.
func (f *fakeTarget) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.vms)
}

// gauge counts deploys in flight over several targets.
type gauge struct {
	mu       sync.Mutex
	cur, max int
}

func (g *gauge) add(d int) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cur += d
	g.max = max(g.max, g.cur)
}

// instance is the registry name of fake instance id for test t.
func instance(t *testing.T, id string) string { return id + "@" + t.Name() }
