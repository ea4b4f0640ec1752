package units

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ksmg-appliance/ksmg/firstboot/apply"
	"github.com/ksmg-appliance/ksmg/internal/unitcheck"
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
		// Setup that needs a person starts the wizard on every console.
		// The wizard and text beyond ASCII wait for the console's font
		// and keymap, an unattended first boot in English does not.
		"ExecStart=" + BinaryPath + " --console-on-stdin --hostname-by-unit --gateway-by-unit --wizard-units=" + strings.Join(Consoles, ",") + " --console-units=console-setup.service,keyboard-setup.service\n",
		"ImportCredential=ksmg.*\n",
		"TTYPath=/dev/%I\n",
		// Seen in the booted image: tty-force needs CAP_SYS_ADMIN (208/STDIN).
		"StandardInput=tty\n",
		"Before=shutdown.target getty@%i.service serial-getty@%i.service ksmg-gatewayd.service\n",
		// Without default dependencies, still after what it needs: its
		// AppArmor profile, the audit rules, the file systems (not the
		// console's set-up: --console-units).
		"DefaultDependencies=no\n",
		"After=local-fs.target systemd-tmpfiles-setup.service apparmor.service audit-rules.service systemd-sysusers.service hv-kvp-daemon.service\n",
		"Conflicts=shutdown.target\n",
		"Type=oneshot\n",
		"Restart=on-failure\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	// The running host name is set by apply.HostnameUnit, which the
	// gateway does not wait for; an ExecStartPost= here held it 1.4 s.
	if strings.Contains(text, "\nExecStartPost=") {
		t.Error("unit has an ExecStartPost=: the gateway, ordered after the unit, waits for it")
	}
	for _, f := range Install {
		if _, err := fs.Stat(Files(), f.Src); err != nil || !(strings.HasPrefix(f.Dst, "/usr/lib/systemd/system/") || f.Dst == SudoersPath) {
			t.Errorf("install entry %+v: %v", f, err)
		}
	}
	for _, e := range Consoles {
		if !strings.HasPrefix(e, "ksmg-firstboot@") || !strings.HasSuffix(e, ".service") {
			t.Errorf("console entry %q is not an instance of the template", e)
		}
	}
	// The boot starts the VM console's instance only; the others start
	// when it finds that setup needs a person.
	if strings.Join(Enable, " ") != "ksmg-firstboot@tty1.service" {
		t.Errorf("enabled instances %v, want the VM console's only", Enable)
	}
}

// TestSerialGettyWaitsForSetup: the boot does not start the serial
// console's instance, whose ordering held the serial login until setup
// was done; its drop-in orders the serial getty after the instance the
// boot does start.
func TestSerialGettyWaitsForSetup(t *testing.T) {
	var found bool
	for _, f := range Install {
		if !strings.HasPrefix(f.Dst, "/usr/lib/systemd/system/serial-getty@") {
			continue
		}
		found = true
		b, err := fs.ReadFile(Files(), f.Src)
		if err != nil {
			t.Fatal(err)
		}
		if want := "[Unit]\nAfter=" + strings.Join(Enable, " ") + "\n"; !strings.HasSuffix(string(b), want) || f.Dst != "/usr/lib/systemd/system/serial-getty@ttyS0.service.d/ksmg-after-firstboot.conf" {
			t.Errorf("%s:\n%s\nwant it to end in %q", f.Dst, b, want)
		}
	}
	if !found {
		t.Error("no drop-in orders the serial console's getty after first boot")
	}
}

