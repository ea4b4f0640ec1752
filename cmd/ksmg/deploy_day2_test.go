package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"

	"github.com/ksmg-appliance/ksmg/deploy/fleet"
	"github.com/ksmg-appliance/ksmg/deploy/vsphere/vspheretest"
)

// runRoot runs a fresh ksmg command tree and returns stdout and stderr
// apart (stdout must be pure JSON with --json).
func runRoot(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRootCmd(newApp())
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// TestUsageErrors: bad flags and arguments exit 2, naming the problem; a
// malformed --prop never shows a value that may be a secret; a malformed
// thumbprint is refused before anything is reached.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	// Secret answers in a file others can read are refused, as the
	// fleet refuses such a secret file.
	shared := secretProps(t, "ksmg.admin.password", "Hunter2-Secret-1")
	if err := os.Chmod(shared, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"deploy", "vsphere", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"deploy", "fleet"}, "accepts 1 arg(s)"},
		{[]string{"deploy", "vsphere", "stray"}, `unexpected argument "stray"`},
		{[]string{"deploy", "vsphere", "--ova", "x.ova", "--name", "a", "--prop", "ksmg.hostname"}, `--prop "ksmg.hostname": expected key=value`},
		{[]string{"deploy", "vsphere", "--ova", "x.ova", "--name", "a", "--prop", "Hunter2-Secret"}, `--prop "<value hidden>": expected key=value`},
		{[]string{"deploy", "vsphere", "--ova", "x.ova", "--name", "a", "--url", "https://192.0.2.1/sdk", "--thumbprint", "AB:CD"}, "thumbprint"},
		{[]string{"deploy", "vsphere", "--ova", "x.ova", "--name", "a", "--wait-ip", "0", "--replace-foreign"}, "--replace-foreign goes with --replace"},
		{[]string{"deploy", "remove", "vsphere"}, "--name is required"},
		{[]string{"deploy", "bogus"}, `unknown command "bogus"`},
		{[]string{"deploy", "remove", "xen"}, `unknown command "xen"`},
		{[]string{"deploy", "vsphere", "--ova", "x.ova", "--name", "a", "--props-file", shared}, "readable by others (mode 0644); chmod 600 it"},
		// A secret answer never goes on the command line: every local
		// user sees it in the process list, the shell keeps it.
		{[]string{"deploy", "vsphere", "--ova", "x.ova", "--name", "a", "--prop", "ksmg.admin.password=Hunter2-Secret-1"}, "--prop ksmg.admin.password: a secret"},
		{[]string{"deploy", "hyperv", "--vhdx", "x.vhdx", "--name", "a", "--prop", "ksmg.cluster.join_token=Hunter2-Secret-1"}, "--prop ksmg.cluster.join_token: a secret"},
		{[]string{"deploy", "scvmm", "--server", "vmm.example.com", "--vhdx", "x.vhdx", "--name", "a", "--prop", "ksmg.admin.password_hash=$6$Hunter2$x"}, "--prop ksmg.admin.password_hash: a secret"},
	} {
		_, _, err := runRoot(t, tc.args...)
		if exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: exit %d, %v; want exit 2 with %q", tc.args, exitCode(err), err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "Hunter2") {
			t.Errorf("%v: the value reached the message", tc.args)
		}
	}
}

