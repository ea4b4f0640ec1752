package vsphere_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/vsphere"
	"github.com/ksmg-appliance/ksmg/deploy/vsphere/vspheretest"
	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/firstboot/sources"
)

// The day-two tests read every result back through the API the way govc
// does (vm.info -json: config, runtime, guest), not through the driver.

func oneVM(ctx context.Context, t *testing.T, c *vim25.Client, name string) mo.VirtualMachine {
	t.Helper()
	vms := vspheretest.VMsByName(ctx, t, c, name)
	if len(vms) != 1 {
		t.Fatalf("%d VMs named %s, want 1", len(vms), name)
	}
	return vms[0]
}

// deployWithGuest deploys n, playing its guest (address, and first boot's
// signal unless silent).
func deployWithGuest(ctx context.Context, t *testing.T, c *vim25.Client, d deploy.Deployer, n deploy.Node, guestName string, silent bool) (deploy.Result, error) {
	t.Helper()
	type out struct {
		res deploy.Result
		err error
	}
	ch := make(chan out, 1)
	go func() {
		res, err := d.Deploy(ctx, n)
		ch <- out{res, err}
	}()
	vspheretest.PlayGuest(ctx, t, c, guestName, "192.0.2.50", silent)
	o := <-ch
	return o.res, o.err
}

// TestHardwareReadBack: vcsim drops the OVF's vmw:Config (firmware, Secure
// Boot, disk.EnableUUID), so only the driver's post-import check makes the
// VM what the appliance needs; an adapter of another type is replaced by
// a VMXNET3; a controller of another type fails permanently and leaves no
// VM.
func TestHardwareReadBack(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	e1000 := vspheretest.Rewritten(t, ovaPath, func(b []byte) []byte {
		return bytes.Replace(b, []byte("<rasd:ResourceSubType>VMXNET3<"), []byte("<rasd:ResourceSubType>E1000<"), 1)
	})
	lsi := vspheretest.Rewritten(t, ovaPath, func(b []byte) []byte {
		return bytes.Replace(b, []byte("<rasd:ResourceSubType>VirtualSCSI<"), []byte("<rasd:ResourceSubType>lsilogic<"), 1)
	})
	for _, tc := range models() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			simulator.Test(func(ctx context.Context, c *vim25.Client) {
				d := newDeployer(ctx, t, c, nil)
				defer closeD(t, d)
				for _, img := range []string{ovaPath, e1000} {
					n := node(img, "ksmg-hw-"+filepath.Base(img))
					n.Name = strings.TrimSuffix(n.Name, ".ova")
					n.Properties["ksmg.hostname"] = "hw.example.com"
					if _, err := d.Deploy(ctx, n); err != nil {
						t.Fatalf("%s: %v", img, err)
					}
					vm := oneVM(ctx, t, c, n.Name)
					if vm.Config.Firmware != "efi" || vm.Config.BootOptions == nil || vm.Config.BootOptions.EfiSecureBootEnabled == nil || !*vm.Config.BootOptions.EfiSecureBootEnabled {
						t.Errorf("%s: firmware %q, boot options %+v; want efi with Secure Boot", n.Name, vm.Config.Firmware, vm.Config.BootOptions)
					}
					if got := vspheretest.ExtraConfig(vm)["disk.EnableUUID"]; got != "TRUE" {
						t.Errorf("%s: disk.EnableUUID %q", n.Name, got)
					}
					devs := object.VirtualDeviceList(vm.Config.Hardware.Device)
					nics := devs.SelectByType((*types.VirtualEthernetCard)(nil))
					if _, ok := nics[0].(*types.VirtualVmxnet3); len(nics) != 1 || !ok {
						t.Errorf("%s: NICs %T, want one vmxnet3", n.Name, nics)
					}
					if scsi := devs.SelectByType((*types.ParaVirtualSCSIController)(nil)); len(scsi) != 1 {
						t.Errorf("%s: %d PVSCSI controllers", n.Name, len(scsi))
					}
				}
				before := vspheretest.VMs(ctx, t, c)
				n := node(lsi, "ksmg-lsi")
				_, err := d.Deploy(ctx, n)
				if err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), "not PVSCSI") {
					t.Errorf("an LSI Logic controller: %v, want a permanent error", err)
				}
				if got := vspheretest.VMs(ctx, t, c); len(got) != len(before) {
					t.Errorf("VMs %v after the failure, before %v", got, before)
				}
			}, tc.model())
		})
	}
}

// secretValues are the values of n's secret answers.
func secretValues(n deploy.Node) []string {
	var out []string
	for k, v := range n.Properties {
		if answers.IsSecret(k) && v != "" {
			out = append(out, v)
		}
	}
	return out
}