// TestUnitExposure: first boot must configure the system, but keeps no
// more than that (see the unit's comments): systemd-analyze security
// rates it at most 2.1 (2.0 + 0.1 for the writable /home: see the unit),
// against 9.6 for the same unit without its sandbox
// (the control, which must fail the same threshold).
func TestUnitExposure(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	level, out, err := unitcheck.Exposure(write("ksmg-firstboot@tty1.service", unitText(t)), 2.1)
	t.Logf("ksmg-firstboot@tty1.service: exposure %.1f", level)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var bare strings.Builder
	sandbox := false
	for _, l := range strings.Split(unitText(t), "\n") {
		if strings.HasPrefix(l, "# --- Sandbox ---") {
			sandbox = true
		}
		if strings.HasPrefix(l, "[Install]") {
			sandbox = false
		}
		if !sandbox {
			bare.WriteString(l + "\n")
		}
	}
	if level, _, err := unitcheck.Exposure(write("bare@tty1.service", bare.String()), 2.1); err == nil {
		t.Fatalf("the unit without its sandbox passed with exposure %.1f", level)
	} else {
		t.Logf("control without the sandbox: exposure %.1f, rejected", level)
	}
}

// TestUnitKeepsOnlyWhatFirstBootNeeds pins the permissions the unit
// keeps, so that a new one is a reviewed decision: root, CAP_CHOWN and
// CAP_DAC_OVERRIDE, no IP, writes only where Apply writes, the security
// policy read-only even there.
func TestUnitKeepsOnlyWhatFirstBootNeeds(t *testing.T) {
	text := unitText(t)
	for _, want := range []string{
		"CapabilityBoundingSet=CAP_CHOWN CAP_DAC_OVERRIDE\n",
		"NoNewPrivileges=yes\n",
		"ProtectSystem=strict\n",
		"IPAddressDeny=any\n",
		"PrivateDevices=yes\n",
		"DeviceAllow=/dev/%I rw\n",
		"ProtectHostname=yes\n",
		"StateDirectory=ksmg\n",
		"ReadOnlyPaths=-/etc/sudoers -/etc/sudoers.d -/etc/pam.d",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "After=") && strings.Contains(l, "systemd-networkd") {
			t.Errorf("first boot waits for networkd again (%s): the NIC names are all it needs", l)
		}
	}
	// Everything Apply writes lies under a ReadWritePaths= entry or the
	// state directory, and not under a more specific ReadOnlyPaths= entry
	// (systemd lets the longest path win).
	writable := map[string]bool{"/var/lib/ksmg": true}
	for _, l := range strings.Split(text, "\n") {
		for key, w := range map[string]bool{"ReadWritePaths=": true, "ReadOnlyPaths=": false} {
			if v, ok := strings.CutPrefix(l, key); ok {
				for _, p := range strings.Fields(v) {
					writable[strings.TrimPrefix(p, "-")] = w
				}
			}
		}
	}
	for _, p := range []string{apply.StampPath, apply.NodeConfigPath, apply.SSHDConfigPath, apply.AuthorizedKeys, apply.HostKeyPath,
		apply.SSHWantsLink, apply.SSHFirewallPath, apply.NTPPath, apply.IssuePath, apply.ImportantLogPath,
		apply.LocalePath, apply.DefaultLocalePath, apply.KeyboardPath,
		"/etc/shadow", "/home/admin", "/run/lock/ksmg-firstboot.lock"} {
		best, ok := "", false
		for d, w := range writable {
			if (p == d || strings.HasPrefix(p, d+"/")) && len(d) > len(best) {
				best, ok = d, w
			}
		}
		if !ok {
			t.Errorf("Apply writes %s, which the unit keeps read-only (longest entry: %q)", p, best)
		}
	}
}

