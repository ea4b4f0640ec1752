package scvmm

// The driver through the real WinRM client (pwsh.NewWinRM,
// masterzen/winrm) against pwshtest's WS-Man server
// (github.com/dylanmei/winrmtest); no SCVMM or Windows host can run here,
// so behind the protocol fakeVMM answers the scripts.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/pwsh"
	"github.com/ksmg-appliance/ksmg/deploy/pwsh/pwshtest"
	"github.com/ksmg-appliance/ksmg/firstboot/answers"
)

// winrmRig serves fakeVMM over WinRM; override, when set, answers a
// script instead of the fake.
func winrmRig(t *testing.T, override func(script string) (pwshtest.Reply, bool)) (*rig, *pwshtest.Host) {
	var host *pwshtest.Host
	rg := newRig(t, func(f *fakeVMM) pwsh.Runner {
		host = pwshtest.NewHostInput(func(script string, in pwsh.Input) pwshtest.Reply {
			if override != nil {
				if r, ok := override(script); ok {
					return r
				}
			}
			out, code := f.handle(script, in)
			return pwshtest.Reply{Stdout: out, ExitCode: code}
		})
		t.Cleanup(host.Close)
		run, err := pwsh.NewWinRM(host.Config)
		if err != nil {
			t.Fatal(err)
		}
		return run
	})
	return rg, host
}

func scriptSteps(scripts []string) []string {
	var steps []string
	for _, s := range scripts {
		if m := stepRe.FindStringSubmatch(s); m != nil {
			steps = append(steps, m[1])
		} else {
			steps = append(steps, "?")
		}
	}
	return steps
}