// assertNoSecrets fails if vm carries a secret answer anywhere govc would
// show it: vApp property values, extraConfig values, the OVF environment.
func assertNoSecrets(t *testing.T, vm mo.VirtualMachine, n deploy.Node) {
	t.Helper()
	for _, v := range secretValues(n) {
		for k, pv := range vspheretest.VAppProperties(vm) {
			if pv == v {
				t.Errorf("vApp property %s still holds a secret", k)
			}
		}
		for k, ev := range vspheretest.ExtraConfig(vm) {
			if strings.Contains(ev, v) {
				t.Errorf("extraConfig %s still holds a secret", k)
			}
		}
	}
	if env, ok := vspheretest.ExtraConfig(vm)["guestinfo.ovfEnv"]; ok {
		kv, err := sources.ParseOVFEnv([]byte(env))
		if err != nil {
			t.Fatalf("guestinfo.ovfEnv after clearing: %v", err)
		}
		for k, v := range kv {
			if answers.IsSecret(k) && v != "" {
				t.Errorf("guestinfo.ovfEnv %s still has a value", k)
			}
		}
		if kv["ksmg.hostname"] != n.Properties["ksmg.hostname"] {
			t.Errorf("guestinfo.ovfEnv lost ksmg.hostname: %q", kv["ksmg.hostname"])
		}
	}
}

// TestSecretsCleared: with a wait, the secrets leave the VM's settings once
// first boot signalled completion; without one the result says they
// remain, Scrub refuses before the signal and clears them after it.
func TestSecretsCleared(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	for _, tc := range models() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			simulator.Test(func(ctx context.Context, c *vim25.Client) {
				d := newDeployer(ctx, t, c, nil)
				d.(*vsphere.Deployer).SetPollInterval(20 * time.Millisecond)
				defer closeD(t, d)
				n := node(ovaPath, "ksmg-sec")
				n.Properties["ksmg.cluster.role"] = "secondary"
				n.Properties["ksmg.cluster.join_token"] = "join-token-0123456789-secret"
				n.Properties["ksmg.cluster.control_address"] = "192.0.2.1"
				n.WaitIP = time.Minute
				res, err := deployWithGuest(ctx, t, c, d, n, "ksmg-sec", false)
				if err != nil || res.SecretsLeft {
					t.Fatalf("deploy: %+v, %v", res, err)
				}
				vm := oneVM(ctx, t, c, "ksmg-sec")
				assertNoSecrets(t, vm, n)
				if tc.name == "VPX" && vspheretest.VAppProperties(vm)["ksmg.hostname"] != "ksmg-sec.example.com" {
					t.Error("a non-secret vApp property was cleared too")
				}
				if vspheretest.ExtraConfig(vm)[deploy.MarkKey] != deploy.MarkComplete {
					t.Error("not marked complete")
				}

				// Without a wait: the secrets stay, and the result says so.
				n2 := node(ovaPath, "ksmg-nowait")
				res, err = d.Deploy(ctx, n2)
				if err != nil || !res.SecretsLeft {
					t.Fatalf("deploy without wait: %+v, %v; want SecretsLeft", res, err)
				}
				vm2 := oneVM(ctx, t, c, "ksmg-nowait")
				if _, err := d.Scrub(ctx, n2); err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), "has not reported completion") {
					t.Errorf("scrub before the signal: %v", err)
				}
				if err := vspheretest.SetExtraConfig(ctx, c, vm2.Self, vspheretest.DoneKey, "done"); err != nil {
					t.Fatal(err)
				}
				if res, err := d.Scrub(ctx, n2); err != nil || res.Action != deploy.ActionScrub {
					t.Fatalf("scrub: %+v, %v", res, err)
				}
				assertNoSecrets(t, oneVM(ctx, t, c, "ksmg-nowait"), n2)
			}, tc.model())
		})
	}
}

// TestRemove: only marked VMs are removed, after a guest shutdown; the
// plan removes nothing; an absent VM is reported, not an error.
func TestRemove(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	for _, tc := range models() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			simulator.Test(func(ctx context.Context, c *vim25.Client) {
				d := newDeployer(ctx, t, c, nil)
				defer closeD(t, d)
				before := vspheretest.VMs(ctx, t, c)
				if _, err := d.Deploy(ctx, node(ovaPath, "ksmg-rm")); err != nil {
					t.Fatal(err)
				}
				res, err := d.Remove(ctx, deploy.RemoveRequest{Name: "ksmg-rm", Plan: true})
				if err != nil || res.Action != deploy.ActionRemove || len(vspheretest.VMsByName(ctx, t, c, "ksmg-rm")) != 1 {
					t.Fatalf("plan: %+v, %v", res, err)
				}
				res, err = d.Remove(ctx, deploy.RemoveRequest{Name: "ksmg-rm", ShutdownTimeout: 5 * time.Second})
				if err != nil || res.Action != deploy.ActionRemove {
					t.Fatalf("remove: %+v, %v", res, err)
				}
				if got := vspheretest.VMs(ctx, t, c); len(got) != len(before) {
					t.Errorf("VMs %v after remove, before %v", got, before)
				}
				if res, err := d.Remove(ctx, deploy.RemoveRequest{Name: "ksmg-rm"}); err != nil || res.Action != deploy.ActionAbsent {
					t.Errorf("remove again: %+v, %v", res, err)
				}
				foreign := before[0]
				if _, err := d.Remove(ctx, deploy.RemoveRequest{Name: foreign}); err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), "not deployed by ksmg") {
					t.Errorf("remove a foreign VM: %v", err)
				}
				if got := vspheretest.VMs(ctx, t, c); len(got) != len(before) {
					t.Errorf("VMs %v after refusing, before %v", got, before)
				}
			}, tc.model())
		})
	}
}

