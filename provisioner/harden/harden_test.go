package harden

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ksmg-appliance/ksmg/firstboot/apply"
	"github.com/ksmg-appliance/ksmg/provisioner"
)

// memTarget is a Target in memory: it records what the steps write and
// answers the few commands they run (cat, test -e, find, chmod) from its
// files. The real root file system is checked file by file on the built
// image (images: TestImageHardening); this checks the steps' logic and
// error paths, which a real image cannot show.
type memTarget struct {
	files   map[string][]byte
	modes   map[string]fs.FileMode
	owners  map[string]string
	dirs    map[string]fs.FileMode
	links   map[string]string
	enabled []string
	runs    []string
	exists  map[string]bool // paths `test -e` finds besides files
	setuid  []string        // what `find -perm` reports
}

func newMemTarget() *memTarget {
	m := &memTarget{files: map[string][]byte{}, modes: map[string]fs.FileMode{}, owners: map[string]string{},
		dirs: map[string]fs.FileMode{}, links: map[string]string{}, exists: map[string]bool{}}
	for p := range requiredBinaries {
		m.exists[p] = true
	}
	m.files["/etc/login.defs"] = []byte("# login.defs\nUMASK\t\t022\nHOME_MODE\t0700\nENCRYPT_METHOD SHA512\n#LOG_OK_LOGINS no\nLOGIN_RETRIES 5\nLOGIN_RETRIES 9\n")
	m.files["/etc/pam.d/login"] = []byte("auth       optional   pam_faildelay.so  delay=3000000\nauth       requisite  pam_nologin.so\n@include common-auth\n")
	m.files["/etc/ssh/sshd_config"] = []byte("Include /etc/ssh/sshd_config.d/*.conf\n#PermitRootLogin prohibit-password\n")
	m.modes["/etc/ssh/sshd_config"] = 0o644
	m.setuid = []string{"/usr/bin/su", "/usr/bin/passwd", "/usr/bin/mount", "/usr/bin/su"}
	return m
}

func (m *memTarget) WriteFile(_ context.Context, p string, data []byte, mode fs.FileMode, owner, group string) error {
	m.files[p], m.modes[p], m.owners[p] = bytes.Clone(data), mode, owner+":"+group
	return nil
}
func (m *memTarget) Mkdir(_ context.Context, p string, mode fs.FileMode, owner, group string) error {
	m.dirs[p], m.owners[p] = mode, owner+":"+group
	return nil
}
func (m *memTarget) Symlink(_ context.Context, oldname, p string) error {
	m.links[p] = oldname
	return nil
}
func (m *memTarget) EnableUnit(_ context.Context, u string) error {
	m.enabled = append(m.enabled, u)
	return nil
}
func (m *memTarget) DisableUnit(context.Context, string) error { return nil }
func (m *memTarget) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	m.runs = append(m.runs, name+" "+strings.Join(args, " "))
	switch name {
	case "cat":
		if b, ok := m.files[args[0]]; ok {
			return b, nil
		}
		return nil, fmt.Errorf("cat: %s: no such file", args[0])
	case "rm":
		for _, a := range args {
			delete(m.files, a)
		}
		return nil, nil
	case "test":
		if _, ok := m.files[args[1]]; ok || m.exists[args[1]] {
			return nil, nil
		}
		return nil, errors.New("exit status 1")
	case "find":
		if args[0] == "/etc/apparmor.d" {
			var profiles []string
			for p := range m.files {
				if path.Dir(p) == "/etc/apparmor.d" {
					profiles = append(profiles, p)
				}
			}
			return []byte(strings.Join(profiles, "\n") + "\n"), nil
		}
		return []byte(strings.Join(m.setuid, "\n") + "\n"), nil
	case "apparmor_parser": // compiles what the profiles say: they must be there
		for _, a := range args {
			if strings.HasPrefix(a, "/etc/apparmor.d/") {
				if _, ok := m.files[a]; !ok {
					return nil, fmt.Errorf("apparmor_parser: %s: no such file", a)
				}
			}
		}
		if _, ok := m.files[AppArmorKernelFeatures]; !ok {
			return nil, errors.New("apparmor_parser: no kernel features file")
		}
		return nil, nil
	case "augenrules": // compiles rules.d: every rule file must be there
		if _, ok := m.files[PrivilegedRulesPath]; !ok {
			return nil, errors.New("augenrules ran before the privileged programs' rules were written")
		}
		return nil, nil
	case "chmod":
		mode, err := strconv.ParseUint(args[0], 8, 32)
		if err != nil {
			return nil, err
		}
		m.modes[args[1]] = fs.FileMode(mode)
		return nil, nil
	}
	return nil, fmt.Errorf("memTarget: unexpected command %s", name)
}

