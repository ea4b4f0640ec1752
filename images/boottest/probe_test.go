package boottest

import (
	"strings"
	"testing"
	"time"
)

func TestProbeCredentials(t *testing.T) {
	t.Parallel()
	creds := Probe("test-probe", "echo a=1\n", 90*time.Second)
	unit := creds["systemd.extra-unit.test-probe.service"]
	for _, want := range []string{"ImportCredential=test-probe.sh", `sh "$CREDENTIALS_DIRECTORY/test-probe.sh"`, "Before=ksmg-console-status.service", "TimeoutStartSec=90", "Type=oneshot"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	if creds["systemd.unit-dropin.multi-user.target~test-probe"] != "[Unit]\nWants=test-probe.service\n" || creds["test-probe.sh"] != "echo a=1\n" {
		t.Errorf("credentials: %v", creds)
	}
	// Every credential passes QEMU's command line (names without '=' or ',').
	if _, err := qemuArgs(Options{Credentials: creds}, "raw", "vars", 0, 0); err != nil {
		t.Fatal(err)
	}
}

func TestProbeValues(t *testing.T) {
	t.Parallel()
	serial := "[   40.1] ksmg-probe.sh[512]: KSMG-PROBE firewall=active\r\n" +
		"noise\nKSMG-PROBE listen=tcp:25,tcp:22\n[ 41.0] x[1]: KSMG-PROBE key with space=x\nKSMG-PROBE firewall=inactive\n"
	got := ProbeValues(serial)
	if len(got) != 2 || got["firewall"] != "inactive" || got["listen"] != "tcp:25,tcp:22" {
		t.Errorf("values: %v", got)
	}
	if l := ProbeLines(serial); len(l) != 4 || l[0] != "firewall=active" {
		t.Errorf("lines: %q", l)
	}
}