// TestDriftOutdatedApply: the record on the VM tells drift (with the
// fields) and an outdated image apart from unchanged; ApplyDrift changes
// CPUs, memory, disk and network in place and records it.
//
//nolint:gocyclo // one scenario checked step after step
func TestDriftOutdatedApply(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	newer := vspheretest.Rewritten(t, ovaPath, func(b []byte) []byte {
		return bytes.Replace(b, []byte("<Version>0.1.0</Version>"), []byte("<Version>0.2.0</Version>"), 1)
	})
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		d := newDeployer(ctx, t, c, map[string]any{"network": "DC0_DVPG0"})
		defer closeD(t, d)
		n := node(ovaPath, "ksmg-drift")
		n.Cluster = "prague"
		res, err := d.Deploy(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		ec := vspheretest.ExtraConfig(oneVM(ctx, t, c, "ksmg-drift"))
		for k, want := range map[string]string{deploy.RecordCPUs: "2", deploy.RecordMemory: "2048", deploy.RecordDisk: "1", deploy.RecordNetwork: "DC0_DVPG0", deploy.RecordVersion: "0.1.0", deploy.RecordCluster: "prague"} {
			if ec[k] != want {
				t.Errorf("record %s = %q, want %q", k, ec[k], want)
			}
		}
		if !strings.HasPrefix(ec[deploy.RecordImage], "sha256:") || !strings.HasPrefix(ec[deploy.RecordAnswers], "sha256:") {
			t.Errorf("record image %q answers %q", ec[deploy.RecordImage], ec[deploy.RecordAnswers])
		}
		if p, err := d.Plan(ctx, n); err != nil || p.Action != deploy.ActionUnchanged {
			t.Fatalf("plan as deployed: %+v, %v", p, err)
		}
		changed := n
		changed.CPUs, changed.MemoryMiB, changed.DiskGiB, changed.Network = 4, 4096, 2, "VM Network"
		p, err := d.Plan(ctx, changed)
		if err != nil || p.Action != deploy.ActionDrift || strings.Join(p.Drift, "; ") != "cpus 2 → 4; memory 2048 → 4096; disk 1 → 2; network DC0_DVPG0 → VM Network" {
			t.Fatalf("plan with other settings: %+v, %v", p, err)
		}
		out := n
		out.Image = newer
		if p, err := d.Plan(ctx, out); err != nil || p.Action != deploy.ActionOutdated || !strings.Contains(p.Reason, "0.2.0") {
			t.Errorf("plan with a newer image: %+v, %v", p, err)
		}
		ans := n
		ans.Properties = props("ksmg-drift.example.com")
		ans.Properties["ksmg.timezone"] = "Europe/Prague"
		if p, err := d.Plan(ctx, ans); err != nil || p.Action != deploy.ActionDrift || !strings.Contains(strings.Join(p.Drift, " "), "answers") {
			t.Errorf("plan with other answers: %+v, %v", p, err)
		}
		// A deploy without ApplyDrift changes nothing.
		if r, err := d.Deploy(ctx, changed); err != nil || r.Action != deploy.ActionDrift {
			t.Errorf("deploy of drift without apply: %+v, %v", r, err)
		}
		changed.ApplyDrift = true
		r, err := d.Deploy(ctx, changed)
		if err != nil || r.Action != deploy.ActionReconfigure || r.ID != res.ID || len(r.Drift) != 0 {
			t.Fatalf("apply drift: %+v, %v", r, err)
		}
		vm := oneVM(ctx, t, c, "ksmg-drift")
		if vm.Config.Hardware.NumCPU != 4 || vm.Config.Hardware.MemoryMB != 4096 || vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
			t.Errorf("after apply: %d CPUs, %d MiB, %s", vm.Config.Hardware.NumCPU, vm.Config.Hardware.MemoryMB, vm.Runtime.PowerState)
		}
		disk := object.VirtualDeviceList(vm.Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil))[0].(*types.VirtualDisk)
		if disk.CapacityInKB != 2<<20 {
			t.Errorf("disk %d KiB after apply", disk.CapacityInKB)
		}
		if len(vm.Network) != 1 {
			t.Fatalf("networks after apply: %v", vm.Network)
		}
		if name, _ := object.NewCommon(c, vm.Network[0]).ObjectName(ctx); name != "VM Network" {
			t.Errorf("network after apply: %v", vm.Network)
		}
		if p, err := d.Plan(ctx, changed); err != nil || p.Action != deploy.ActionUnchanged {
			t.Errorf("plan after apply: %+v, %v", p, err)
		}
		// What cannot change in place is said, not done.
		ans.CPUs, ans.MemoryMiB, ans.DiskGiB, ans.Network, ans.ApplyDrift = 4, 4096, 2, "VM Network", true
		if r, err := d.Deploy(ctx, ans); err != nil || r.Action != deploy.ActionDrift || len(r.Drift) != 1 {
			t.Errorf("apply of answers drift: %+v, %v", r, err)
		}
	}, simulator.VPX())
}