// TestSudoers checks the administrator's sudoers drop-in with sudo's own
// tools: visudo parses it, and cvtsudoers' JSON form of the parsed policy
// grants exactly the product's commands to group admin, as root, with a
// password, the log readers without exec.
//
//nolint:gocyclo // one table of what the sudoers drop-in admits and refuses, checked with visudo and cvtsudoers in turn
func TestSudoers(t *testing.T) {
	for _, tool := range []string{"visudo", "cvtsudoers"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (Debian package sudo, in ci/packages.txt): %v", tool, err)
		}
	}
	data, err := fs.ReadFile(Files(), "ksmg-admin.sudoers")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ksmg-admin")
	if err := os.WriteFile(file, data, 0o440); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("visudo", "--check", "--strict", "--file", file).CombinedOutput(); err != nil {
		t.Fatalf("visudo rejects the drop-in: %v\n%s", err, out)
	}
	out, err := exec.Command("cvtsudoers", "-f", "json", file).Output()
	if err != nil {
		t.Fatalf("cvtsudoers: %v", err)
	}
	var policy struct {
		Defaults []struct {
			Binding []map[string]string
			Options []map[string]any
		}
		Command_Aliases map[string][]map[string]string
		User_Specs      []struct {
			User_List  []map[string]string
			Cmnd_Specs []struct {
				Runasusers []map[string]string
				Options    []map[string]any
				Commands   []map[string]string
			}
		}
	}
	if err := json.Unmarshal(out, &policy); err != nil {
		t.Fatalf("cvtsudoers JSON: %v\n%s", err, out)
	}
	if len(policy.User_Specs) != 1 || len(policy.User_Specs[0].User_List) != 1 || policy.User_Specs[0].User_List[0]["usergroup"] != "admin" {
		t.Fatalf("want one rule, for group admin: %s", out)
	}
	var granted []string
	for _, cs := range policy.User_Specs[0].Cmnd_Specs {
		if len(cs.Runasusers) != 1 || cs.Runasusers[0]["username"] != "root" {
			t.Errorf("run as %v, want root only", cs.Runasusers)
		}
		if len(cs.Options) != 0 {
			t.Errorf("rule options %v: no NOPASSWD, no !authenticate, nothing", cs.Options)
		}
		for _, c := range cs.Commands {
			for _, x := range policy.Command_Aliases[c["cmndalias"]] {
				granted = append(granted, x["command"])
			}
			if c["command"] != "" {
				granted = append(granted, c["command"])
			}
		}
	}
	want := []string{
		BinaryPath + " --reconfigure",
		"/usr/bin/systemctl restart ksmg-gatewayd.service",
		"/usr/bin/systemctl reload ksmg-gatewayd.service",
		`/usr/bin/journalctl --no-pager -u ksmg-\*`,
		`/usr/bin/journalctl --no-pager -f -u ksmg-\*`,
		"/usr/bin/cat /var/log/ksmg-important",
		"/usr/bin/cat /var/log/ksmg-messages",
		"/usr/bin/tail -F /var/log/ksmg-important",
		"/usr/bin/tail -F /var/log/ksmg-messages",
	}
	if strings.Join(granted, "\n") != strings.Join(want, "\n") {
		t.Errorf("granted:\n%s\nwant exactly:\n%s", strings.Join(granted, "\n"), strings.Join(want, "\n"))
	}
	for _, g := range granted {
		// A bare * in a sudoers argument matches anything, spaces included.
		if strings.Contains(strings.ReplaceAll(g, `\*`, ""), "*") || strings.Contains(g, "ALL") {
			t.Errorf("%q has a wildcard", g)
		}
	}
	noexec := false
	umask := false
	for _, d := range policy.Defaults {
		// Global defaults (no binding) count as much as bound ones.
		for _, o := range d.Options {
			for _, b := range d.Binding {
				if b["cmndalias"] == "KSMG_LOGS" && o["noexec"] == true {
					noexec = true
				}
			}
			if len(d.Binding) == 0 && o["umask"] == "0077" {
				umask = true
			}
			for _, bad := range []string{"authenticate", "env_keep", "setenv", "!env_reset"} {
				if _, ok := o[bad]; ok {
					t.Errorf("default %v weakens the policy", o)
				}
			}
		}
	}
	if !umask {
		t.Error("no global umask=0077: files a sudo command creates are readable by others")
	}
	if !noexec {
		t.Error("the log readers may exec other programs (pager shell escapes)")
	}
	// The shipped mode: sudo ignores a drop-in group or others may write.
	for _, f := range Install {
		if f.Dst == SudoersPath && f.Mode != 0o440 {
			t.Errorf("%s mode %o, want 0440", SudoersPath, f.Mode)
		}
	}
}