// TestVSpherePreflight: every check a deploy runs, the plan runs, with
// exit 2 from both and nothing created — including the answers first boot
// would reject, which the single command used to deploy.
func TestVSpherePreflight(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		target := vspheretest.Target(t, c)
		base := []string{"deploy", "vsphere", "--url", target["url"].(string), "--username", "u", "--password-file", target["password_file"].(string),
			"--insecure", "--ova", ovaPath, "--name", "ksmg-pre", "--prop", "ksmg.eula.accepted=true", "--wait-ip", "0"}
		before := vspheretest.VMs(ctx, t, c)
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--prop", "ksmg.network.mode=bogus"}, "ksmg.network.mode"},
			{[]string{"--prop", "ksmg.eula.accepted=maybe"}, "ksmg.eula.accepted"},
			{[]string{"--prop", "ksmg.hostname=bad_host!"}, "ksmg.hostname"},
			{[]string{"--props-file", secretProps(t, "ksmg.admin.password", "abc")}, "the minimum is 12"},
			{[]string{"--prop", "ksmg.timezone=Mars/Olympus"}, "ksmg.timezone"},
			{[]string{"--prop", "ksmg.network.interface=ens192"}, "not declared by the OVA"},
			{[]string{"--network-map", "Management=VM Network"}, "network_map[Management]: the OVA"},
			{[]string{"--ova", vspheretest.Tampered(t, ovaPath)}, "digest check failed"},
		} {
			for _, mode := range [][]string{{"--plan"}, nil} {
				args := append(append(append([]string{}, base...), tc.args...), mode...)
				_, _, err := runRoot(t, args...)
				if exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%v %v: exit %d, %v; want exit 2 with %q", tc.args, mode, exitCode(err), err, tc.want)
				}
			}
		}
		if got := vspheretest.VMs(ctx, t, c); len(got) != len(before) {
			t.Errorf("VMs %v after rejected input, before %v", got, before)
		}
	}, simulator.ESX())
}

// TestVSphereDayTwo: --json output is the fleet's schema on pure stdout; a
// deploy without waiting says the secrets remain; --scrub refuses before
// first boot signalled and clears after; remove --plan touches nothing,
// remove removes ours and refuses someone else's VM (exit 2).
func TestVSphereDayTwo(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		target := vspheretest.Target(t, c)
		conn := []string{"--url", target["url"].(string), "--username", "u", "--password-file", target["password_file"].(string), "--insecure"}
		node := append(append([]string{}, conn...), "--ova", ovaPath, "--name", "ksmg-d2", "--wait-ip", "0",
			"--prop", "ksmg.eula.accepted=true", "--props-file", secretProps(t, "ksmg.admin.password", "Secret-Passw0rd-1"))
		deployArgs := append([]string{"deploy", "vsphere"}, node...)

		out, _, err := runRoot(t, append(deployArgs, "--json")...)
		var rows []fleet.JSONOutcome
		if err != nil || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 || rows[0].Action != "create" || !rows[0].SecretsLeft || rows[0].Status != fleet.StatusOK {
			t.Fatalf("--json deploy: %v, stdout %q", err, out)
		}
		out, _, err = runRoot(t, append(deployArgs, "--plan", "--json")...)
		var plan []fleet.JSONPlan
		if err != nil || json.Unmarshal([]byte(out), &plan) != nil || len(plan) != 1 || plan[0].Action != "unchanged" || plan[0].Properties["ksmg.admin.password"] != "<secret>" {
			t.Fatalf("--plan --json: %v, stdout %q", err, out)
		}
		if _, _, err := runRoot(t, append(deployArgs, "--scrub")...); exitCode(err) != 2 || !strings.Contains(err.Error(), "has not reported completion") {
			t.Errorf("--scrub before the signal: exit %d, %v", exitCode(err), err)
		}
		vm := vspheretest.VMsByName(ctx, t, c, "ksmg-d2")[0]
		if err := vspheretest.SetExtraConfig(ctx, c, vm.Self, vspheretest.DoneKey, "done"); err != nil {
			t.Fatal(err)
		}
		if out, _, err := runRoot(t, append(deployArgs, "--scrub")...); err != nil || !strings.HasPrefix(out, "scrub ksmg-d2 ") {
			t.Errorf("--scrub: %v, %q", err, out)
		}
		for _, v := range vspheretest.ExtraConfig(vspheretest.VMsByName(ctx, t, c, "ksmg-d2")[0]) {
			if strings.Contains(v, "Secret-Passw0rd-1") {
				t.Error("the password stayed in the VM's settings after --scrub")
			}
		}

		removeArgs := append([]string{"deploy", "remove", "vsphere", "--name", "ksmg-d2", "--shutdown-timeout", "5s"}, conn...)
		if out, _, err := runRoot(t, append(removeArgs, "--plan")...); err != nil || !strings.Contains(out, "remove ksmg-d2") || len(vspheretest.VMsByName(ctx, t, c, "ksmg-d2")) != 1 {
			t.Fatalf("remove --plan: %v, %q", err, out)
		}
		if out, _, err := runRoot(t, removeArgs...); err != nil || !strings.HasPrefix(out, "remove ksmg-d2") || len(vspheretest.VMsByName(ctx, t, c, "ksmg-d2")) != 0 {
			t.Fatalf("remove: %v, %q", err, out)
		}
		foreign := vspheretest.VMs(ctx, t, c)[0]
		removeForeign := append([]string{"deploy", "remove", "vsphere", "--name", foreign}, conn...)
		if _, _, err := runRoot(t, removeForeign...); exitCode(err) != 2 || !strings.Contains(err.Error(), "not deployed by ksmg") || len(vspheretest.VMsByName(ctx, t, c, foreign)) != 1 {
			t.Errorf("remove of a foreign VM: exit %d, %v", exitCode(err), err)
		}
	}, simulator.ESX())
}