// TestReplaceSwap: a replace deploys the new VM under a temporary name and
// swaps it in; a failed replacement leaves the old VM running under its
// name; a foreign VM is replaced only with ReplaceForeign.
func TestReplaceSwap(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		vspheretest.SafeFindChild(ctx, c)
		d := newDeployer(ctx, t, c, nil)
		defer closeD(t, d)
		n := node(ovaPath, "ksmg-sw")
		old, err := d.Deploy(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		before := vspheretest.VMs(ctx, t, c)
		n.Replace = true
		stop := vspheretest.Fail(ctx, "PowerOnVM_Task", 0)
		_, err = d.Deploy(ctx, n)
		stop()
		if err == nil || !strings.Contains(err.Error(), "is untouched") {
			t.Fatalf("replace with a failing new VM: %v", err)
		}
		vm := oneVM(ctx, t, c, "ksmg-sw")
		if vm.Self.Value != old.ID || vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
			t.Errorf("after a failed replace ksmg-sw is %s (%s), want the old %s running", vm.Self.Value, vm.Runtime.PowerState, old.ID)
		}
		if got := vspheretest.VMs(ctx, t, c); len(got) != len(before) {
			t.Errorf("VMs %v after a failed replace, before %v", got, before)
		}
		res, err := d.Deploy(ctx, n)
		if err != nil || res.Action != deploy.ActionReplace || res.ID == old.ID {
			t.Fatalf("replace: %+v, %v", res, err)
		}
		if vm := oneVM(ctx, t, c, "ksmg-sw"); vm.Self.Value != res.ID || vspheretest.ExtraConfig(vm)[deploy.MarkKey] != deploy.MarkComplete {
			t.Errorf("ksmg-sw is %s after the swap, want %s, complete", vm.Self.Value, res.ID)
		}
		for _, gone := range []string{deploy.TempName("ksmg-sw"), deploy.AsideName("ksmg-sw")} {
			if vms := vspheretest.VMsByName(ctx, t, c, gone); len(vms) != 0 {
				t.Errorf("%s left after the swap", gone)
			}
		}
		if got := vspheretest.VMs(ctx, t, c); len(got) != len(before) {
			t.Errorf("VMs %v after the swap, before %v", got, before)
		}

		foreign := before[0]
		fn := node(ovaPath, foreign)
		fn.Properties["ksmg.hostname"] = "foreign.example.com"
		fn.Replace = true
		if _, err := d.Deploy(ctx, fn); err == nil || !deploy.IsPermanent(err) {
			t.Errorf("replace of a foreign VM without ReplaceForeign: %v", err)
		}
		fid := oneVM(ctx, t, c, foreign).Self.Value
		fn.ReplaceForeign = true
		res, err = d.Deploy(ctx, fn)
		if err != nil || res.ID == fid {
			t.Fatalf("replace of a foreign VM with ReplaceForeign: %+v, %v", res, err)
		}
		if vm := oneVM(ctx, t, c, foreign); vm.Self.Value != res.ID {
			t.Errorf("%s is %s, want the replacement %s", foreign, vm.Self.Value, res.ID)
		}
	}, simulator.VPX())
}

// TestPreflightRejects: every bad input fails the plan and the deploy
// alike, permanently, before anything is made.
func TestPreflightRejects(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	tampered := vspheretest.Tampered(t, ovaPath)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		d := newDeployer(ctx, t, c, map[string]any{"network_map": map[string]string{"Management": "VM Network"}})
		defer closeD(t, d)
		ok := newDeployer(ctx, t, c, nil)
		defer closeD(t, ok)
		before := vspheretest.VMs(ctx, t, c)
		for _, tc := range []struct {
			name string
			d    deploy.Deployer
			edit func(*deploy.Node)
			want string
		}{
			{"network map source", d, func(*deploy.Node) {}, `network_map[Management]: the OVA`},
			{"network mode", ok, func(n *deploy.Node) { n.Properties["ksmg.network.mode"] = "bogus" }, "ksmg.network.mode"},
			{"eula", ok, func(n *deploy.Node) { n.Properties["ksmg.eula.accepted"] = "maybe" }, "ksmg.eula.accepted"},
			{"hostname", ok, func(n *deploy.Node) { n.Properties["ksmg.hostname"] = "bad_host!" }, "ksmg.hostname"},
			{"short password", ok, func(n *deploy.Node) { n.Properties["ksmg.admin.password"] = "abc" }, "the minimum is 12"},
			{"time zone", ok, func(n *deploy.Node) { n.Properties["ksmg.timezone"] = "Mars/Olympus" }, "ksmg.timezone"},
			{"undeclared", ok, func(n *deploy.Node) { n.Properties["ksmg.network.interface"] = "ens192" }, "not declared by the OVA"},
			{"disk", ok, func(n *deploy.Node) { n.Image = vspheretest.Rewritten(t, ovaPath, bigDisk) }, "smaller than the image"},
			{"tampered", ok, func(n *deploy.Node) { n.Image = tampered }, "digest check failed"},
		} {
			n := node(ovaPath, "ksmg-pre")
			n.DiskGiB = 1
			tc.edit(&n)
			if _, err := tc.d.Plan(ctx, n); err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: plan: %v, want a permanent error with %q", tc.name, err, tc.want)
			}
			if _, err := tc.d.Deploy(ctx, n); err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: deploy: %v, want a permanent error with %q", tc.name, err, tc.want)
			}
		}
		if got := vspheretest.VMs(ctx, t, c); len(got) != len(before) {
			t.Errorf("VMs %v after rejected input, before %v", got, before)
		}
	}, simulator.ESX())
}

