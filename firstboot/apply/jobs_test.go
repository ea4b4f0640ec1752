package apply

import (
	"slices"
	"testing"
)

// TestBusJob: only the --no-block jobs activate queues go over the bus;
// everything else (waiting for a job, other verbs, options among the
// units) is left to systemctl.
func TestBusJob(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		verb  string
		units []string
	}{
		{[]string{"--no-ask-password", "--no-block", "start", "ksmg-gatewayd.service", "ssh.service"}, "start", []string{"ksmg-gatewayd.service", "ssh.service"}},
		{[]string{"--no-ask-password", "--no-block", "try-reload-or-restart", "systemd-networkd.service"}, "try-reload-or-restart", []string{"systemd-networkd.service"}},
		{[]string{"--no-ask-password", "--no-block", "stop", "ssh.service"}, "stop", []string{"ssh.service"}},
		{[]string{"--no-ask-password", "--no-block", "restart", "console-setup.service"}, "restart", []string{"console-setup.service"}},
		{[]string{"--no-ask-password", "--no-block", "try-restart", "systemd-timesyncd.service"}, "try-restart", []string{"systemd-timesyncd.service"}},
		// Not for the bus:
		{[]string{"--no-ask-password", "start", "ksmg-gatewayd.service"}, "", nil},
		{[]string{"--no-ask-password", "--no-block", "daemon-reload"}, "", nil},
		{[]string{"--no-ask-password", "--no-block", "enable", "ssh.service"}, "", nil},
		{[]string{"--no-ask-password", "--no-block", "start", "--now", "ssh.service"}, "", nil},
		{[]string{"--no-ask-password", "--no-block", "start"}, "", nil},
		{nil, "", nil},
	} {
		verb, units, ok := busJob(tc.args)
		if ok != (tc.verb != "") || verb != tc.verb || !slices.Equal(units, tc.units) {
			t.Errorf("busJob(%q) = %q %q %v, want %q %q", tc.args, verb, units, ok, tc.verb, tc.units)
		}
	}
}
