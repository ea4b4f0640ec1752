// Package harden is the appliance's OS hardening as provisioning steps on a
// provisioner.Target: the same steps harden the root file system in
// `ksmg build` (DirTarget) and a machine behind a Packer communicator
// (ksmg-harden). Each setting and the rules deliberately not followed are
// documented with their ANSSI-BP-028 and CIS references in
// images/HARDENING.md.
//
// The steps write the files in files/ (sysctl, module blacklist, nftables,
// AppArmor profiles, audit rules, sshd, PAM with faillock and pwquality,
// banners, rsyslog and logrotate for /var/log/secure, resolved, core dumps),
// edit a few keys of files other packages own (login.defs, auditd.conf),
// generate the audit rules for every set-uid program the target has, and
// set unit enablement. They need the packages the appliance spec lists
// (nftables, auditd, apparmor, libpam-pwquality, rsyslog) and say which is
// missing otherwise.
//
// Configuration-management tools (Ansible's hardening roles, the
// OpenSCAP-generated remediation scripts) were considered: they are shell
// or YAML run by another runtime, which the provisioner package rules out
// (see its documentation); the settings themselves follow those sources.
package harden

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/ksmg-appliance/ksmg/provisioner"
)

//go:embed files
var embedded embed.FS

// File is one file the hardening installs.
type File struct {
	Src          string // path inside Files()
	Dst          string // absolute path in the target
	Mode         fs.FileMode
	Owner, Group string // "" means root
}

// Files is the tree of embedded files, rooted at "files".
func Files() fs.FS {
	sub, err := fs.Sub(embedded, "files")
	if err != nil {
		panic(err) // embedded at build time
	}
	return sub
}

// Install lists every static file with its place, mode and owner. The
// firewall rule set is rendered from Options (see Firewall).
var Install = []File{
	{Src: "sysctl.conf", Dst: "/etc/sysctl.d/90-ksmg-hardening.conf", Mode: 0o644},
	{Src: "modprobe.conf", Dst: "/etc/modprobe.d/ksmg-hardening.conf", Mode: 0o644},
	{Src: "units/nftables-modules.conf", Dst: "/etc/systemd/system/nftables.service.d/ksmg-modules.conf", Mode: 0o644},
	{Src: "apparmor/usr.sbin.ksmg-gatewayd", Dst: "/etc/apparmor.d/usr.sbin.ksmg-gatewayd", Mode: 0o644},
	{Src: "apparmor/usr.sbin.ksmg-firstboot", Dst: "/etc/apparmor.d/usr.sbin.ksmg-firstboot", Mode: 0o644},
	{Src: "apparmor/kernel-features", Dst: AppArmorKernelFeatures, Mode: 0o644},
	{Src: "audit/50-ksmg.rules", Dst: "/etc/audit/rules.d/50-ksmg.rules", Mode: 0o640},
	{Src: "audit/99-ksmg-finalize.rules", Dst: "/etc/audit/rules.d/99-ksmg-finalize.rules", Mode: 0o640},
	{Src: "units/audit-rules-compiled.conf", Dst: "/etc/systemd/system/audit-rules.service.d/ksmg-compiled.conf", Mode: 0o644},
	{Src: "sshd.conf", Dst: "/etc/ssh/sshd_config.d/50-ksmg-hardening.conf", Mode: 0o600},
	{Src: "pam/common-auth", Dst: "/etc/pam.d/common-auth", Mode: 0o644},
	{Src: "pam/common-account", Dst: "/etc/pam.d/common-account", Mode: 0o644},
	{Src: "pam/common-password", Dst: "/etc/pam.d/common-password", Mode: 0o644},
	{Src: "faillock.conf", Dst: "/etc/security/faillock.conf", Mode: 0o644},
	{Src: "pwquality.conf", Dst: "/etc/security/pwquality.conf", Mode: 0o644},
	{Src: "coredump-limits.conf", Dst: "/etc/security/limits.d/90-ksmg-nocore.conf", Mode: 0o644},
	{Src: "coredump-system.conf", Dst: "/etc/systemd/system.conf.d/90-ksmg-nocore.conf", Mode: 0o644},
	{Src: "coredump.conf", Dst: "/etc/systemd/coredump.conf.d/90-ksmg-nocore.conf", Mode: 0o644},
	{Src: "tmout.sh", Dst: "/etc/profile.d/ksmg-hardening.sh", Mode: 0o644},
	{Src: "issue", Dst: "/etc/issue", Mode: 0o644},
	{Src: "issue.net", Dst: "/etc/issue.net", Mode: 0o644},
	{Src: "motd", Dst: "/etc/motd", Mode: 0o644},
	{Src: "resolved.conf", Dst: "/etc/systemd/resolved.conf.d/90-ksmg-no-multicast.conf", Mode: 0o644},
	{Src: "rsyslog.conf", Dst: "/etc/rsyslog.conf", Mode: 0o644},
	{Src: "logrotate-secure", Dst: "/etc/logrotate.d/ksmg-secure", Mode: 0o644},
	{Src: "logrotate-acct", Dst: "/etc/logrotate.d/ksmg-acct", Mode: 0o644},
	{Src: "aide/aide.conf", Dst: AIDEConfig, Mode: 0o644},
	{Src: "units/ksmg-integrity.service", Dst: "/usr/lib/systemd/system/ksmg-integrity.service", Mode: 0o644},
	{Src: "units/ksmg-integrity.timer", Dst: "/usr/lib/systemd/system/ksmg-integrity.timer", Mode: 0o644},
	{Src: "tmpfiles.conf", Dst: "/usr/lib/tmpfiles.d/ksmg-hardening.conf", Mode: 0o644},
	{Src: "securetty", Dst: "/etc/securetty", Mode: 0o600},
	{Src: "apt-var-exec.conf", Dst: "/etc/apt/apt.conf.d/50ksmg-var-exec", Mode: 0o644},
	{Src: "default-grub", Dst: DefaultGrub, Mode: 0o644},
}

