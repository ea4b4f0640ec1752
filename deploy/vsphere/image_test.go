package vsphere_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/vsphere/vspheretest"
	"github.com/ksmg-appliance/ksmg/ova"
	"github.com/ksmg-appliance/ksmg/ova/ovatest"
)

// TestBuiltOVA deploys the OVA that `make images` built (KSMG_IMAGE_DIR;
// make test sets it) into vcsim's ESXi and vCenter, unchanged: the real
// 100 GiB disk's stream, its manifest and its list of acceptable hardware
// versions, which the driver resolves to the newest the host can create.
func TestBuiltOVA(t *testing.T) {
	t.Parallel()
	dir := os.Getenv("KSMG_IMAGE_DIR")
	if dir == "" {
		t.Skip("KSMG_IMAGE_DIR is not set: run through make test, which builds the images first")
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "ksmg-*.ova"))
	if len(matches) != 1 {
		t.Fatalf("want one OVA in %s, found %v", dir, matches)
	}
	for _, tc := range models() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			simulator.Test(func(ctx context.Context, c *vim25.Client) {
				d := newDeployer(ctx, t, c, nil)
				defer closeD(t, d)
				n := node(matches[0], "ksmg-built")
				n.DiskGiB = 120
				res, err := d.Deploy(ctx, n)
				if err != nil {
					t.Fatalf("deploy: %v", err)
				}
				m := vmProps(ctx, t, c, res.ID)
				// The chosen version must be one the OVA lists (vcsim's
				// hosts create up to vmx-21, so it picks vmx-21 there).
				hv, err := types.ParseHardwareVersion(m.Config.Version)
				if err != nil {
					t.Fatalf("VM hardware version %q: %v", m.Config.Version, err)
				}
				t.Logf("hardware version %s", hv)
				listed := false
				for _, v := range splitVersions(ova.HardwareVersions) {
					listed = listed || v == hv.String()
				}
				if !listed {
					t.Errorf("VM hardware %s is not one the OVA accepts (%s)", hv, ova.HardwareVersions)
				}
				if extraConfig(m)[deploy.MarkKey] != deploy.MarkComplete {
					t.Errorf("mark %q", extraConfig(m)[deploy.MarkKey])
				}
				vms := vspheretest.VMs(ctx, t, c)
				if count(vms, "ksmg-built") != 1 {
					t.Errorf("VMs %v", vms)
				}
				// A second run leaves it alone.
				again, err := d.Deploy(ctx, n)
				if err != nil || again.Action != deploy.ActionUnchanged || again.ID != res.ID {
					t.Errorf("re-run: %+v, %v", again, err)
				}
			}, tc.model())
		})
	}
}

func splitVersions(s string) []string {
	var out []string
	cur := ""
	for _, r := range s + " " {
		if r == ' ' || r == ',' {
			if cur != "" {
				out = append(out, cur)
			}
			cur = ""
			continue
		}
		cur += string(r)
	}
	return out
}

// TestHardwareVersions: a list of versions is resolved to the newest the
// host creates (comma-separated as VMware writes it, too), and a list the
// host cannot create is refused before anything is imported.
func TestHardwareVersions(t *testing.T) {
	t.Parallel()
	small := vspheretest.SmallOVA(t)
	rewrite := func(types string) string {
		ms := ovatest.ReadTar(t, small)
		i := ovatest.Find(ms, ".ovf")
		b := bytes.Replace(ms[i].Data, []byte(">"+ova.HardwareVersions+"<"), []byte(">"+types+"<"), 1)
		if bytes.Equal(b, ms[i].Data) {
			t.Fatal("no VirtualSystemType to rewrite")
		}
		ms[i].Data = b
		ms[ovatest.Find(ms, ".mf")].Data = ovatest.Manifest(ms)
		p := filepath.Join(t.TempDir(), "hw.ova")
		ovatest.WriteTar(t, p, ms)
		return p
	}
	for _, tc := range []struct {
		types, want string
	}{
		{"vmx-13,vmx-15", "vmx-15"},
		{"vmx-19 vmx-10 vmx-14", "vmx-19"},
		{"vmx-98 vmx-99", ""},
	} {
		t.Run(tc.types, func(t *testing.T) {
			t.Parallel()
			p := rewrite(tc.types)
			simulator.Test(func(ctx context.Context, c *vim25.Client) {
				d := newDeployer(ctx, t, c, nil)
				defer closeD(t, d)
				before := len(vspheretest.VMs(ctx, t, c))
				res, err := d.Deploy(ctx, node(p, "hw"))
				if tc.want == "" {
					if err == nil || !deploy.IsPermanent(err) || !strings.Contains(err.Error(), "vmx-99") {
						t.Fatalf("want a permanent error naming the versions, got %v", err)
					}
					if after := len(vspheretest.VMs(ctx, t, c)); after != before {
						t.Fatalf("%d VMs after a refused import, %d before", after, before)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if v := vmProps(ctx, t, c, res.ID).Config.Version; v != tc.want {
					t.Fatalf("hardware version %s, want %s", v, tc.want)
				}
			}, simulator.VPX())
		})
	}
}