// bigDisk makes the OVA's disk 4 GiB, bigger than the 1 GiB asked for.
func bigDisk(b []byte) []byte {
	return bytes.Replace(b, []byte(`ovf:capacity="8388608"`), []byte(`ovf:capacity="4294967296"`), 1)
}

// TestDeployed lists exactly the marked VMs.
func TestDeployed(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		d := newDeployer(ctx, t, c, nil)
		defer closeD(t, d)
		for _, name := range []string{"ksmg-l1", "ksmg-l2"} {
			n := node(ovaPath, name)
			n.Cluster = "brno"
			if _, err := d.Deploy(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		vms, err := d.Deployed(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, vm := range vms {
			names = append(names, vm.Name)
			if vm.Record.Cluster != "brno" || !vm.Record.Complete() {
				t.Errorf("%s: record %+v", vm.Name, vm.Record)
			}
		}
		if strings.Join(names, ",") != "ksmg-l1,ksmg-l2" && strings.Join(names, ",") != "ksmg-l2,ksmg-l1" {
			t.Errorf("deployed %v, want ksmg-l1 and ksmg-l2", names)
		}
	}, simulator.VPX())
}

// TestTLS: a certificate the client cannot verify fails permanently with
// the host's thumbprint and how to trust it; the thumbprint in any common
// spelling, or the CA as ca_cert, then connect; a malformed thumbprint is
// refused before connecting.
func TestTLS(t *testing.T) {
	t.Parallel()
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		host := c.URL().Host
		conn, err := tls.Dial("tcp", host, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		cert := conn.ConnectionState().PeerCertificates[0]
		conn.Close()
		tp := soap.ThumbprintSHA256(cert)
		ca := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
			t.Fatal(err)
		}
		target := vspheretest.Target(t, c)
		base := vsphere.Config{URL: target["url"].(string), Username: "u", PasswordFile: target["password_file"].(string), Cluster: "DC0_C0"}

		_, err = vsphere.Open(ctx, "sim", base)
		if err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), tp) || !strings.Contains(err.Error(), "--thumbprint") || !strings.Contains(err.Error(), "--ca-cert") {
			t.Fatalf("untrusted certificate: %v", err)
		}
		for _, spelling := range []string{tp, strings.ToLower(strings.ReplaceAll(tp, ":", "")), " " + strings.ToLower(tp) + " "} {
			cfg := base
			cfg.Thumbprint = spelling
			d, err := vsphere.Open(ctx, "sim", cfg)
			if err != nil {
				t.Errorf("thumbprint %q: %v", spelling, err)
				continue
			}
			d.Close()
		}
		cfg := base
		cfg.CACert = ca
		if d, err := vsphere.Open(ctx, "sim", cfg); err != nil {
			t.Errorf("ca_cert: %v", err)
		} else {
			d.Close()
		}
		for _, bad := range []string{"AB:CD", "zz" + strings.Repeat("0", 62)} {
			cfg := base
			cfg.Thumbprint = bad
			if _, err := vsphere.Open(ctx, "sim", cfg); err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), "thumbprint") {
				t.Errorf("thumbprint %q: %v", bad, err)
			}
		}
		// A well-formed pin the host's certificate does not match (the
		// certificate changed, or someone is in the middle) is no
		// connection trouble to retry: permanent, with what the host
		// presents now.
		wrong := "00" + tp[2:]
		known := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(known, []byte(host+" "+wrong+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for what, cfg := range map[string]vsphere.Config{"thumbprint": base, "known_hosts": base} {
			if what == "thumbprint" {
				cfg.Thumbprint = wrong
			} else {
				cfg.KnownHosts = known
			}
			_, err := vsphere.Open(ctx, "sim", cfg)
			if err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), tp) || !strings.Contains(err.Error(), "does not match") {
				t.Errorf("%s pinning another certificate: %v", what, err)
			}
		}
	}, simulator.VPX())
}

