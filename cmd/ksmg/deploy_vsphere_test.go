package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vmware/govmomi/ovf/importer"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"

	"github.com/ksmg-appliance/ksmg/deploy/vsphere/vspheretest"
	"github.com/ksmg-appliance/ksmg/ova"
)

// runVSphere runs a fresh `deploy vsphere` command (flags do not leak
// between runs) and returns its stdout.
func runVSphere(t *testing.T, args ...string) (string, error) {
	return runCommand(t, newDeployVSphereCmd(newApp()), args...)
}

func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// secretProps writes the secret first-boot answers kv (key, value, ...)
// to a props file readable only by its owner: secrets never go on the
// command line.
func secretProps(t *testing.T, kv ...string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, "%s: %q\n", kv[i], kv[i+1])
	}
	return writeFile(t, "secrets.yaml", b.String())
}

// TestReadPropsFile: the three accepted shapes, including a real
// `govc import.spec` document made by govmomi's importer.Spec from the
// OVA, and malformed files rejected with file and line.
func TestReadPropsFile(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	spec, err := importer.Spec(ova.MemberNames("ksmg", "0.1.0").OVF, &importer.TapeArchive{Path: ovaPath}, false, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range spec.PropertyMapping {
		if p.Key == "ksmg.hostname" {
			spec.PropertyMapping[i].Value = "mx9.example.com"
		}
	}
	spec.NetworkMapping[0].Network = "DC0_DVPG0"
	govc, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, data string
		want       map[string]string
		nets       map[string]string
	}{
		{"yaml", "ksmg.hostname: mx1.example.com\nksmg.eula.accepted: true\nksmg.network.prefix: 24\nksmg.network.dns:\n",
			map[string]string{"ksmg.hostname": "mx1.example.com", "ksmg.eula.accepted": "True", "ksmg.network.prefix": "24", "ksmg.network.dns": ""}, nil},
		{"json", `{"ksmg.hostname": "mx2.example.com", "ksmg.ksn.consent": false}`,
			map[string]string{"ksmg.hostname": "mx2.example.com", "ksmg.ksn.consent": "False"}, nil},
		{"govc import.spec", string(govc),
			map[string]string{"ksmg.hostname": "mx9.example.com", "ksmg.network.mode": "dhcp", "ksmg.eula.accepted": "False"},
			map[string]string{ova.NetworkName: "DC0_DVPG0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, nets, err := readPropsFile(writeFile(t, "props", tc.data))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.want {
				if g, ok := got[k]; !ok || g != v {
					t.Errorf("%s = %q (present %v), want %q", k, g, ok, v)
				}
			}
			if _, ok := got["ksmg.admin.password"]; ok {
				t.Error("an unset password from the spec became a value")
			}
			for k, v := range tc.nets {
				if nets[k] != v {
					t.Errorf("network %s -> %q, want %q", k, nets[k], v)
				}
			}
		})
	}

	for _, tc := range []struct{ name, data, want string }{
		{"list", "- a\n- b\n", "line 1: expected a map"},
		{"nested", "ksmg.hostname:\n  a: b\n", "line 2: ksmg.hostname: expected a single value"},
		{"not yaml", "{ksmg: [", "not a YAML or JSON map"},
		{"empty", "", "empty"},
		{"bad govc", `{"PropertyMapping": [{"Value": "x"}]}`, "PropertyMapping[0] has no Key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := writeFile(t, "bad.yaml", tc.data)
			_, _, err := readPropsFile(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("err = %v, want it to name %s and say %q", err, p, tc.want)
			}
		})
	}
}

// TestDeployVSphereCommand runs the command against vcsim's ESXi model:
// --plan, a deploy, a re-run, and rejected input.
func TestDeployVSphereCommand(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	props := writeFile(t, "props.yaml", "ksmg.hostname: cli.example.com\nksmg.eula.accepted: true\nksmg.admin.password: Secret-Passw0rd-1\n")
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		target := vspheretest.Target(t, c)
		base := []string{"--url", target["url"].(string), "--username", "u", "--password-file", target["password_file"].(string), "--insecure",
			"--ova", ovaPath, "--name", "ksmg-cli", "--props-file", props, "--disk-size", "1G", "--cpus", "3", "--wait-ip", "0"}

		out, err := runVSphere(t, append(base, "--plan")...)
		if err != nil || !strings.HasPrefix(out, "create ksmg-cli -: no VM ksmg-cli") {
			t.Fatalf("--plan: %q, %v", out, err)
		}
		if got := vspheretest.VMs(ctx, t, c); strings.Contains(strings.Join(got, " "), "ksmg-cli") {
			t.Fatal("--plan created a VM")
		}

		out, err = runVSphere(t, base...)
		if err != nil || !regexp.MustCompile(`(?m)^create ksmg-cli \S+ -$`).MatchString(out) {
			t.Fatalf("deploy: %q, %v", out, err)
		}
		out, err = runVSphere(t, base...)
		if err != nil || !regexp.MustCompile(`(?m)^unchanged ksmg-cli \S+ -$`).MatchString(out) {
			t.Fatalf("re-run: %q, %v", out, err)
		}

		for _, tc := range []struct {
			name string
			args []string
			code int
			want string
		}{
			// A permanent error (the input must change) exits 2 like bad flags.
			{"tampered", []string{"--ova", vspheretest.Tampered(t, ovaPath), "--name", "ksmg-t"}, 2, "digest check failed"},
			{"bad prop", []string{"--prop", "ksmg.admin.password"}, 2, "expected key=value"},
			{"bad disk size", []string{"--disk-size", "10M"}, 2, "--disk-size"},
			{"unknown prop", []string{"--name", "ksmg-u", "--prop", "ksmg.nope=1"}, 2, "ksmg.nope: unknown key"},
			{"no password", []string{"--password-file", "/nonexistent"}, 2, "password_file"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out, err := runVSphere(t, append(append([]string{}, base...), tc.args...)...)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v (out %q), want %q", err, out, tc.want)
				}
				var ee *exitError
				if tc.code != 0 && (!errors.As(err, &ee) || ee.code != tc.code) {
					t.Errorf("exit status: %v, want %d", err, tc.code)
				}
				if strings.Contains(err.Error(), "Secret-Passw0rd-1") {
					t.Error("error reveals the admin password")
				}
			})
		}
		if got := vspheretest.VMs(ctx, t, c); strings.Count(strings.Join(got, " "), "ksmg-") != 1 {
			t.Errorf("VMs %v: want only ksmg-cli", got)
		}
	}, simulator.ESX())
}