func TestWinRMDeployAndRerun(t *testing.T) {
	t.Parallel()
	rg, host := winrmRig(t, nil)
	img := testVHDX(t)
	rg.f.ipAfter = 1
	rg.f.doneAfter = 1
	n := testNode(img, "ksmg-1")
	// A full unattended answer set: the KVP script is then longer than one
	// command line and travels in chunks.
	props, _, err := answers.Unattended("ksmg-1.example.com")
	if err != nil {
		t.Fatal(err)
	}
	// An RSA-4096 key is what pushes it over.
	props["ksmg.ssh.enabled"] = "true"
	props["ksmg.ssh.authorized_key"] = rsaKey(t, 4096)
	n.Properties = props

	res, err := rg.d.Deploy(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	if got := scriptSteps(host.Scripts()); !slices.Equal(got, firstDeploy) {
		t.Errorf("scripts over WinRM:\n got  %v\n want %v", got, firstDeploy)
	}
	chunked := false
	for _, c := range host.Commands() {
		chunked = chunked || strings.HasPrefix(c, `>>"%TEMP%\`)
	}
	if !chunked {
		t.Errorf("the KVP script of a full answer set went in one command line; the chunked path was not exercised")
	}
	if left := host.TempFiles(); len(left) != 0 {
		t.Errorf("script files left on the host: %v", left)
	}
	// No secret in any script text or command line: only on standard
	// input, where the fake host found them (the KVP items were set).
	for k, v := range props {
		if !answers.IsSecret(k) || v == "" {
			continue
		}
		for _, s := range append(host.Scripts(), host.Commands()...) {
			if strings.Contains(s, v) {
				t.Errorf("the value of %s is in a script or command line", k)
			}
		}
	}
	for _, s := range append(host.Scripts(), host.Commands()...) {
		if strings.Contains(s, hostPassword) {
			t.Error("the host password is in a script or command line")
		}
	}
	vm := rg.f.vms[res.ID]
	for k, v := range props {
		if answers.IsSecret(k) {
			if _, left := vm.KVP[k]; left {
				t.Errorf("secret KVP item %s left in the VM's settings after first boot signalled completion", k)
			}
		} else if vm.KVP[k] != v {
			t.Errorf("KVP %s = %q over WinRM, want %q", k, vm.KVP[k], v)
		}
	}
	if len(rg.f.removed) == 0 {
		t.Errorf("no secret KVP item was removed over WinRM")
	}
	if state(vm.Desc) != "complete" || res.IP != "192.0.2.10" {
		t.Errorf("VM %+v result %+v", vm, res)
	}

	before := len(host.Scripts())
	res2, err := rg.d.Deploy(context.Background(), n)
	if err != nil || res2.Action != deploy.ActionUnchanged || res2.ID != res.ID {
		t.Fatalf("re-run: %+v %v", res2, err)
	}
	if got := scriptSteps(host.Scripts()[before:]); !slices.Equal(got, []string{stepPlan}) {
		t.Errorf("re-run scripts %v", got)
	}
}

func TestWinRMFailures(t *testing.T) {
	t.Parallel()
	broken := true
	rg, host := winrmRig(t, func(script string) (pwshtest.Reply, bool) {
		// An error the script does not catch itself: Windows PowerShell's
		// text on stderr, exit 1 (what pwsh.Wrap makes of it).
		if broken && strings.Contains(script, "step="+stepConfigure+"\n") {
			return pwshtest.Reply{Stderr: "Set-SCVirtualNetworkAdapter : VMM is unable to complete the request. (Error ID: 2606)", ExitCode: 1}, true
		}
		return pwshtest.Reply{}, false
	})
	img := testVHDX(t)
	n := testNode(img, "ksmg-1")
	ctx := context.Background()

	_, err := rg.d.Deploy(ctx, n)
	var se *pwsh.ScriptError
	if !errors.As(err, &se) || se.Step != "configure VM ksmg-1" || !strings.Contains(err.Error(), "Error ID: 2606") {
		t.Fatalf("err = %v, want the script's stderr with its step", err)
	}
	if vms := rg.f.byName("ksmg-1"); len(vms) != 1 || state(vms[0].Desc) == "complete" {
		t.Fatalf("after the failure: %+v", vms)
	}

	// A failing SCVMM job: the job's message and step.
	broken = false
	rg.f.failJob[stepStart] = &jobFailure{Step: "Start virtual machine", Problem: "Secure Boot template MicrosoftUEFICertificateAuthority is not available on hv1.example.com."}
	_, err = rg.d.Deploy(ctx, n)
	var je *JobError
	if !errors.As(err, &je) || je.Step != "Start virtual machine" || !strings.Contains(err.Error(), "start VM ksmg-1") || !strings.Contains(err.Error(), "MicrosoftUEFICertificateAuthority is not available") {
		t.Fatalf("err = %v, want the start job's failure", err)
	}

	// Nothing left that a re-run cannot fix.
	before := len(host.Scripts())
	res, err := rg.d.Deploy(ctx, n)
	if err != nil || res.Action != deploy.ActionReplace {
		t.Fatalf("re-run: %+v %v", res, err)
	}
	got := scriptSteps(host.Scripts()[before:])
	if iRemove, iCreate := slices.Index(got, stepRemove), slices.Index(got, stepCreate); !slices.Equal(got[:2], []string{stepPlan, stepStop}) || iRemove < 0 || iRemove > iCreate {
		t.Errorf("re-run steps %v: want the leftover stopped and removed before the create", got)
	}
	if vms := rg.f.byName("ksmg-1"); len(vms) != 1 || state(vms[0].Desc) != "complete" {
		t.Errorf("after the re-run: %+v", vms)
	}
	if len(rg.cp.Copies()) != 1 {
		t.Errorf("copies %v", rg.cp.Copies())
	}
}

// rsaKey is an authorized_keys line of a well-formed RSA public key of
// bits bits (random modulus: only its shape is checked).
func rsaKey(t *testing.T, bits int) string {
	t.Helper()
	b := make([]byte, bits/8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[0] |= 0x80
	pk, err := ssh.NewPublicKey(&rsa.PublicKey{N: new(big.Int).SetBytes(b), E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk))) + " admin@example.com"
}