// DefaultGrub holds the kernel command line the image build puts into
// the boot menu (KernelCmdline reads it back).
const DefaultGrub = "/etc/default/grub"

// KernelCmdline returns GRUB_CMDLINE_LINUX of a /etc/default/grub.
func KernelCmdline(defaultGrub []byte) (string, error) {
	for _, l := range strings.Split(string(defaultGrub), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "GRUB_CMDLINE_LINUX="); ok {
			v = strings.TrimSpace(v)
			if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' || strings.ContainsAny(v[1:len(v)-1], "\"$`\\") {
				return "", fmt.Errorf("%s: GRUB_CMDLINE_LINUX must be one double-quoted string without quotes, $, ` or \\ inside, got %s", DefaultGrub, v)
			}
			return strings.Join(strings.Fields(v[1:len(v)-1]), " "), nil
		}
	}
	return "", fmt.Errorf("%s: no GRUB_CMDLINE_LINUX", DefaultGrub)
}

// The firewall's rule set and its drop-in directory: first boot writes
// firstboot/apply.SSHFirewallPath there when it enables SSH.
const (
	FirewallPath   = "/etc/nftables.conf"
	FirewallDropIn = "/etc/nftables.d"
)

// Options of the hardening.
type Options struct {
	// TCPPorts are the TCP ports open to everyone; nil means
	// DefaultTCPPorts. SSH (22) is opened by first boot when it enables SSH.
	TCPPorts []int
}

// DefaultTCPPorts: SMTP (the gateway) and HTTPS (the product's web
// interface and its cluster traffic between nodes, data contract
// "Transport security").
var DefaultTCPPorts = []int{25, 443}

