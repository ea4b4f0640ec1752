package units

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ksmg-appliance/ksmg/firstboot/apply"
)

// importCredentialWarning is the one complaint allowed from the host's
// systemd 252: ImportCredential= exists since systemd 254, and the
// appliance runs Debian 13's systemd 257.
const importCredentialWarning = "Unknown key 'ImportCredential' in section [Service], ignoring."

// verify runs systemd-analyze verify on the unit instance with ExecStart
// pointed at an existing binary (verify insists it exists on the host).
func verify(t *testing.T, text string) []string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "ksmg-firstboot")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	text = strings.ReplaceAll(text, BinaryPath, bin)
	unit := filepath.Join(dir, "ksmg-firstboot@tty1.service")
	if err := os.WriteFile(unit, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	var complaints []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && !strings.HasSuffix(l, importCredentialWarning) {
			complaints = append(complaints, l)
		}
	}
	return complaints
}

func unitText(t *testing.T) string {
	b, err := fs.ReadFile(Files(), "ksmg-firstboot@.service")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestUnitVerifies(t *testing.T) {
	if c := verify(t, unitText(t)); len(c) != 0 {
		t.Fatalf("systemd-analyze verify complains:\n%s", strings.Join(c, "\n"))
	}
	// Control: the check sees a broken unit.
	if c := verify(t, strings.Replace(unitText(t), "TTYReset=", "TTYRest=", 1)); len(c) == 0 {
		t.Fatal("a misspelt directive went unnoticed")
	}
}

func TestUnitContract(t *testing.T) {
	text := unitText(t)
	for _, want := range []string{
		"ConditionPathExists=!" + apply.StampPath + "\n",
		"ExecStart=" + BinaryPath + "\n",
		"ImportCredential=ksmg.*\n",
		"TTYPath=/dev/%I\n",
		"Before=getty@%i.service serial-getty@%i.service ksmg-gatewayd.service\n",
		"Type=oneshot\n",
		"Restart=on-failure\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	for _, f := range Install {
		if _, err := fs.Stat(Files(), f.Src); err != nil || !strings.HasPrefix(f.Dst, "/usr/lib/systemd/system/") {
			t.Errorf("install entry %+v: %v", f, err)
		}
	}
	for _, e := range Enable {
		if !strings.HasPrefix(e, "ksmg-firstboot@") || !strings.HasSuffix(e, ".service") {
			t.Errorf("enable entry %q is not an instance of the template", e)
		}
	}
}
