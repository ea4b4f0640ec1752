package hyperv

// TestBuiltVHDXOverSMB deploys the VHDX that `make images` built with as
// many real parts as can run here: the real SMB copier (pwsh.NewSMB)
// writes the real image to a real smbd (pwshtest.SMBServer), and the copy
// is checked with qemu-img. No Windows host exists here, so the PowerShell
// side is still the fake host of deployer_test.go (pwshtest on winrmtest,
// fakeHyperV answering each step).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/pwsh"
	"github.com/ksmg-appliance/ksmg/deploy/pwsh/pwshtest"
	"github.com/ksmg-appliance/ksmg/firstboot/answers"
)

// builtVHDX returns the newest ksmg-*.vhdx in $KSMG_IMAGE_DIR.
func builtVHDX(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KSMG_IMAGE_DIR")
	if dir == "" {
		t.Skip("KSMG_IMAGE_DIR is unset: this test deploys the VHDX that `make images` builds (make test sets it)")
	}
	found, err := filepath.Glob(filepath.Join(dir, "ksmg-*.vhdx"))
	if err != nil || len(found) == 0 {
		t.Fatalf("KSMG_IMAGE_DIR=%s holds no ksmg-*.vhdx (run make images): %v", dir, err)
	}
	var best string
	var bestTime time.Time
	for _, p := range found {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if best == "" || st.ModTime().After(bestTime) {
			best, bestTime = p, st.ModTime()
		}
	}
	return best
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("hash %s: %v", path, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// shareFiles lists every file and folder under dir, relative, slash-separated.
func shareFiles(t *testing.T, dir string) []string {
	t.Helper()
	var got []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if e.IsDir() {
			rel += "/"
		}
		got = append(got, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// newSMBTest is newTest with the real SMB copier writing to srv's share
// (folder ksmg in it, which the fake host sees as testPath). onScript, if
// set, sees each script before the fake Hyper-V answers it.
func newSMBTest(t *testing.T, srv pwshtest.SMBShare, onScript func(string)) (*Deployer, *fakeHyperV, *pwshtest.Host) {
	t.Helper()
	f := &fakeHyperV{share: filepath.Join(srv.Dir, "ksmg"), vms: map[string]*fakeVM{}, fail: map[string]pwshtest.Reply{}}
	h := pwshtest.NewHostInput(func(s string, in pwsh.Input) pwshtest.Reply {
		if onScript != nil {
			onScript(s)
		}
		return f.handle(s, in)
	})
	t.Cleanup(h.Close)
	run, err := pwsh.NewWinRM(h.Config)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := pwsh.NewSMB(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	share := srv.UNC("ksmg")
	cfg := Config{Host: "hv1", User: `LAB\deploy`, Share: share, Path: testPath, Switch: "DMZ", PollInterval: 10 * time.Millisecond}
	return New("lab", NewPSHost("hv1", run, cp, share, testPath), cfg), f, h
}

// copyProgress records the copier's progress calls of one deploy.
type copyProgress struct {
	mu          sync.Mutex
	calls       int64
	done, total int64
	onCall      func(done, total int64)
}

func (p *copyProgress) fn(stage string, done, total int64) {
	p.mu.Lock()
	p.calls++
	p.done, p.total = done, total
	on := p.onCall
	p.mu.Unlock()
	if on != nil {
		on(done, total)
	}
}

func (p *copyProgress) get() (calls, done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls, p.done, p.total
}

//nolint:gocyclo // one scenario (deploy, re-run, cancel) checked step after step
func TestBuiltVHDXOverSMB(t *testing.T) {
	t.Parallel()
	img := builtVHDX(t)
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatalf("qemu-img not installed (ci/packages.txt lists qemu-utils): %v", err)
	}
	srv := pwshtest.SMBServer(t)
	st, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	imgSum := sha256File(t, img)
	t.Logf("image %s: %d bytes, sha256 %s", img, st.Size(), imgSum)

	props, _, err := answers.Unattended("mx1.example.com")
	if err != nil {
		t.Fatal(err)
	}
	var secrets []string
	for _, k := range slices.Sorted(maps.Keys(props)) {
		if answers.IsSecret(k) {
			secrets = append(secrets, k)
		}
	}
	node := func(name string, p *copyProgress) deploy.Node {
		return deploy.Node{
			Name: name, Role: deploy.RoleControl, Image: img, Properties: props,
			PowerOn: true, WaitIP: 10 * time.Second, Progress: p.fn,
		}
	}
	// The full sequence: polls for the address and for first boot's
	// signal, then the secret items go and the completion mark is last.
	// No resize-disk: the node keeps the image's size.
	wantSteps := []string{"find-vm", "find-vm", "create-vm", "add-kvp", "start-vm", "guest-ip", "guest-ip", "guest-kvp", "guest-kvp", "remove-kvp", "set-notes"}

	// checkDeployed asserts what a finished deploy of name left.
	checkDeployed := func(t *testing.T, f *fakeHyperV, h *pwshtest.Host, name string, res deploy.Result, p *copyProgress) {
		t.Helper()
		if res.Action != deploy.ActionCreate || res.IP != "192.0.2.10" || res.ID == "" || res.Err != nil {
			t.Errorf("result %+v", res)
		}
		if got := f.Steps(); !reflect.DeepEqual(got, wantSteps) {
			t.Errorf("steps %v, want %v", got, wantSteps)
		}
		if !reflect.DeepEqual(f.removed, secrets) {
			t.Errorf("removed KVP items %v, want the secret ones %v", f.removed, secrets)
		}
		if vm := f.vms[name]; vm == nil || !vm.Record().Complete() || vm.State != "Running" {
			t.Errorf("VM on the host: %+v", vm)
		}
		assertNoSecretInScripts(t, h, node(name, p))
		if calls, done, total := p.get(); calls < 2 || done != st.Size() || total != st.Size() {
			t.Errorf("copy progress: %d calls, ended at %d/%d, want %d bytes", calls, done, total, st.Size())
		}
		if tmp := h.TempFiles(); len(tmp) != 0 {
			t.Errorf("script files left in the host's %%TEMP%%: %v", tmp)
		}
		disk := filepath.Join(srv.Dir, "ksmg", name, name+".vhdx")
		if sum := sha256File(t, disk); sum != imgSum {
			t.Errorf("disk on the share: sha256 %s, image %s", sum, imgSum)
		}
		out, err := exec.Command("qemu-img", "check", "-f", "vhdx", disk).CombinedOutput()
		if err != nil {
			t.Errorf("qemu-img check -f vhdx %s: %v\n%s", disk, err, out)
		} else {
			t.Logf("qemu-img check: %s", out)
		}
	}

	t.Run("deploy", func(t *testing.T) {
		d, f, h := newSMBTest(t, srv, nil)
		f.ipAfter, f.doneAfter = 1, 1
		var p copyProgress
		start := time.Now()
		res, err := d.Deploy(context.Background(), node("ksmg-1", &p))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("deploy with a %d-byte copy over SMB: %s", st.Size(), time.Since(start).Round(time.Millisecond))
		checkDeployed(t, f, h, "ksmg-1", res, &p)
		if got, want := shareFiles(t, srv.Dir), []string{"ksmg/", "ksmg/ksmg-1/", "ksmg/ksmg-1/ksmg-1.vhdx"}; !reflect.DeepEqual(got, want) {
			t.Errorf("share holds %v, want %v (no temporary file)", got, want)
		}

		// A re-run is unchanged: one look, no copy, the disk untouched.
		disk := filepath.Join(srv.Dir, "ksmg", "ksmg-1", "ksmg-1.vhdx")
		before, err := os.Stat(disk)
		if err != nil {
			t.Fatal(err)
		}
		var p2 copyProgress
		res, err = d.Deploy(context.Background(), node("ksmg-1", &p2))
		if err != nil || res.Action != deploy.ActionUnchanged {
			t.Fatalf("re-run: %+v, %v", res, err)
		}
		if got := f.Steps(); !reflect.DeepEqual(got, []string{"find-vm"}) {
			t.Errorf("re-run steps %v, want [find-vm]", got)
		}
		if calls, _, _ := p2.get(); calls != 0 {
			t.Errorf("re-run copied: %d progress calls", calls)
		}
		after, err := os.Stat(disk)
		if err != nil || !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() || !os.SameFile(before, after) {
			t.Errorf("re-run touched the disk: %v -> %v (%v)", before.ModTime(), after, err)
		}
	})

	// A deploy cancelled in the middle of the copy leaves neither the disk
	// nor the copier's temporary file on the share, and a re-run deploys.
	t.Run("cancel", func(t *testing.T) {
		name := "ksmg-2"
		nodeDir := filepath.Join(srv.Dir, "ksmg", name)
		var atRemove []string // the node's folder when the cleanup's remove-vm arrived
		sawRemove := false
		d, f, h := newSMBTest(t, srv, func(s string) {
			if m := stepRE.FindStringSubmatch(s); m != nil && m[1] == "remove-vm" {
				sawRemove = true
				ents, _ := os.ReadDir(nodeDir)
				for _, e := range ents {
					atRemove = append(atRemove, e.Name())
				}
			}
		})
		f.ipAfter, f.doneAfter = 1, 1
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		p := copyProgress{onCall: func(done, total int64) {
			if done > 64<<20 {
				cancel()
			}
		}}
		_, err := d.Deploy(ctx, node(name, &p))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("deploy cancelled mid-copy: %v, want context.Canceled", err)
		}
		if _, done, total := p.get(); done <= 64<<20 || done >= total {
			t.Errorf("cancelled at %d of %d bytes: not in the middle of the copy", done, total)
		}
		// The copier removed its own temporary file before the cleanup
		// removed the node's folder.
		if !sawRemove || len(atRemove) != 0 {
			t.Errorf("cleanup ran: %v; node folder then held %v, want nothing", sawRemove, atRemove)
		}
		// Two look-ups (the name, then the name an interrupted replace
		// leaves) before the copy; nothing is created.
		if got, want := f.Steps(), []string{"find-vm", "find-vm", "remove-vm"}; !reflect.DeepEqual(got, want) {
			t.Errorf("steps %v, want %v", got, want)
		}
		if _, err := os.Stat(nodeDir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("node folder left on the share: %v", err)
		}
		if len(f.vms) != 0 {
			t.Errorf("VMs on the host: %v", f.vms)
		}

		var p2 copyProgress
		res, err := d.Deploy(context.Background(), node(name, &p2))
		if err != nil {
			t.Fatalf("re-run after the cancel: %v", err)
		}
		checkDeployed(t, f, h, name, res, &p2)
		if got, want := shareFiles(t, nodeDir), []string{name + ".vhdx"}; !reflect.DeepEqual(got, want) {
			t.Errorf("node folder holds %v, want %v", got, want)
		}
	})
}