func applySteps(t *testing.T, m *memTarget, o Options) error {
	t.Helper()
	return provisioner.Apply(context.Background(), m, discard(), Steps(o)...)
}

//nolint:gocyclo // a linear list of checks, one per hardening file
func TestStepsWriteEveryFile(t *testing.T) {
	t.Parallel()
	m := newMemTarget()
	for _, p := range slices.Concat(Retired, Removed) { // Debian's, or left by an older build
		m.files[p] = []byte("old\n")
	}
	if err := applySteps(t, m, Options{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range slices.Concat(Retired, Removed) {
		if _, ok := m.files[p]; ok {
			t.Errorf("%s is still there", p)
		}
	}
	for _, f := range Install {
		want, err := fs.ReadFile(Files(), f.Src)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := m.files[f.Dst]; !ok || !bytes.Equal(got, want) {
			t.Errorf("%s: not written from %s", f.Dst, f.Src)
		}
		if m.modes[f.Dst] != f.Mode || m.owners[f.Dst] != f.Owner+":"+f.Group {
			t.Errorf("%s: mode %v owner %q, want %v %q", f.Dst, m.modes[f.Dst], m.owners[f.Dst], f.Mode, f.Owner+":"+f.Group)
		}
		// Secrets and system policy are never world-writable.
		if f.Mode&0o022 != 0 {
			t.Errorf("%s: mode %v is group/world-writable", f.Dst, f.Mode)
		}
	}
	if fw := m.files[FirewallPath]; !bytes.Contains(fw, []byte("elements = { 25, 443 }")) || m.modes[FirewallPath] != 0o600 {
		t.Errorf("firewall: mode %v\n%s", m.modes[FirewallPath], fw)
	}
	if m.dirs[FirewallDropIn] != 0o700 {
		t.Errorf("%s: mode %v", FirewallDropIn, m.dirs[FirewallDropIn])
	}
	if m.modes["/etc/ssh/sshd_config"] != 0o600 || string(m.files["/etc/ssh/sshd_config"]) != "Include /etc/ssh/sshd_config.d/*.conf\n#PermitRootLogin prohibit-password\nPermitRootLogin no\n" {
		t.Errorf("sshd_config: %v\n%s", m.modes["/etc/ssh/sshd_config"], m.files["/etc/ssh/sshd_config"])
	}
	if m.modes["/boot"] != 0o700 {
		t.Errorf("/boot: %v, want 0700", m.modes["/boot"])
	}
	// Both of our profiles are compiled into the cache, for the appliance
	// kernel's features, without loading them into the build host's kernel.
	compiled := ""
	for _, r := range m.runs {
		if strings.HasPrefix(r, "apparmor_parser ") {
			compiled = r
		}
	}
	for _, want := range []string{"--kernel-features=" + AppArmorKernelFeatures, "--cache-loc=" + AppArmorCache, "--write-cache", "--skip-kernel-load",
		"/etc/apparmor.d/usr.sbin.ksmg-firstboot", "/etc/apparmor.d/usr.sbin.ksmg-gatewayd"} {
		if !strings.Contains(compiled, want) {
			t.Errorf("apparmor_parser run %q lacks %q", compiled, want)
		}
	}
	ld := string(m.files["/etc/login.defs"])
	for _, want := range []string{"UMASK 027\n", "ENCRYPT_METHOD YESCRYPT\n", "LOG_OK_LOGINS yes\n", "LOGIN_RETRIES 3\n", "# LOGIN_RETRIES 9  # ksmg: superseded\n", "#LOG_OK_LOGINS no\n"} {
		if !strings.Contains(ld, want) {
			t.Errorf("login.defs lacks %q:\n%s", want, ld)
		}
	}
	if strings.Contains(ld, "022") {
		t.Errorf("login.defs keeps the old umask:\n%s", ld)
	}
	login := string(m.files["/etc/pam.d/login"])
	if !strings.Contains(login, "pam_nologin.so\n"+SecurettyLine+"\n@include common-auth") {
		t.Errorf("pam_securetty not after pam_nologin:\n%s", login)
	}
	if len(m.files["/etc/securetty"]) != 0 {
		t.Errorf("/etc/securetty lists terminals")
	}
	priv := string(m.files[PrivilegedRulesPath])
	if strings.Count(priv, "-F path=/usr/bin/su ") != 1 || !strings.Contains(priv, "-F path=/usr/bin/passwd -F perm=x -F auid>=1000 -F auid!=unset -k privileged") {
		t.Errorf("privileged rules:\n%s", priv)
	}
	for _, g := range MaskGenerators {
		if m.links["/etc/systemd/system-generators/"+g] != "/dev/null" {
			t.Errorf("generator %s not masked", g)
		}
	}
	for _, u := range MaskUnits {
		if m.links["/etc/systemd/system/"+u] != "/dev/null" {
			t.Errorf("%s not masked", u)
		}
	}
	if !slices.Equal(m.enabled, EnableUnits) {
		t.Errorf("enabled %v, want %v", m.enabled, EnableUnits)
	}
	// Applying twice changes nothing (a Packer re-run, a rebuild).
	before := map[string]string{}
	for p, b := range m.files {
		before[p] = string(b)
	}
	if err := applySteps(t, m, Options{}); err != nil {
		t.Fatal(err)
	}
	for p, b := range m.files {
		if before[p] != string(b) {
			t.Errorf("%s changed on the second run", p)
		}
	}
}

func TestStepsRefuse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(*memTarget)
		opts  Options
		want  string
	}{
		{"missing package", func(m *memTarget) { delete(m.exists, "/usr/sbin/nft") }, Options{}, "package nftables"},
		{"compiler", func(m *memTarget) { m.exists["/usr/bin/gcc"] = true }, Options{}, "/usr/bin/gcc"},
		{"bad port", nil, Options{TCPPorts: []int{25, 70000}}, "70000"},
		{"repeated port", nil, Options{TCPPorts: []int{25, 25}}, "repeated"},
		{"no port", nil, Options{TCPPorts: []int{}}, "no open TCP port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMemTarget()
			if tc.setup != nil {
				tc.setup(m)
			}
			err := applySteps(t, m, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSetKeys(t *testing.T) {
	t.Parallel()
	in := "A 1\n#B 2\nB=3\n  A 4\n"
	got := string(SetKeys([]byte(in), [][2]string{{"A", "9"}, {"B", "8"}, {"C", "7"}}, " "))
	want := "A 9\n#B 2\nB 8\n#   A 4  # ksmg: superseded\nC 7\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// nftCheck runs `nft -c` (parse and validate against the kernel, commit
// nothing) on the rule set with its include directory moved to dir.
func nftCheck(t *testing.T, ruleset []byte, dir string) error {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("nft (package nftables) not installed: %v", err)
	}
	ruleset = bytes.ReplaceAll(ruleset, []byte(`include "`+FirewallDropIn+`/`), []byte(`include "`+dir+`/`))
	main := filepath.Join(dir, "..", filepath.Base(dir)+".nft")
	if err := os.WriteFile(main, ruleset, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nft", "-c", "-f", main).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

func TestFirewallRulesValid(t *testing.T) {
	fw, err := Firewall(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(fw, []byte(`include "`+FirewallDropIn+`/*.nft"`)) {
		t.Fatalf("rule set does not include %s", FirewallDropIn)
	}
	base := t.TempDir()
	// No drop-in: the include glob matches nothing.
	empty := filepath.Join(base, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := nftCheck(t, fw, empty); err != nil {
		t.Fatalf("nft -c without drop-ins: %v", err)
	}
	// First boot's SSH drop-in, and a 587 listener an admin added.
	withSSH := filepath.Join(base, "ssh")
	if err := os.Mkdir(withSSH, 0o700); err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(apply.SSHFirewallPath) != FirewallDropIn {
		t.Fatalf("first boot writes %s outside the firewall's drop-in directory %s", apply.SSHFirewallPath, FirewallDropIn)
	}
	if err := os.WriteFile(filepath.Join(withSSH, filepath.Base(apply.SSHFirewallPath)), []byte(apply.SSHFirewallRule), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(withSSH, "submission.nft"), []byte("add element inet ksmg tcp_open { 587 }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := nftCheck(t, fw, withSSH); err != nil {
		t.Fatalf("nft -c with the SSH drop-in: %v", err)
	}
	// Control: nft -c does reject a broken rule set, so the checks above mean something.
	broken := filepath.Join(base, "broken")
	if err := os.Mkdir(broken, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(broken, "bad.nft"), []byte("add element inet ksmg no_such_set { 22 }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := nftCheck(t, fw, broken); err == nil {
		t.Fatal("nft -c accepted a drop-in naming a set that does not exist")
	}
}

// TestFirewallPolicy reads the rule set nft parsed back (nft -c -j would
// need the kernel's state; `nft --check --echo` is not in nftables 1.0):
// input and forward drop by default, only the listed ports and ICMP/DHCP
// answers are accepted.
func TestFirewallPolicy(t *testing.T) {
	t.Parallel()
	fw, err := Firewall(Options{TCPPorts: []int{25, 465, 443}})
	if err != nil {
		t.Fatal(err)
	}
	s := string(fw)
	for _, want := range []string{
		"type filter hook input priority filter; policy drop;",
		"type filter hook forward priority filter; policy drop;",
		"elements = { 25, 465, 443 }",
		"tcp dport @tcp_open ct state new accept",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("rule set lacks %q", want)
		}
	}
	// Nothing else accepts TCP: every "accept" line is loopback, conntrack,
	// ICMP, DHCP or the set.
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasSuffix(l, " accept") {
			continue
		}
		ok := strings.HasPrefix(l, `iif "lo"`) || strings.HasPrefix(l, "ct state established") ||
			strings.Contains(l, "icmp") || strings.HasPrefix(l, "udp sport 67 udp dport 68") ||
			strings.Contains(l, "udp sport 547 udp dport 546") || strings.HasPrefix(l, "tcp dport @tcp_open")
		if !ok {
			t.Errorf("unexpected accept rule: %s", l)
		}
	}
}

func TestAppArmorProfilesParse(t *testing.T) {
	if _, err := exec.LookPath("apparmor_parser"); err != nil {
		t.Fatalf("apparmor_parser (package apparmor) not installed: %v", err)
	}
	parse := func(p string) error {
		// -Q: do not load into the kernel, -T: no cache, -K: no cache write.
		out, err := exec.Command("apparmor_parser", "-Q", "-T", "-K", p).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	dir := t.TempDir()
	for _, f := range Install {
		if !strings.HasPrefix(f.Dst, "/etc/apparmor.d/") {
			continue
		}
		data, _ := fs.ReadFile(Files(), f.Src)
		p := filepath.Join(dir, filepath.Base(f.Dst))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := parse(p); err != nil {
			t.Errorf("%s: %v", f.Dst, err)
		}
		// The profile attaches to the binary the image installs.
		bin := "/usr/sbin/" + strings.TrimPrefix(filepath.Base(f.Dst), "usr.sbin.")
		if !bytes.Contains(data, []byte(" "+bin+" {")) {
			t.Errorf("%s does not attach to %s", f.Dst, bin)
		}
		if bytes.Contains(data, []byte("complain")) {
			t.Errorf("%s is not enforcing", f.Dst)
		}
		// Control: a syntax error is reported.
		bad := filepath.Join(dir, "bad-"+filepath.Base(f.Dst))
		if err := os.WriteFile(bad, bytes.Replace(data, []byte(bin+" {\n"), []byte(bin+" {\n  capabilty sys_admin,\n"), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		if parse(bad) == nil {
			t.Errorf("apparmor_parser accepted a broken copy of %s", f.Dst)
		}
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// First boot's AppArmor profile lets it run every program its code runs
// (a rule dropped with others once made the OVF environment unreadable and
// the wizard came up on an unattended deploy). The names come from the
// code: run("x", ...), execute(ctx, "x", ...), exec.Command[Context](ctx,
// "x", ...), runQuiet(ctx, "x", ...) and tool = "x".
func TestFirstbootProfileRunsItsPrograms(t *testing.T) {
	t.Parallel()
	profile, err := os.ReadFile("files/apparmor/usr.sbin.ksmg-firstboot")
	if err != nil {
		t.Fatal(err)
	}
	// Only where no systemd runs (the tests, as root): in the image PID 1
	// mounts the config drive.
	notInImage := map[string]bool{"mount": true, "umount": true}
	call := regexp.MustCompile(`(?:\brun\(|execute\(ctx, |exec\.Command(?:Context)?\((?:ctx, )?|runQuiet\(ctx, |\btool = )"([a-z][a-z0-9_-]*)"`)
	progs := map[string]string{}
	for _, dir := range []string{"../../firstboot", "../../cmd/ksmg-firstboot"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range call.FindAllStringSubmatch(string(data), -1) {
				progs[m[1]] = path
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"systemctl", "hostnamectl", "vmware-rpctool"} {
		if _, ok := progs[want]; !ok {
			t.Errorf("the scan missed %s, which first boot runs; found %v", want, progs)
		}
	}
	for name, path := range progs {
		if notInImage[name] {
			continue
		}
		rule := regexp.MustCompile(`(?m)^\s*/usr/s?bin/` + regexp.QuoteMeta(name) + `\s+[a-zA-Z]*x,`)
		if !rule.Match(profile) {
			t.Errorf("%s runs %s; the ksmg-firstboot profile has no exec rule for it", path, name)
		}
	}
}

// TestKernelCmdlineMeansWhatItSays: parameters whose meaning the kernel
// changed under ANSSI's list. mce=<n> was R8's tolerance level; Linux
// removed the level in 2022 and reads the number as the machine-check
// rendezvous timeout (booted with an Intel CPU model, mce=0 gave
// monarch_timeout=0 against the kernel's 1000000). A parameter the kernel
// does not know at all is caught at boot (CheckRuntime, cmdline_unknown).
func TestKernelCmdlineMeansWhatItSays(t *testing.T) {
	t.Parallel()
	dg, err := fs.ReadFile(Files(), "default-grub")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := KernelCmdline(dg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(cl) {
		if v, ok := strings.CutPrefix(p, "mce="); ok && v != "" && v[0] >= '0' && v[0] <= '9' {
			t.Errorf("%s: %q sets the machine-check rendezvous timeout on this kernel, not a tolerance level", DefaultGrub, p)
		}
	}
}