// TestSerialInstanceTerminalSize: the serial console's instance gets a
// fixed terminal size, so systemd does not ask the terminal for one and
// wait 333 ms per command for a reply a serial port nobody listens on
// never sends; the VM console's instance does not (a VT knows its size,
// and setting one would resize the console).
func TestSerialInstanceTerminalSize(t *testing.T) {
	var dropIns []string
	for _, f := range Install {
		if strings.HasPrefix(f.Dst, "/usr/lib/systemd/system/ksmg-firstboot@") && strings.Contains(f.Dst, ".service.d/") {
			dropIns = append(dropIns, f.Dst)
			b, err := fs.ReadFile(Files(), f.Src)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"[Service]\n", "TTYRows=24\n", "TTYColumns=80\n"} {
				if !strings.Contains(string(b), want) {
					t.Errorf("%s lacks %q", f.Dst, want)
				}
			}
			// The drop-in's keys are valid where the unit's are.
			_, body, _ := strings.Cut(string(b), "[Service]\n")
			if c := verify(t, unitText(t)+"\n[Service]\n"+body); len(c) != 0 {
				t.Errorf("unit with %s: systemd-analyze verify complains:\n%s", f.Dst, strings.Join(c, "\n"))
			}
		}
	}
	want := []string{"/usr/lib/systemd/system/ksmg-firstboot@ttyS0.service.d/ksmg-serial.conf"}
	if strings.Join(dropIns, " ") != strings.Join(want, " ") {
		t.Errorf("first-boot drop-ins %v, want %v", dropIns, want)
	}
	for _, e := range Consoles {
		serial := strings.HasPrefix(e, "ksmg-firstboot@ttyS")
		has := false
		for _, d := range dropIns {
			has = has || strings.HasPrefix(d, "/usr/lib/systemd/system/"+e+".d/")
		}
		if serial != has {
			t.Errorf("%s: terminal-size drop-in %v, want %v", e, has, serial)
		}
	}
}

// TestHostnameUnit: the unit first boot queues to set the running host
// name (apply.HostnameUnit) is installed under that name, verifies, stays
// within the exposure every ksmg unit keeps, and sets the name from
// /etc/hostname with the one capability that takes.
func TestHostnameUnit(t *testing.T) {
	var installed bool
	for _, f := range Install {
		installed = installed || f.Dst == "/usr/lib/systemd/system/"+apply.HostnameUnit
	}
	if !installed {
		t.Fatalf("%s is not installed (Install: %+v)", apply.HostnameUnit, Install)
	}
	b, err := fs.ReadFile(Files(), apply.HostnameUnit)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, want := range []string{
		"ExecStart=/usr/bin/hostname --file /etc/hostname\n",
		"CapabilityBoundingSet=CAP_SYS_ADMIN\n",
		"SystemCallFilter=@system-service sethostname\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("%s lacks %q", apply.HostnameUnit, want)
		}
	}
	// Started by first boot only: at later boots systemd sets the name.
	if strings.Contains(text, "[Install]") || strings.Contains(text, "ProtectHostname=yes") {
		t.Errorf("%s has an [Install] section or a private host name", apply.HostnameUnit)
	}
	dir := t.TempDir()
	unit := filepath.Join(dir, apply.HostnameUnit)
	if err := os.WriteFile(unit, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("systemd-analyze", "verify", "--man=no", unit).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	level, out, err := unitcheck.Exposure(unit, 2.0)
	t.Logf("%s: exposure %.1f", apply.HostnameUnit, level)
	if err != nil {
		t.Errorf("%v\n%s", err, out)
	}
}