// TestDriftByHand: an admin changes the VM itself (CPUs, memory, its
// port group) in vCenter, not the inventory. The record still says what
// was deployed, but the VM is no longer what the node asks for: the plan
// shows the drift from the VM as it is, --apply-drift puts it back, and a
// node that now asks for what the VM already has is unchanged (no needless
// guest restart).
func TestDriftByHand(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		d := newDeployer(ctx, t, c, map[string]any{"network": "DC0_DVPG0"})
		defer closeD(t, d)
		n := node(ovaPath, "ksmg-hand")
		res, err := d.Deploy(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		// By hand, as `govc vm.change -c 4 -m 8192` and
		// `govc vm.network.change -net "VM Network"` would.
		vm := object.NewVirtualMachine(c, types.ManagedObjectReference{Type: "VirtualMachine", Value: res.ID})
		devices, err := vm.Device(ctx)
		if err != nil {
			t.Fatal(err)
		}
		nic := devices.SelectByType((*types.VirtualEthernetCard)(nil))[0]
		f := find.NewFinder(c, true)
		dc, err := f.DefaultDatacenter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pg, err := f.SetDatacenter(dc).Network(ctx, "VM Network")
		if err != nil {
			t.Fatal(err)
		}
		backing, err := pg.EthernetCardBackingInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		nic.GetVirtualDevice().Backing = backing
		task, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{NumCPUs: 4, MemoryMB: 8192, DeviceChange: []types.BaseVirtualDeviceConfigSpec{
			&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationEdit, Device: nic},
		}})
		if err == nil {
			err = task.Wait(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}

		p, err := d.Plan(ctx, n)
		want := "cpus 4 → 2; memory 8192 → 2048; network VM Network → DC0_DVPG0"
		if err != nil || p.Action != deploy.ActionDrift || strings.Join(p.Drift, "; ") != want {
			t.Fatalf("plan after a change by hand: %s %q, %v; want drift %q", p.Action, p.Drift, err, want)
		}
		asIs := n
		asIs.CPUs, asIs.MemoryMiB, asIs.Network = 4, 8192, "VM Network"
		if p, err := d.Plan(ctx, asIs); err != nil || p.Action != deploy.ActionUnchanged {
			t.Errorf("plan of a node asking for what the VM has: %s %q, %v", p.Action, p.Drift, err)
		}
		n.ApplyDrift = true
		r, err := d.Deploy(ctx, n)
		if err != nil || r.Action != deploy.ActionReconfigure || r.ID != res.ID {
			t.Fatalf("apply drift: %+v, %v", r, err)
		}
		got := oneVM(ctx, t, c, "ksmg-hand")
		if got.Config.Hardware.NumCPU != 2 || got.Config.Hardware.MemoryMB != 2048 || len(got.Network) != 1 {
			t.Fatalf("after apply: %d CPUs, %d MiB, networks %v", got.Config.Hardware.NumCPU, got.Config.Hardware.MemoryMB, got.Network)
		}
		if name, _ := object.NewCommon(c, got.Network[0]).ObjectName(ctx); name != "DC0_DVPG0" {
			t.Errorf("network after apply: %s", name)
		}
		if p, err := d.Plan(ctx, n); err != nil || p.Action != deploy.ActionUnchanged {
			t.Errorf("plan after apply: %s %q, %v", p.Action, p.Drift, err)
		}
	}, simulator.VPX())
}

// TestInterruptedSwap: a replace stopped between its renames (the process
// killed, the host gone) leaves the VM in service as <name>.ksmg-old and
// the proven replacement as <name>.ksmg-new, and nothing under the node's
// name. The next run must not take that for "no VM" and create a third
// VM next to the one still in service (same address, same host name): it
// puts the old VM back under its name and removes the unfinished
// replacement, and a run with Replace then swaps cleanly.
func TestInterruptedSwap(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		vspheretest.SafeFindChild(ctx, c)
		d := newDeployer(ctx, t, c, nil)
		defer closeD(t, d)
		n := node(ovaPath, "ksmg-int")
		old, before := interruptedSwap(ctx, t, c, d, ovaPath, "ksmg-int")

		p, err := d.Plan(ctx, n)
		if err != nil || p.Action == deploy.ActionCreate || p.ID != old.ID || !strings.Contains(p.Reason, deploy.AsideName("ksmg-int")) {
			t.Fatalf("plan after an interrupted swap: %+v, %v; want the VM in service (%s) found under %s", p, err, old.ID, deploy.AsideName("ksmg-int"))
		}
		if got := vspheretest.VMs(ctx, t, c); len(got) != before+1 {
			t.Errorf("the plan changed the VMs: %v", got)
		}
		res, err := d.Deploy(ctx, n)
		if err != nil || res.ID != old.ID || res.Action != deploy.ActionUnchanged {
			t.Fatalf("run after an interrupted swap: %+v, %v; want %s unchanged", res, err, old.ID)
		}
		vm := oneVM(ctx, t, c, "ksmg-int")
		if vm.Self.Value != old.ID || vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
			t.Errorf("ksmg-int is %s (%s), want the old %s running", vm.Self.Value, vm.Runtime.PowerState, old.ID)
		}
		for _, gone := range []string{deploy.TempName("ksmg-int"), deploy.AsideName("ksmg-int")} {
			if vms := vspheretest.VMsByName(ctx, t, c, gone); len(vms) != 0 {
				t.Errorf("%s left after the recovery", gone)
			}
		}
		if got := vspheretest.VMs(ctx, t, c); len(got) != before {
			t.Errorf("VMs %v after the recovery, %d before", got, before)
		}
	}, simulator.VPX())
}

