package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/hyperv"
	"github.com/ksmg-appliance/ksmg/deploy/pwsh"
	"github.com/ksmg-appliance/ksmg/deploy/pwsh/pwshtest"
)

// No Hyper-V host can run here: the command is tested for flags, output
// and exit statuses against pwshtest's WinRM server, which answers each
// script step like a Hyper-V host would; the driver's deploy sequence and
// failure handling are tested in deploy/hyperv.

var hypervStep = regexp.MustCompile(`^# ksmg-deploy: ([a-z-]+)\n`)

// fakeHyperV answers find-vm with vm (JSON or "null") and every other step
// as a successful one; it returns an app that reaches it and the steps it
// saw.
func fakeHyperV(t *testing.T, vm string) (*app, *[]string) {
	t.Helper()
	var steps []string
	host := pwshtest.NewHost(func(script string) pwshtest.Reply {
		m := hypervStep.FindStringSubmatch(script)
		if m == nil {
			t.Errorf("script without a step line:\n%s", script)
			return pwshtest.Reply{ExitCode: 1}
		}
		steps = append(steps, m[1])
		switch m[1] {
		case "find-vm":
			return pwshtest.Reply{Stdout: vm + "\r\n"}
		case "create-vm":
			return pwshtest.Reply{Stdout: "5c4d2a1e-0b7f-4e42-9c1d-6a8b3f0e2d71\r\n"}
		case "guest-ip":
			return pwshtest.Reply{Stdout: "192.0.2.10\r\n"}
		case "guest-kvp":
			// First boot's signal, as GuestExchangeItems holds it.
			return pwshtest.Reply{Stdout: `{"items":["<INSTANCE CLASSNAME=\"Msvm_KvpExchangeDataItem\"><PROPERTY NAME=\"Data\" TYPE=\"string\"><VALUE>done</VALUE></PROPERTY><PROPERTY NAME=\"Name\" TYPE=\"string\"><VALUE>ksmg.firstboot</VALUE></PROPERTY><PROPERTY NAME=\"Source\" TYPE=\"uint16\"><VALUE>2</VALUE></PROPERTY></INSTANCE>"]}` + "\r\n"}
		}
		return pwshtest.Reply{}
	})
	t.Cleanup(host.Close)
	a := newApp()
	a.openHyperV = func(ctx context.Context, name string, cfg hyperv.Config, log *slog.Logger) (deploy.Deployer, error) {
		if err := cfg.Validate(); err != nil {
			return nil, deploy.Permanent(err)
		}
		run, err := pwsh.NewWinRM(host.Config)
		if err != nil {
			return nil, err
		}
		return hyperv.New(name, hyperv.NewPSHost(name, run, nopCopier{}, cfg.Share, cfg.Path), cfg), nil
	}
	return a, &steps
}

// nopCopier stands in for SMB (tested against smbd in deploy/pwsh).
type nopCopier struct{}

func (nopCopier) Copy(context.Context, string, string, func(int64, int64)) error { return nil }

func runHyperV(t *testing.T, a *app, args ...string) (string, error) {
	return runCommand(t, newDeployHyperVCmd(a), args...)
}

func hypervArgs(t *testing.T) []string {
	img := testVHDX(t)
	return []string{
		"--vhdx", img, "--name", "ksmg-1", "--host", "hv1", "--user", `LAB\deployer`,
		"--share", `\\hv1\VMs$\ksmg`, "--path", `D:\VMs\ksmg`, "--switch", "DMZ",
		"--prop", "ksmg.hostname=ksmg-1.example.com", "--props-file", secretProps(t, "ksmg.admin.password", "Secret-1234567"),
	}
}

const hypervDoneVM = `{"id":"5c4d2a1e-0b7f-4e42-9c1d-6a8b3f0e2d71","name":"ksmg-1","notes":"ksmg.deploy=complete","state":"Running"}`

func TestDeployHyperV(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, vm  string
		args      []string
		json      bool
		want      string
		wantSteps string
	}{
		{"plan create", "null", []string{"--plan"}, false, "create ksmg-1 -: no VM ksmg-1 on hv1\n", "[find-vm find-vm]"},
		{"plan unchanged json", hypervDoneVM, []string{"--plan"}, true, `"action": "unchanged"`, "[find-vm]"},
		{"deploy unchanged", hypervDoneVM, nil, false, "unchanged ksmg-1 5c4d2a1e-0b7f-4e42-9c1d-6a8b3f0e2d71 -\n", "[find-vm]"},
		{"deploy", "null", []string{"--wait-ip", "1m", "--poll-interval", "1ms"}, false, "create ksmg-1 5c4d2a1e-0b7f-4e42-9c1d-6a8b3f0e2d71 192.0.2.10\n",
			"[find-vm find-vm create-vm add-kvp start-vm guest-ip guest-kvp remove-kvp set-notes]"},
		{"deploy json", "null", []string{"--power-on=false", "--wait-ip", "0"}, true, `"action": "create"`, "[find-vm find-vm create-vm add-kvp set-notes]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, steps := fakeHyperV(t, tc.vm)
			a.json = tc.json
			out, err := runHyperV(t, a, append(hypervArgs(t), tc.args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if tc.json {
				if !json.Valid([]byte(out)) || !strings.Contains(out, tc.want) {
					t.Errorf("output %q, want JSON with %s", out, tc.want)
				}
			} else if !strings.HasSuffix(out, tc.want) {
				t.Errorf("output %q, want it to end with %q", out, tc.want)
			}
			if strings.Contains(out, "Secret-1234567") {
				t.Error("the password reached the output")
			}
			if got := fmt.Sprint(*steps); got != tc.wantSteps {
				t.Errorf("steps %s, want %s", got, tc.wantSteps)
			}
		})
	}
}

func TestDeployHyperVBadInput(t *testing.T) {
	t.Parallel()
	base := hypervArgs(t)
	without := func(flag string) []string { return withoutFlag(base, flag) }
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no vhdx", without("--vhdx"), "--vhdx and --name are required"},
		{"bad prop", append(without("--prop"), "--prop", "ksmg.admin.password"), "expected key=value"},
		{"bad disk size", append(without("--prop"), "--disk-size", "10T"), "--disk-size"},
		{"bad name", append(without("--name"), "--name", "a'b"), "must not contain"},
		{"share not UNC", append(without("--share"), "--share", `D:\x`), "want a UNC folder"},
		{"no path", without("--path"), `path "": want the host's local folder`},
		{"http basic", append(base, "--http"), "needs winrm.ntlm"},
		{"foreign VM", base, "not deployed by ksmg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, _ := fakeHyperV(t, `{"id":"5c4d2a1e-0b7f-4e42-9c1d-6a8b3f0e2d71","name":"ksmg-1","notes":"","state":"Running"}`)
			out, err := runHyperV(t, a, append(tc.args, "--plan")...)
			if exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v (exit %d), want exit 2 with %q\n%s", err, exitCode(err), tc.want, out)
			}
		})
	}
}
