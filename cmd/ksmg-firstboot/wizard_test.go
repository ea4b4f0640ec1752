package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/firstboot/apply"
	"github.com/ksmg-appliance/ksmg/firstboot/crypt"
)

// TestWizardWalk drives the full-screen wizard in a real 80x24 terminal
// through every step, including a refused EULA, a weak password, a wrong
// confirmation, a bad join token and a step Back, then checks the files.
func TestWizardWalk(t *testing.T) {
	root := scratchRoot(t)
	tt := startTerm(t, []string{"TERM=xterm-256color"}, append(hermetic(t, root), "--no-unattended")...)

	tt.focus("Language")
	tt.keys("Down", "Enter") // Čeština

	tt.focus("Do you accept the license agreement?")
	tt.keys("Enter") // refusing is not possible
	tt.waitFor("the license agreement must be accepted to continue")
	tt.keys("y")

	tt.focus("Participate in Kaspersky Security Network?")
	tt.keys("Enter") // default: do not join

	tt.fill("Administrator password", "short")
	tt.waitFor("password must be at least 12 characters")
	tt.fill("Administrator password", "Correct-Horse-9")
	tt.fill("Confirm password", "Correct-Horse-8")
	tt.waitFor("the passwords do not match")
	tt.fill("Confirm password", "Correct-Horse-9")

	if s := tt.focus("Host name"); strings.Contains(s, "Correct-Horse") {
		t.Fatal("password echoed on screen")
	}
	tt.fill("Host name", "gw1.example.com")

	tt.focus("Network: interface eth0")
	tt.keys("Down", "Enter") // static
	tt.fill("eth0: IPv4 address/prefix", "192.0.2.10/24")
	tt.fill("eth0: IPv4 gateway", "198.51.100.1")
	tt.waitFor("is not inside 192.0.2.0/24") // gateway outside the prefix
	tt.fill("eth0: IPv4 gateway", "192.0.2.1")
	tt.fill("eth0: IPv6 address/prefix", "2001:db8::10/64")
	tt.fill("eth0: IPv6 gateway", "")
	tt.fill("eth0: DNS servers", "192.0.2.53, 192.0.2.54")
	tt.fill("eth0: search domain", "example.com")

	tt.fill("NTP servers", "ntp1.example.com")
	tt.fill("Time zone", "Mars/Olympus")
	tt.waitFor("is not in the tz database")
	tt.fill("Time zone", "Europe/Prague")

	tt.focus("Node role")
	tt.keys("BTab") // Back: the time zone again, value kept
	if s := tt.focus("Time zone"); !strings.Contains(s, "Europe/Prague") {
		t.Fatalf("value lost after Back:\n%s", s)
	}
	tt.keys("Enter") // Next
	tt.focus("Node role")
	tt.keys("Down", "Enter") // Secondary
	tt.fill("Control node address", "ctl.example.com:8443")
	tt.fill("Join token", "short")
	tt.waitFor("join token must be 16-512 characters")
	tt.fill("Join token", "0123456789abcdef0123")

	tt.focus("Enable SSH access for the administrator?")
	tt.keys("y")
	tt.fill("Authorized public key", testKey)
	tt.focus("Allow this key to log in as root too?")
	tt.keys("Enter") // default: no root login

	// huh renders the review note's DescriptionFunc asynchronously, so the
	// confirm field can show a frame before the summary: wait for each line.
	review := tt.waitFor("Apply these settings?")
	for _, want := range []string{"Language cs", "KSN: off", "Host name: gw1.example.com", "admin password: set",
		"eth0: 192.0.2.10/24 gw 192.0.2.1  2001:db8::10/64 gw -", "time zone: Europe/Prague",
		"Role: Secondary of ctl.example.com:8443", "SSH: on", "root login off"} {
		review = tt.waitFor(want)
	}
	for _, line := range strings.Split(review, "\n") {
		if len([]rune(line)) > 80 {
			t.Errorf("line wider than 80 columns: %q", line)
		}
	}
	if strings.Contains(review, "0123456789abcdef0123") || strings.Contains(review, "Correct-Horse") {
		t.Fatal("review shows a secret")
	}
	tt.keys("y")
	done := tt.waitFor("EXIT=")
	if !strings.Contains(done, "EXIT=0") || !strings.Contains(done, "SSH host key fingerprints") || !strings.Contains(done, "ED25519 SHA256:") {
		t.Fatalf("apply did not finish cleanly:\n%s", done)
	}

	for p, want := range map[string]string{
		"/etc/hostname": "gw1.example.com\n",
		"/etc/timezone": "Europe/Prague\n",
		"/etc/systemd/network/50-ksmg-eth0.network": "Address=192.0.2.10/24\nGateway=192.0.2.1\nAddress=2001:db8::10/64\nDNS=192.0.2.53\nDNS=192.0.2.54\nDomains=example.com\n",
		apply.NTPPath:        "NTP=ntp1.example.com\n",
		apply.NodeConfigPath: "role: secondary\ncontrol_address: ctl.example.com:8443\njoin_token: 0123456789abcdef0123\nlanguage: cs\n",
		apply.AuthorizedKeys: testKey + "\n",
	} {
		if got := readFile(t, root, p); !strings.Contains(got, want) {
			t.Errorf("%s:\n%s\nwant:\n%s", p, got, want)
		}
	}
	if got := readFile(t, root, apply.NodeConfigPath); !strings.Contains(got, "ksn:\n    enabled: false\n    source: control-node\n") {
		t.Errorf("KSN must follow the control node on a Secondary node:\n%s", got)
	}
	var hash string
	for _, l := range strings.Split(readFile(t, root, "/etc/shadow"), "\n") {
		if f := strings.Split(l, ":"); f[0] == apply.AdminUser {
			hash = f[1]
		}
	}
	if !crypt.Verify("Correct-Horse-9", hash) {
		t.Fatalf("admin password hash %q does not verify", hash)
	}
	if !apply.Done(root) {
		t.Fatal("completion stamp missing")
	}
	if _, err := os.Stat(filepath.Join(root, apply.SSHWantsLink)); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

// TestWizardAccessible runs the line-prompt mode a serial console gets
// (TERM=dumb), also in a real terminal since passwords are read from a tty.
func TestWizardAccessible(t *testing.T) {
	root := scratchRoot(t)
	tt := startTerm(t, []string{"TERM=dumb"}, append(hermetic(t, root), "--no-unattended")...)
	seen := map[string]int{}
	// step answers the next occurrence of prompt in the scrollback.
	step := func(prompt, text string) {
		t.Helper()
		seen[prompt]++
		deadline := time.Now().Add(20 * time.Second)
		for strings.Count(tt.history(), prompt) < seen[prompt] {
			if time.Now().After(deadline) {
				t.Fatalf("prompt %q #%d never came:\n%s", prompt, seen[prompt], tt.history())
			}
			time.Sleep(50 * time.Millisecond)
		}
		if text != "" {
			tt.typeText(text)
		}
		tt.keys("Enter")
	}
	step("Enter a number between 1 and 3", "1")
	step("Do you accept the license agreement?", "n")
	step("Do you accept the license agreement?", "y")
	step("Participate in Kaspersky Security Network?", "")
	step("Administrator password", "Correct-Horse-9")
	step("Confirm password", "Correct-Horse-9")
	step("Host name", "gw2")
	step("Enter a number between 1 and 2", "1") // DHCP
	step("NTP servers", "")
	step("Time zone", "UTC")
	step("Enter a number between 1 and 2", "1") // Control node
	step("Enable SSH access", "")
	step("Apply these settings?", "y")
	done := tt.waitFor("EXIT=")
	if !strings.Contains(done, "EXIT=0") {
		t.Fatalf("accessible run failed:\n%s", done)
	}
	if h := tt.history(); !strings.Contains(h, "Error: the license agreement must be accepted to continue") || strings.Contains(h, "Correct-Horse-9") {
		t.Fatalf("EULA refusal not reported, or password echoed:\n%s", h)
	}
	if got := readFile(t, root, "/etc/systemd/network/50-ksmg-eth0.network"); !strings.Contains(got, "DHCP=yes") {
		t.Fatalf("network file:\n%s", got)
	}
	if got := readFile(t, root, apply.NodeConfigPath); !strings.Contains(got, "role: control") || !strings.Contains(got, "enabled: false") {
		t.Fatalf("node config:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(root, apply.AuthorizedKeys)); !os.IsNotExist(err) {
		t.Fatal("SSH key written although SSH stays off")
	}
}

// TestTwoConsoles: the wizard runs on tty1 and the serial port at once;
// when one console applies, the other's wizard ends by itself.
func TestTwoConsoles(t *testing.T) {
	root := scratchRoot(t)
	args := append(hermetic(t, root), "--no-unattended", "--poll", "200ms")
	idle := startTerm(t, []string{"TERM=xterm-256color"}, args...)
	idle.focus("Language")
	kvArgs := append(hermetic(t, root), sourceSetups["seed"](t, completeKV("gw-other"))...)
	if out, err := runNoTTY(t, kvArgs...); err != nil {
		t.Fatalf("the other console's apply failed: %v\n%s", err, out)
	}
	s := idle.waitFor("EXIT=")
	if !strings.Contains(s, "Setup was completed on another console.") || !strings.Contains(s, "EXIT=0") {
		t.Fatalf("idle console did not stand down:\n%s", s)
	}
	if got := readFile(t, root, "/etc/hostname"); got != "gw-other\n" {
		t.Fatalf("hostname %q", got)
	}
}