// Units the hardening enables, and masks. systemd-ssh-generator would put
// sshd on an AF_UNIX socket (/run/ssh-unix-local/socket) and on AF_VSOCK
// whatever first boot decided about SSH. sshd-keygen.service (Debian's
// openssh 1:10.0p1-7+deb13u4) runs ssh-keygen -A on first boot, making RSA
// and ECDSA keys beside the one Ed25519 key first boot makes and sshd is
// configured for (seen in the booted image).
var (
	EnableUnits    = []string{"nftables.service", "auditd.service", "apparmor.service", "rsyslog.service", "acct.service", "ksmg-integrity.timer"}
	MaskUnits      = []string{"ctrl-alt-del.target", "debug-shell.service", "sshd-keygen.service"}
	MaskGenerators = []string{
		"systemd-ssh-generator",
		// Only what /etc/fstab names is mounted: not partitions found
		// by their GPT type (ANSSI-BP-028 R28 wants every mount's
		// options chosen).
		"systemd-gpt-auto-generator",
		// No other way to start programs than the units the image
		// ships: no /etc/rc.local, no SysV scripts (every package here
		// has its unit), no systemd.run= on the kernel command line.
		"systemd-rc-local-generator",
		"systemd-sysv-generator",
		"systemd-run-generator",
		// No hibernation (its image would hold memory: mail), no
		// offline system updates, no TPM-bound secrets.
		"systemd-hibernate-resume-generator",
		"systemd-system-update-generator",
		"systemd-tpm2-generator",
	}
)

// requiredBinaries are checked before anything is written: the packages
// the hardening configures.
var requiredBinaries = map[string]string{
	"/usr/sbin/nft":             "nftables",
	"/usr/sbin/auditd":          "auditd",
	"/usr/sbin/apparmor_parser": "apparmor",
	"/usr/sbin/rsyslogd":        "rsyslog",
	"/usr/bin/aide":             "aide",
	"/usr/sbin/accton":          "acct",
	"/usr/lib/x86_64-linux-gnu/security/pam_pwquality.so": "libpam-pwquality",
	"/usr/lib/x86_64-linux-gnu/security/pam_faillock.so":  "libpam-modules",
	"/usr/lib/x86_64-linux-gnu/security/pam_pwhistory.so": "libpam-modules",
}

// compilers must not exist on the appliance (ANSSI-BP-028 R? / CIS 1.x:
// no build tools on a production system).
var compilers = []string{"/usr/bin/cc", "/usr/bin/c++", "/usr/bin/gcc", "/usr/bin/g++", "/usr/bin/clang", "/usr/bin/as", "/usr/bin/tcc", "/usr/bin/go", "/usr/bin/rustc"}

// Steps returns the hardening steps in order.
func Steps(o Options) []provisioner.Step {
	return []provisioner.Step{
		{Name: "hardening: packages present", Do: checkPackages},
		{Name: "hardening: files", Do: func(ctx context.Context, t provisioner.Target) error { return writeFiles(ctx, t, o) }},
		{Name: "hardening: login.defs", Do: editLoginDefs},
		{Name: "hardening: no root login on any terminal", Do: rootTTYLogin},
		{Name: "hardening: sshd_config", Do: editSSHDConfig},
		{Name: "hardening: /boot is root's", Do: func(ctx context.Context, t provisioner.Target) error {
			// ANSSI R29: kernels, initramfs and the boot menu are nobody
			// else's business.
			_, err := t.Run(ctx, "chmod", "0700", "/boot")
			return err
		}},
		{Name: "hardening: AppArmor policy compiled", Do: compileAppArmor},
		{Name: "hardening: audit rules for privileged programs", Do: privilegedRules},
		{Name: "hardening: audit rules compiled", Do: func(ctx context.Context, t provisioner.Target) error {
			// What the boot loads (units/audit-rules-compiled.conf).
			_, err := t.Run(ctx, "augenrules")
			return err
		}},
		{Name: "hardening: units", Do: units},
		{Name: "hardening: no compilers", Do: checkNoCompilers},
	}
}