// TestRemoveInterruptedSwap: after a replace stopped between its renames
// the node's VM runs as <name>.ksmg-old beside <name>.ksmg-new, and nothing
// has the node's name. Removing the node must remove both (ours, marked),
// and its plan must say so, not "absent" while two VMs with the node's
// address and host name keep running.
func TestRemoveInterruptedSwap(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		vspheretest.SafeFindChild(ctx, c)
		d := newDeployer(ctx, t, c, nil)
		defer closeD(t, d)
		const name = "ksmg-rmint"
		old, before := interruptedSwap(ctx, t, c, d, ovaPath, name)

		p, err := d.Remove(ctx, deploy.RemoveRequest{Name: name, Plan: true})
		if err != nil || p.Action != deploy.ActionRemove || p.ID != old.ID {
			t.Errorf("remove plan after an interrupted swap: %+v, %v; want remove %s", p, err, old.ID)
		}
		if got := len(vspheretest.VMs(ctx, t, c)); got != before+1 {
			t.Errorf("the plan changed the VMs: %d, want %d", got, before+1)
		}
		removeNode(ctx, t, c, d, name, before-1)
	}, simulator.VPX())
}

// TestRemoveTakesLeftovers: a replace whose replacement was not proven
// keeps it turned off as <name>.ksmg-new, marked pending, with the node's
// answers (secrets among them) in its settings; one that could not remove
// the old VM leaves it as <name>.ksmg-old. Removing the node removes them
// too, not only the VM under the node's name.
func TestRemoveTakesLeftovers(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		vspheretest.SafeFindChild(ctx, c)
		d := newDeployer(ctx, t, c, nil)
		defer closeD(t, d)
		const name = "ksmg-left"
		if _, err := d.Deploy(ctx, node(ovaPath, name)); err != nil {
			t.Fatal(err)
		}
		before := len(vspheretest.VMs(ctx, t, c))
		for _, n := range []string{deploy.TempName(name), deploy.AsideName(name)} {
			res := deployAs(ctx, t, c, d, ovaPath, n)
			if n == deploy.TempName(name) {
				if err := vspheretest.SetExtraConfig(ctx, c, types.ManagedObjectReference{Type: "VirtualMachine", Value: res.ID}, deploy.MarkKey, deploy.MarkPending); err != nil {
					t.Fatal(err)
				}
			}
		}
		removeNode(ctx, t, c, d, name, before-1)
	}, simulator.VPX())
}

// TestControlMoved: a Secondary node joined the control node at the
// address it was told at its deploy. When the control node is replaced and
// comes back with another address (DHCP), the Secondary node still points
// at the old one: its plan must say so (drift the run cannot apply in
// place: the result leaves it; --replace redeploys it), not "unchanged".
// A node told nothing new (a plan that does not know the address yet)
// shows no such drift.
func TestControlMoved(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		vspheretest.SafeFindChild(ctx, c)
		d := newDeployer(ctx, t, c, nil)
		defer closeD(t, d)
		n := node(ovaPath, "ksmg-sec")
		n.Properties["ksmg.cluster.role"] = "secondary"
		n.Properties["ksmg.cluster.join_token"] = "join-token-0123456789-secret"
		n.Properties["ksmg.cluster.control_address"] = "192.0.2.50"
		if _, err := d.Deploy(ctx, n); err != nil {
			t.Fatal(err)
		}
		if p, err := d.Plan(ctx, n); err != nil || p.Action != deploy.ActionUnchanged {
			t.Fatalf("plan, same control address: %+v, %v", p, err)
		}
		unknown := n
		unknown.Properties = maps.Clone(n.Properties)
		delete(unknown.Properties, "ksmg.cluster.control_address")
		if p, err := d.Plan(ctx, unknown); err != nil || p.Action != deploy.ActionUnchanged {
			t.Errorf("plan, control address not known yet: %+v, %v", p, err)
		}
		moved := n
		moved.Properties = maps.Clone(n.Properties)
		moved.Properties["ksmg.cluster.control_address"] = "192.0.2.77"
		p, err := d.Plan(ctx, moved)
		if err != nil || p.Action != deploy.ActionDrift || !slices.ContainsFunc(p.Drift, func(s string) bool {
			return strings.Contains(s, "192.0.2.50") && strings.Contains(s, "192.0.2.77")
		}) {
			t.Fatalf("plan, control node moved: %+v, %v; want drift naming both addresses", p, err)
		}
		moved.ApplyDrift = true
		res, err := d.Deploy(ctx, moved)
		if err != nil || !slices.ContainsFunc(res.Drift, func(s string) bool { return strings.Contains(s, "192.0.2.77") }) {
			t.Errorf("--apply-drift with the control node moved: %+v, %v; want the drift left (a first-boot answer needs a new VM)", res, err)
		}
	}, simulator.VPX())
}

