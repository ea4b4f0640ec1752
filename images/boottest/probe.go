package boottest

import (
	"fmt"
	"strings"
	"time"
)

// ProbePrefix starts every line a probe script prints on the console.
const ProbePrefix = "KSMG-PROBE "

// Probe returns the credentials that make the booted appliance run script
// (POSIX sh) as root once startup reached multi-user.target (after the
// gateway and sshd started), ordered before the console status line: Run
// returns only after the probe finished. Each line the script prints goes
// to the serial console prefixed with ProbePrefix; ProbeLines reads them.
//
// This is how a test (or make audit) looks at the running appliance with
// root's eyes without any way in being part of the image: systemd's debug
// generator turns the systemd.extra-unit.* and systemd.unit-dropin.*
// credentials (SMBIOS type 11, set by whoever runs the hypervisor, which can
// read the whole disk anyway) into a unit for this boot only.
//
// name must not start with "ksmg-": the appliance's own units do, and
// checks that go over them (e.g. their exposure) must not see the probe.
func Probe(name, script string, timeout time.Duration) map[string]string {
	unit := name + ".service"
	cred := name + ".sh"
	return map[string]string{
		cred: script,
		"systemd.extra-unit." + unit: fmt.Sprintf(`[Unit]
Description=%s (a test probe for this boot only, passed as a credential)
After=multi-user.target ksmg-gatewayd.service ssh.service
Before=ksmg-console-status.service

[Service]
Type=oneshot
ImportCredential=%s
ExecStart=/bin/sh -c 'sh "$CREDENTIALS_DIRECTORY/%s" 2>&1 | sed -u "s/^/%s/"'
TimeoutStartSec=%d
StandardOutput=journal+console
StandardError=journal+console
`, name, cred, cred, ProbePrefix, int(timeout.Seconds())),
		"systemd.unit-dropin.multi-user.target~" + name: "[Unit]\nWants=" + unit + "\n",
	}
}

// ProbeLines returns the probe's output lines (without the prefix) from a
// serial console log, in order.
func ProbeLines(serial string) []string {
	var out []string
	for _, l := range strings.Split(serial, "\n") {
		l = strings.TrimRight(l, "\r")
		if i := strings.Index(l, ProbePrefix); i >= 0 {
			out = append(out, l[i+len(ProbePrefix):])
		}
	}
	return out
}

// ProbeValues parses "key=value" probe lines (the value runs to the end of
// the line); later lines win.
func ProbeValues(serial string) map[string]string {
	m := map[string]string{}
	for _, l := range ProbeLines(serial) {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.ContainsAny(k, " \t") {
			m[k] = v
		}
	}
	return m
}
