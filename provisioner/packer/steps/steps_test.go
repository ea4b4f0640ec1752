//go:build linux

package steps

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"

	"github.com/ksmg-appliance/ksmg/images"
	"github.com/ksmg-appliance/ksmg/provisioner"
	"github.com/ksmg-appliance/ksmg/provisioner/harden"
	"github.com/ksmg-appliance/ksmg/provisioner/packer/comm"
	"github.com/ksmg-appliance/ksmg/provisioner/packer/comm/commtest"
)

func TestPrepareRejects(t *testing.T) {
	t.Parallel()
	partial := t.TempDir()
	if err := os.WriteFile(filepath.Join(partial, "ksmg-gatewayd"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		c    Component
		cfg  map[string]interface{}
		want []string
	}{
		{"no bin_dir", Appliance, map[string]interface{}{}, []string{"bin_dir: required", "ksmg-firstboot"}},
		{"bin_dir not executable", Appliance, map[string]interface{}{"bin_dir": partial}, []string{"bin_dir:", "ksmg-gatewayd is not an executable file"}},
		{"bad spec", Appliance, map[string]interface{}{"bin_dir": partial, "spec": "/nonexistent.yaml"}, []string{`spec: "/nonexistent.yaml"`}},
		{"bad source date", Component{Name: "ksmg-x", Steps: noSteps}, map[string]interface{}{"source_date_epoch": -3}, []string{"source_date_epoch:", "-3"}},
		{"unknown key", Component{Name: "ksmg-x", Steps: noSteps}, map[string]interface{}{"use_sudo": true}, []string{"use_sudo"}},
		{"no component", Component{}, map[string]interface{}{}, []string{"without a component"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := New(tc.c).Prepare(tc.cfg)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	// A component that needs no binaries does not ask for bin_dir.
	if err := New(Component{Name: "ksmg-x", Steps: noSteps}).Prepare(map[string]interface{}{}); err != nil {
		t.Errorf("component without binaries: %v", err)
	}
}

func noSteps(context.Context, Input) ([]provisioner.Step, error) { return nil, nil }

// TestProvisionThroughCommunicator: a component's steps run through the
// communicator Packer hands the provisioner (here our chroot one on a small
// root), each said with its time, errors naming the component and step.
func TestProvisionThroughCommunicator(t *testing.T) {
	t.Parallel()
	root := commtest.MiniRoot(t)
	var got Input
	c := Component{Name: "ksmg-test", Steps: func(_ context.Context, in Input) ([]provisioner.Step, error) {
		got = in
		return []provisioner.Step{
			provisioner.MakeDirs([]provisioner.Dir{{Path: "/var/opt/kaspersky", Owner: "kluser", Group: "kluser", Mode: 0o750}}),
			provisioner.WriteFiles([]provisioner.PackageFile{{Dst: "/etc/ksmg-test", Data: []byte("ok\n"), Mode: 0o640}}),
			provisioner.CheckAccounts([]provisioner.Account{{Name: "kluser", UID: 950}}),
		}, nil
	}}
	p := New(c)
	if err := p.Prepare(map[string]interface{}{"source_date_epoch": 1700000000}); err != nil {
		t.Fatal(err)
	}
	ui := &packersdk.MockUi{}
	if err := p.Provision(context.Background(), ui, &comm.Chroot{Root: root}, nil); err != nil {
		t.Fatal(err)
	}
	if got.SourceDateEpoch != 1700000000 || got.Spec == nil || got.Spec.Name != "ksmg" || got.Scratch == "" {
		t.Errorf("steps got %+v", got)
	}
	if _, err := os.Stat(got.Scratch); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("scratch directory %s left behind", got.Scratch)
	}
	if data, err := os.ReadFile(filepath.Join(root, "etc/ksmg-test")); err != nil || string(data) != "ok\n" {
		t.Errorf("file: %q %v", data, err)
	}
	if st, err := os.Stat(filepath.Join(root, "var/opt/kaspersky")); err != nil || st.Mode().Perm() != 0o750 {
		t.Errorf("directory: %v %v", st, err)
	}
	if left, _ := filepath.Glob(filepath.Join(root, "tmp", "ksmg-provision.*")); len(left) > 0 {
		t.Errorf("staging directory left in the target: %v", left)
	}
	var said []string
	for _, m := range ui.SayMessages {
		said = append(said, m.Message)
	}
	text := strings.Join(said, "\n")
	for _, w := range []string{"ksmg-test: directories (", "ksmg-test: files (", "ksmg-test: check account ids (", "ksmg-test: done in"} {
		if !strings.Contains(text, w) {
			t.Errorf("UI lacks %q:\n%s", w, text)
		}
	}

	bad := New(Component{Name: "ksmg-test", Steps: func(context.Context, Input) ([]provisioner.Step, error) {
		return []provisioner.Step{provisioner.CheckAccounts([]provisioner.Account{{Name: "kluser", UID: 951}})}, nil
	}})
	if err := bad.Prepare(map[string]interface{}{}); err != nil {
		t.Fatal(err)
	}
	err := bad.Provision(context.Background(), &packersdk.MockUi{}, &comm.Chroot{Root: root}, nil)
	if err == nil || !strings.Contains(err.Error(), "ksmg-test: provision check account ids") || !strings.Contains(err.Error(), "spec says 951") {
		t.Errorf("failing step: err = %v", err)
	}
}

// TestApplianceSteps: ksmg-appliance runs the steps of `ksmg build`'s
// payload stage, in order.
func TestApplianceSteps(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	for _, n := range images.PayloadBinaries() {
		if err := os.WriteFile(filepath.Join(bin, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := New(Appliance)
	if err := p.Prepare(map[string]interface{}{"bin_dir": bin}); err != nil {
		t.Fatal(err)
	}
	steps, err := Appliance.Steps(context.Background(), Input{Spec: p.spec, BinDir: bin, SourceDateEpoch: p.sde, Scratch: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range steps {
		names = append(names, s.Name)
	}
	want := "install ksmg-appliance, sudoers (visudo --check), accounts (systemd-sysusers), check account ids, directories, unit ordering, units"
	if strings.Join(names, ", ") != want {
		t.Errorf("steps %q, want %q", strings.Join(names, ", "), want)
	}
}

// TestHardenSteps: ksmg-harden runs the hardening steps `ksmg build` runs
// after the payload, needs no bin_dir, and on a machine without the packages
// the hardening configures it fails at its first step, naming them, with
// nothing changed.
func TestHardenSteps(t *testing.T) {
	t.Parallel()
	p := New(Harden)
	if err := p.Prepare(map[string]interface{}{}); err != nil {
		t.Fatalf("without bin_dir: %v", err)
	}
	steps, err := Harden.Steps(context.Background(), Input{Spec: p.spec, Scratch: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, s := range steps {
		got = append(got, s.Name)
	}
	for _, s := range harden.Steps(harden.Options{}) {
		want = append(want, s.Name)
	}
	// and last the integrity database, which ksmg build makes after its scrub
	want = append(want, harden.IntegrityDatabase.Name)
	if strings.Join(got, ", ") != strings.Join(want, ", ") || len(got) < 5 {
		t.Errorf("steps %q, want ksmg build's %q", got, want)
	}

	root := commtest.MiniRoot(t)
	before, err := os.ReadDir(filepath.Join(root, "etc"))
	if err != nil {
		t.Fatal(err)
	}
	err = p.Provision(context.Background(), &packersdk.MockUi{}, &comm.Chroot{Root: root}, nil)
	if err == nil {
		t.Fatal("hardened a machine without nftables, auditd or AppArmor")
	}
	for _, w := range []string{"ksmg-harden: provision hardening: packages present", "package nftables", "package auditd", "package apparmor", "package libpam-pwquality", "package aide", "package acct"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	after, err := os.ReadDir(filepath.Join(root, "etc"))
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("/etc changed by a refused hardening: %d entries before, %d after", len(before), len(after))
	}
}