// TestReservedNames: <name>.ksmg-new and <name>.ksmg-old are the names a
// replace of node <name> uses, and a replace or remove of <name> removes
// the marked VMs so named. A node of such a name would be destroyed by
// another node's replace: plan and deploy refuse it (exit 2), creating
// nothing.
func TestReservedNames(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		vspheretest.SafeFindChild(ctx, c)
		d := newDeployer(ctx, t, c, nil)
		defer closeD(t, d)
		before := len(vspheretest.VMs(ctx, t, c))
		for _, name := range []string{deploy.TempName("mx1"), deploy.AsideName("mx1")} {
			n := node(ovaPath, name)
			if _, err := d.Plan(ctx, n); err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), name) {
				t.Errorf("plan %s: %v; want it refused", name, err)
			}
			if _, err := d.Deploy(ctx, n); err == nil || !deploy.IsPermanent(err) {
				t.Errorf("deploy %s: %v; want it refused", name, err)
			}
		}
		if got := len(vspheretest.VMs(ctx, t, c)); got != before {
			t.Errorf("%d VMs, %d before: something was created", got, before)
		}
	}, simulator.VPX())
}

// deployAs makes the VM a replace leaves under name (deploy.TempName,
// deploy.AsideName), which no node may have: deployed under a plain name,
// then renamed.
func deployAs(ctx context.Context, t *testing.T, c *vim25.Client, d deploy.Deployer, ovaPath, name string) deploy.Result {
	t.Helper()
	res, err := d.Deploy(ctx, node(ovaPath, strings.ReplaceAll(name, ".ksmg-", "-ksmg-")))
	if err != nil {
		t.Fatal(err)
	}
	renameVM(ctx, t, c, types.ManagedObjectReference{Type: "VirtualMachine", Value: res.ID}, name)
	return res
}

// interruptedSwap deploys node name and leaves what a replace stopped
// after its first rename leaves: the VM in service (old) as
// deploy.AsideName, a replacement as deploy.TempName. before is the number
// of VMs before the replacement.
func interruptedSwap(ctx context.Context, t *testing.T, c *vim25.Client, d deploy.Deployer, ovaPath, name string) (old deploy.Result, before int) {
	t.Helper()
	old, err := d.Deploy(ctx, node(ovaPath, name))
	if err != nil {
		t.Fatal(err)
	}
	before = len(vspheretest.VMs(ctx, t, c))
	deployAs(ctx, t, c, d, ovaPath, deploy.TempName(name))
	renameVM(ctx, t, c, types.ManagedObjectReference{Type: "VirtualMachine", Value: old.ID}, deploy.AsideName(name))
	return old, before
}

func renameVM(ctx context.Context, t *testing.T, c *vim25.Client, vm types.ManagedObjectReference, name string) {
	t.Helper()
	task, err := object.NewVirtualMachine(c, vm).Rename(ctx, name)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestPlanReplaceNameTaken: a replace needs <name>.ksmg-new and
// <name>.ksmg-old free or taken by VMs ksmg made; a VM ksmg did not make
// under one of them fails the run permanently, so the plan must fail the
// same way, not promise a replace.
func TestPlanReplaceNameTaken(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		vspheretest.SafeFindChild(ctx, c)
		d := newDeployer(ctx, t, c, nil)
		defer closeD(t, d)
		foreign := vspheretest.VMs(ctx, t, c)[0]
		n := node(ovaPath, "ksmg-taken")
		if _, err := d.Deploy(ctx, n); err != nil {
			t.Fatal(err)
		}
		renameVM(ctx, t, c, oneVM(ctx, t, c, foreign).Self, deploy.TempName(n.Name))
		n.Replace = true
		_, runErr := d.Deploy(ctx, n)
		if runErr == nil || !deploy.IsPermanent(runErr) {
			t.Fatalf("replace with a foreign %s: %v; want a permanent error", deploy.TempName(n.Name), runErr)
		}
		p, err := d.Plan(ctx, n)
		if err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), deploy.TempName(n.Name)) {
			t.Errorf("plan of that replace: %+v, %v; want the run's error (%v)", p, err, runErr)
		}
	}, simulator.VPX())
}

// removeNode removes node name and checks that nothing of it is left
// (its VM, deploy.TempName, deploy.AsideName) and that want VMs remain.
func removeNode(ctx context.Context, t *testing.T, c *vim25.Client, d deploy.Deployer, name string, want int) {
	t.Helper()
	res, err := d.Remove(ctx, deploy.RemoveRequest{Name: name, ShutdownTimeout: time.Second})
	if err != nil || res.Action != deploy.ActionRemove {
		t.Fatalf("remove: %+v, %v", res, err)
	}
	for _, gone := range []string{name, deploy.TempName(name), deploy.AsideName(name)} {
		if vms := vspheretest.VMsByName(ctx, t, c, gone); len(vms) != 0 {
			t.Errorf("%s left after the remove", gone)
		}
	}
	if got := len(vspheretest.VMs(ctx, t, c)); got != want {
		t.Errorf("%d VMs after the remove, want %d", got, want)
	}
}