// TestSecretsRemainSaid: a text deploy without a wait says the secrets
// remain and how to clear them.
func TestSecretsRemainSaid(t *testing.T) {
	t.Parallel()
	a, _ := fakeHyperV(t, "null")
	out, err := runHyperV(t, a, append(hypervArgs(t), "--wait-ip", "0")...)
	if err != nil || !strings.Contains(out, "remain in the VM's settings") || !strings.Contains(out, "--scrub") {
		t.Errorf("%v:\n%s", err, out)
	}
}

// TestHyperVImageBeforeHost: a bad VHDX is refused (exit 2) before any
// host is reached, by the plan as by the deploy.
func TestHyperVImageBeforeHost(t *testing.T) {
	t.Parallel()
	bad := filepath.Join(t.TempDir(), "bad.vhdx")
	if err := os.WriteFile(bad, []byte("not a disk"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range [][]string{{"--plan"}, nil} {
		a, steps := fakeHyperV(t, "null")
		args := append(withoutFlag(hypervArgs(t), "--vhdx"), append([]string{"--vhdx", bad}, mode...)...)
		_, err := runHyperV(t, a, args...)
		if exitCode(err) != 2 || !strings.Contains(err.Error(), "image: vhdx") || len(*steps) != 0 {
			t.Errorf("%v: exit %d, %v, steps %v", mode, exitCode(err), err, *steps)
		}
	}
}

// TestJSONErrors: with --json a failed plan prints its row with the error,
// in the fleet's plan schema, as a failed deploy prints its outcome; and
// the final error line on stderr is a JSON log record like every other
// line there, with the exit status.
func TestJSONErrors(t *testing.T) {
	t.Parallel()
	ovaPath := vspheretest.SmallOVA(t)
	simulator.Test(func(ctx context.Context, c *vim25.Client) {
		target := vspheretest.Target(t, c)
		foreign := vspheretest.VMs(ctx, t, c)[0]
		args := []string{"--json", "deploy", "vsphere", "--url", target["url"].(string), "--username", "u", "--password-file", target["password_file"].(string),
			"--insecure", "--ova", ovaPath, "--name", foreign, "--prop", "ksmg.eula.accepted=true", "--wait-ip", "0", "--plan"}
		out, _, err := runRoot(t, args...)
		var plan []fleet.JSONPlan
		if exitCode(err) != 2 || json.Unmarshal([]byte(out), &plan) != nil || len(plan) != 1 || plan[0].Node != foreign || !strings.Contains(plan[0].Error, "not deployed by ksmg") {
			t.Errorf("--plan --json of a foreign VM: exit %d, %v; stdout %q, want a plan row with the error", exitCode(err), err, out)
		}
		var stderr bytes.Buffer
		if code := finish(&stderr, true, err); code != 2 {
			t.Errorf("exit status %d, want 2", code)
		}
		var rec map[string]any
		if json.Unmarshal(stderr.Bytes(), &rec) != nil || rec["level"] != "ERROR" || !strings.Contains(fmt.Sprint(rec["err"]), "not deployed by ksmg") || rec["exit"] != float64(2) {
			t.Errorf("stderr with --json: %q, want one JSON record with the error and the exit status", stderr.String())
		}
		stderr.Reset()
		if code := finish(&stderr, false, err); code != 2 || !strings.HasPrefix(stderr.String(), "ksmg: ") {
			t.Errorf("stderr without --json: %d %q", code, stderr.String())
		}
	}, simulator.ESX())
}