func checkPackages(ctx context.Context, t provisioner.Target) error {
	paths := make([]string, 0, len(requiredBinaries))
	for p := range requiredBinaries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var missing []string
	for _, p := range paths {
		if _, err := t.Run(ctx, "test", "-e", p); err != nil {
			missing = append(missing, fmt.Sprintf("%s (package %s)", p, requiredBinaries[p]))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the target lacks what the hardening configures: %s; add the packages to the spec", strings.Join(missing, ", "))
	}
	return nil
}

// Firewall renders the nftables rule set for the options.
func Firewall(o Options) ([]byte, error) {
	ports := o.TCPPorts
	if ports == nil {
		ports = DefaultTCPPorts
	}
	if len(ports) == 0 {
		return nil, fmt.Errorf("firewall: no open TCP port (the gateway needs 25)")
	}
	seen := map[int]bool{}
	var s []string
	for _, p := range ports {
		if p < 1 || p > 65535 || seen[p] {
			return nil, fmt.Errorf("firewall: TCP port %d is out of range or repeated", p)
		}
		seen[p] = true
		s = append(s, strconv.Itoa(p))
	}
	tmpl, err := fs.ReadFile(Files(), "nftables.conf")
	if err != nil {
		return nil, err
	}
	return bytes.Replace(tmpl, []byte("@PORTS@"), []byte(strings.Join(s, ", ")), 1), nil
}

// Retired are files an earlier hardening installed and this one does not;
// re-provisioning an appliance (ksmg-harden in Packer) removes them.
var Retired = []string{
	// The firewall's modules, loaded by nftables.service's ExecStartPre now
	// (units/nftables-modules.conf says why).
	"/etc/modules-load.d/ksmg-nftables.conf",
	"/etc/systemd/system/nftables.service.d/ksmg-after-modules.conf",
}

// Removed are Debian's files the appliance does without. kmod's
// /etc/modules-load.d/modules.conf links to /etc/modules, which lists no
// module on the appliance; yet a non-empty modules-load.d starts
// systemd-modules-load, and systemd-sysctl, so systemd-resolved and
// sysinit.target, wait for it: 8 s of a TCG boot (0.6 s of CPU) to load
// nothing. A file dropped into modules-load.d later still starts it.
var Removed = []string{"/etc/modules-load.d/modules.conf"}

func writeFiles(ctx context.Context, t provisioner.Target, o Options) error {
	if _, err := t.Run(ctx, "rm", slices.Concat([]string{"-f", "--"}, Retired, Removed)...); err != nil {
		return fmt.Errorf("remove retired hardening files and %v: %w", Removed, err)
	}
	for _, f := range Install {
		data, err := fs.ReadFile(Files(), f.Src)
		if err != nil {
			return err
		}
		if err := t.WriteFile(ctx, f.Dst, data, f.Mode, f.Owner, f.Group); err != nil {
			return err
		}
	}
	fw, err := Firewall(o)
	if err != nil {
		return err
	}
	if err := t.WriteFile(ctx, FirewallPath, fw, 0o600, "", ""); err != nil {
		return err
	}
	return t.Mkdir(ctx, FirewallDropIn, 0o700, "", "")
}

// AppArmorKernelFeatures is the AppArmor feature set of the appliance's
// kernel (Debian 13's linux-image-cloud-amd64, 6.12), as apparmor_parser
// records it in its cache (/var/cache/apparmor/<hash>/.features, copied
// from the booted image). The policy is compiled for it when the image is
// built, so apparmor.service at boot loads the cache instead of compiling
// every profile: it gates sysinit.target, and compiling took 5-6 s of
// first boot under TCG. A kernel with other features has another cache
// directory and compiles at boot as before (TestBootUnattendedStatic
// fails then: refresh this file from the new kernel's cache).
const AppArmorKernelFeatures = "/usr/lib/ksmg/apparmor-kernel-features"

// AppArmorCache is where apparmor_parser keeps compiled policy.
const AppArmorCache = "/var/cache/apparmor"

// compileAppArmor writes the compiled policy of every profile in
// /etc/apparmor.d (what apparmor.service loads) to AppArmorCache, for
// AppArmorKernelFeatures, without loading it.
func compileAppArmor(ctx context.Context, t provisioner.Target) error {
	out, err := t.Run(ctx, "find", "/etc/apparmor.d", "-maxdepth", "1", "-type", "f")
	if err != nil {
		return err
	}
	profiles := strings.Fields(string(out))
	sort.Strings(profiles)
	args := append([]string{"--kernel-features=" + AppArmorKernelFeatures, "--cache-loc=" + AppArmorCache,
		"--write-cache", "--skip-kernel-load", "--quiet", "--"}, profiles...)
	if _, err := t.Run(ctx, "apparmor_parser", args...); err != nil {
		return fmt.Errorf("compile the AppArmor policy: %w", err)
	}
	return nil
}

// LoginDefs are the keys set in /etc/login.defs (the file belongs to the
// login package; the other keys stay as Debian ships them). Passwords are
// hashed with yescrypt at libxcrypt's cost 5 (as first boot does; see R68
// in images/HARDENING.md); a tool told to use SHA-512 crypt instead
// (chpasswd -c SHA512) gets 500,000 rounds, not the 5,000 default
// (Lynis AUTH-9230).
var LoginDefs = [][2]string{
	{"UMASK", "027"},
	{"HOME_MODE", "0700"},
	{"ENCRYPT_METHOD", "YESCRYPT"},
	{"YESCRYPT_COST_FACTOR", "5"},
	{"SHA_CRYPT_MIN_ROUNDS", "500000"},
	{"SHA_CRYPT_MAX_ROUNDS", "500000"},
	{"PASS_MIN_DAYS", "1"},
	{"LOG_OK_LOGINS", "yes"},
	{"LOGIN_RETRIES", "3"},
	{"LOGIN_TIMEOUT", "60"},
}

func editLoginDefs(ctx context.Context, t provisioner.Target) error {
	old, err := t.Run(ctx, "cat", "/etc/login.defs")
	if err != nil {
		return err
	}
	return t.WriteFile(ctx, "/etc/login.defs", SetKeys(old, LoginDefs, " "), 0o644, "", "")
}

// SetKeys sets "KEY<sep>VALUE" lines in a configuration file: the first
// active line of each key is replaced, later ones are commented out, and
// missing keys are appended.
func SetKeys(data []byte, kv [][2]string, sep string) []byte {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	for _, p := range kv {
		re := regexp.MustCompile(`^\s*` + regexp.QuoteMeta(p[0]) + `(\s|=|$)`)
		done := false
		for i, l := range lines {
			if !re.MatchString(l) {
				continue
			}
			if done {
				lines[i] = "# " + l + "  # ksmg: superseded"
				continue
			}
			lines[i] = p[0] + sep + p[1]
			done = true
		}
		if !done {
			lines = append(lines, p[0]+sep+p[1])
		}
	}
	return []byte(strings.Join(lines, "\n") + "\n")
}

// SSHDConfig are the keys set in the main /etc/ssh/sshd_config (after its
// Include of the drop-ins, so any drop-in's value comes first and wins).
var SSHDConfig = [][2]string{{"PermitRootLogin", "no"}}

// editSSHDConfig sets the main file's defaults and makes it private.
func editSSHDConfig(ctx context.Context, t provisioner.Target) error {
	old, err := t.Run(ctx, "cat", "/etc/ssh/sshd_config")
	if err != nil {
		return err
	}
	return t.WriteFile(ctx, "/etc/ssh/sshd_config", SetKeys(old, SSHDConfig, " "), 0o600, "", "")
}

// SecurettyLine makes login(1) refuse root on every terminal: /etc/securetty
// is empty. root has no password anyway; this holds even if one is set.
const SecurettyLine = "auth       requisite  pam_securetty.so"

func rootTTYLogin(ctx context.Context, t provisioner.Target) error {
	old, err := t.Run(ctx, "cat", "/etc/pam.d/login")
	if err != nil {
		return err
	}
	return t.WriteFile(ctx, "/etc/pam.d/login", InsertAfter(old, "pam_nologin.so", SecurettyLine), 0o644, "", "")
}

// InsertAfter inserts line after the first line containing anchor (at the
// top when none does), unless the file already has it.
func InsertAfter(data []byte, anchor, line string) []byte {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if slices.Contains(lines, line) {
		return data
	}
	at := 0
	for i, l := range lines {
		if strings.Contains(l, anchor) && !strings.HasPrefix(strings.TrimSpace(l), "#") {
			at = i + 1
			break
		}
	}
	lines = slices.Insert(lines, at, line)
	return []byte(strings.Join(lines, "\n") + "\n")
}

// PrivilegedRulesPath holds one audit rule per set-uid/set-gid program.
const PrivilegedRulesPath = "/etc/audit/rules.d/55-ksmg-privileged.rules"

func privilegedRules(ctx context.Context, t provisioner.Target) error {
	out, err := t.Run(ctx, "find", "/", "-xdev", "-type", "f", "(", "-perm", "-4000", "-o", "-perm", "-2000", ")", "-print")
	if err != nil {
		return err
	}
	return t.WriteFile(ctx, PrivilegedRulesPath, PrivilegedRules(strings.Fields(string(out))), 0o640, "", "")
}

// PrivilegedRules audits every execution of the given programs by a
// logged-in user (ANSSI-BP-028 R73, CIS 6.3.3.6).
func PrivilegedRules(programs []string) []byte {
	programs = slices.Clone(programs)
	sort.Strings(programs)
	var b strings.Builder
	b.WriteString("## ksmg appliance (provisioner/harden): every set-uid and set-gid program\n## of the image, found at build time.\n")
	for _, p := range slices.Compact(programs) {
		fmt.Fprintf(&b, "-a always,exit -F path=%s -F perm=x -F auid>=1000 -F auid!=unset -k privileged\n", p)
	}
	return []byte(b.String())
}

func units(ctx context.Context, t provisioner.Target) error {
	for _, g := range MaskGenerators {
		if err := t.Symlink(ctx, "/dev/null", "/etc/systemd/system-generators/"+g); err != nil {
			return err
		}
	}
	return provisioner.Units(EnableUnits, nil, MaskUnits).Do(ctx, t)
}

// AIDE's configuration and database (R76/R77 in images/HARDENING.md).
const (
	AIDEConfig   = "/etc/aide/aide.conf"
	AIDEDatabase = "/var/lib/aide/aide.db"
)

// IntegrityDatabase records the target's system files in AIDE's database.
// It is not one of Steps: it must see the files as they ship, so `ksmg
// build` runs it after the scrub (images, stage "integrity") and the Packer
// provisioner ksmg-harden as its last step. The rules (files/aide/aide.conf)
// leave out inode numbers and change times, so the database made in the
// build tree holds for the disk made from it.
var IntegrityDatabase = provisioner.Step{Name: "hardening: file integrity database", Do: integrityDatabase}

func integrityDatabase(ctx context.Context, t provisioner.Target) error {
	if err := t.Mkdir(ctx, path.Dir(AIDEDatabase), 0o700, "", ""); err != nil {
		return err
	}
	if _, err := t.Run(ctx, "aide", "--init", "--config="+AIDEConfig); err != nil {
		return fmt.Errorf("aide --init: %w", err)
	}
	if _, err := t.Run(ctx, "chmod", "0600", AIDEDatabase+".new"); err != nil {
		return err
	}
	_, err := t.Run(ctx, "mv", "-f", AIDEDatabase+".new", AIDEDatabase)
	return err
}

func checkNoCompilers(ctx context.Context, t provisioner.Target) error {
	var found []string
	for _, c := range compilers {
		if _, err := t.Run(ctx, "test", "-e", c); err == nil {
			found = append(found, c)
		}
	}
	if len(found) > 0 {
		return fmt.Errorf("the image must not ship compilers or assemblers, found %s (which package pulled them in?)", strings.Join(found, ", "))
	}
	return nil
}
