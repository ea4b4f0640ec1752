package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/pwsh"
	"github.com/ksmg-appliance/ksmg/deploy/pwsh/pwshtest"
	"github.com/ksmg-appliance/ksmg/deploy/scvmm"
)

// The command is tested for flags, output and exit statuses against
// pwshtest's WinRM server (no SCVMM or Windows host can run here), which
// answers the look-up script like a VMM server with the VMs in vms; the
// driver's whole deploy is tested in deploy/scvmm.

var scvmmStep = regexp.MustCompile(`(?m)^# ksmg-scvmm step=(\w+)$`)

// fakeScvmm returns an app that reaches a fake VMM server with vms.
func fakeScvmm(t *testing.T, vms string) *app {
	t.Helper()
	host := pwshtest.NewHost(func(script string) pwshtest.Reply {
		m := scvmmStep.FindStringSubmatch(script)
		if m == nil || m[1] != "plan" {
			t.Errorf("unexpected script %v", m)
			return pwshtest.Reply{ExitCode: 1}
		}
		switch {
		case strings.Contains(script, "-Name 'ksmg-1.ksmg-old'"), strings.Contains(script, "-Name 'ksmg-1.ksmg-new'"):
			// where an interrupted replace would have left the VM; the
			// names a replace needs free
			return pwshtest.Reply{Stdout: `{"vms":[]}` + "\r\n"}
		case !strings.Contains(script, "-Name 'ksmg-1'"):
			t.Errorf("plan script does not look up ksmg-1:\n%s", script)
		}
		return pwshtest.Reply{Stdout: `{"vms":` + vms + "}\r\n"}
	})
	t.Cleanup(host.Close)
	a := newApp()
	a.openScvmm = func(ctx context.Context, name string, cfg scvmm.Config, log *slog.Logger) (deploy.Deployer, error) {
		run, err := pwsh.NewWinRM(host.Config)
		if err != nil {
			return nil, err
		}
		return scvmm.New(cfg, scvmm.Options{Name: name, Runner: run, Copier: scvmmNoCopier{}, HostUser: cfg.User, Logger: log})
	}
	return a
}

type scvmmNoCopier struct{}

func (scvmmNoCopier) Copy(context.Context, string, string, func(int64, int64)) error {
	return errors.New("no copy expected in these tests")
}

func runScvmm(t *testing.T, a *app, args ...string) (string, error) {
	return runCommand(t, newDeployScvmmCmd(a), args...)
}

// scvmmArgs are a deploy's flags with a real VHDX (checked before the
// server is reached).
func scvmmArgs(t *testing.T) []string {
	return append(append([]string{"--vhdx", testVHDX(t)}, scvmmBaseArgs...), "--props-file", secretProps(t, "ksmg.admin.password", "Secret-1234567"))
}

var scvmmBaseArgs = []string{
	"--name", "ksmg-1", "--server", "vmm.example.com", "--user", `EXAMPLE\deployer`,
	"--library-share", `\\lib.example.com\MSSCVMMLibrary\ksmg`, "--host-group", `All Hosts\Prague`,
	"--prop", "ksmg.hostname=ksmg-1.example.com",
}

const scvmmDoneVM = `[{"id":"vm-1","description":"ksmg.deploy=complete","state":"Running","host":"hv1","ips":["192.0.2.10"]}]`

const scvmmForeignVM = `[{"id":"vm-1","description":"Production relay","state":"Running","host":"hv1","ips":["192.0.2.7"]}]`

// TestDeployScvmmForeignVM: a VM of the name without the mark is not ours;
// plan and deploy stop with exit 2 and name it, and only the look-up runs
// (fakeScvmm fails the test on any other script).
func TestDeployScvmmForeignVM(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--plan"}, nil} {
		a := fakeScvmm(t, scvmmForeignVM)
		out, err := runScvmm(t, a, append(scvmmArgs(t), args...)...)
		const want = "VM ksmg-1 exists (vm-1 on hv1) and was not deployed by ksmg"
		if exitCode(err) != 2 || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: err = %v (exit %d), want exit 2 with %q\n%s", args, err, exitCode(err), want, out)
		}
	}
}

func TestDeployScvmmPlanAndUnchanged(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, vms string
		args      []string
		json      bool
		want      string
	}{
		{"plan create", `[]`, []string{"--plan"}, false, "create ksmg-1 -: no VM named ksmg-1\n"},
		{"plan leftover", `[{"id":"vm-1","description":"ksmg.deploy=pending","state":"PowerOff","host":"hv1","ips":[]}]`, []string{"--plan"}, false,
			"replace ksmg-1 vm-1: VM ksmg-1 exists (vm-1, PowerOff) with ksmg.deploy=\"pending\", not \"complete\": leftover of an unfinished deploy\n"},
		{"plan foreign replace", scvmmForeignVM, []string{"--plan", "--replace", "--replace-foreign"}, false,
			"replace ksmg-1 vm-1: VM ksmg-1 exists (vm-1 on hv1), not deployed by ksmg; replace of a foreign VM requested: a new VM is deployed as ksmg-1.ksmg-new and swapped in\n"},
		{"plan unchanged json", scvmmDoneVM, []string{"--plan"}, true, `"action": "unchanged"`},
		{"deploy unchanged", scvmmDoneVM, nil, false, "unchanged ksmg-1 vm-1 192.0.2.10\n"},
		{"deploy unchanged json", scvmmDoneVM, nil, true, `"ip": "192.0.2.10"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := fakeScvmm(t, tc.vms)
			a.json = tc.json
			out, err := runScvmm(t, a, append(scvmmArgs(t), tc.args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if tc.json {
				if !json.Valid([]byte(out)) || !strings.Contains(out, tc.want) {
					t.Errorf("output %q, want JSON with %s", out, tc.want)
				}
			} else if out != tc.want {
				t.Errorf("output %q, want %q", out, tc.want)
			}
			if strings.Contains(out, "Secret-1234567") {
				t.Errorf("the password reached the output")
			}
		})
	}
}

func TestDeployScvmmBadInput(t *testing.T) {
	t.Setenv(scvmm.DefaultPasswordEnv, "")
	args := scvmmArgs(t)
	without := func(flag string) []string { return withoutFlag(args, flag) }
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no vhdx", without("--vhdx"), "--vhdx, --name and --server are required"},
		{"bad prop", append(without("--prop"), "--prop", "ksmg.admin.password"), "expected key=value"},
		{"bad disk size", append(without("--prop"), "--disk-size", "10T"), "--disk-size"},
		{"both placements", append(without("--prop"), "--cloud", "Mail"), "host_group, cloud: give exactly one"},
		{"no share", without("--library-share"), "library_share"},
		{"bad name", append(without("--name"), "--name", "a'b"), "must not contain"},
		{"no password", without("--prop"), scvmm.DefaultPasswordEnv + " is empty or unset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runScvmm(t, newApp(), tc.args...)
			if exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v (exit %d), want exit 2 with %q\n%s", err, exitCode(err), tc.want, out)
			}
			if strings.Contains(err.Error(), "Secret-1234567") {
				t.Errorf("the password reached the error")
			}
		})
	}
}
