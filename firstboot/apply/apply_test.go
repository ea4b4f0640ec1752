//go:build unix

package apply

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/firstboot/crypt"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGqLbRk2vzRZ9bkfHF6H2mXmbiGsmdNw2WnNo6j3KXm7 admin@example"

func staticAnswers() answers.Answers {
	a := answers.Defaults()
	a.EULAAccepted = true
	a.AdminPassword = "Correct-Horse-9"
	a.Hostname = "gw1.example.com"
	a.Interfaces = []answers.Interface{{
		Name: "eth0", Mode: answers.ModeStatic,
		Address4: "192.0.2.10/24", Gateway4: "192.0.2.1",
		Address6: "2001:db8::10/64", Gateway6: "fe80::1",
		DNS: []string{"192.0.2.53", "2001:db8::53"}, SearchDomain: "example.com",
	}}
	a.NTP = []string{"ntp1.example.com", "192.0.2.123"}
	a.Timezone = "Europe/Prague"
	a.Role = answers.RoleSecondary
	a.ControlAddress = "ctl.example.com:8443"
	a.JoinToken = "0123456789abcdef0123"
	a.KSN = true // ignored on a Secondary node
	a.SSHEnabled = true
	a.SSHAuthorizedKey = testKey
	return a
}

var fixedNow = func() time.Time { return time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC) }

func read(t *testing.T, root, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func statOwner(t *testing.T, root, p string) (os.FileMode, int, int) {
	t.Helper()
	st, err := os.Lstat(filepath.Join(root, p))
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	return st.Mode().Perm(), int(sys.Uid), int(sys.Gid)
}

func TestApplyStatic(t *testing.T) {
	root := newRoot(t)
	ctx := context.Background()
	if Done(root) {
		t.Fatal("fresh root reported done")
	}
	if err := Apply(ctx, Options{Root: root, Now: fixedNow}, staticAnswers()); err != nil {
		t.Fatal(err)
	}
	checks := []struct{ path, want string }{
		{"/etc/hostname", "gw1.example.com\n"},
		{"/etc/timezone", "Europe/Prague\n"},
		{"/etc/hosts", "127.0.1.1\tgw1.example.com gw1\n"},
		{"/etc/systemd/network/50-ksmg-eth0.network", "[Match]\nName=eth0\n\n[Network]\nAddress=192.0.2.10/24\nGateway=192.0.2.1\nAddress=2001:db8::10/64\nGateway=fe80::1\nDNS=192.0.2.53\nDNS=2001:db8::53\nDomains=example.com\n"},
		{NTPPath, "[Time]\nNTP=ntp1.example.com 192.0.2.123\n"},
		{AuthorizedKeys, testKey + "\n"},
		{SSHDConfigPath, "AuthorizedKeysFile /etc/ssh/authorized_keys\nAllowUsers admin\nPermitRootLogin no\n"},
		{SSHFirewallPath, "add element inet ksmg tcp_open { 22 }\n"},
		{NodeConfigPath, "role: secondary\ncontrol_address: ctl.example.com:8443\njoin_token: 0123456789abcdef0123\nlanguage: en\neula:\n    accepted: true\n    accepted_at: \"2026-11-22T08:00:00Z\"\nksn:\n    enabled: false\n    source: control-node\n"},
		{StampPath, "2026-11-22T08:00:00Z\n"},
		{"/etc/passwd", "admin:x:1000:1000:ksmg administrator:/home/admin:/bin/bash\n"},
		{"/etc/group", "admin:x:1000:\n"},
		{IssuePath, "ksmg mail gateway gw1.example.com (secondary node)\n  IPv4: \\4  IPv6: \\6\n  SSH: enabled for admin; host key ED25519 SHA256:"},
	}
	for _, c := range checks {
		if got := read(t, root, c.path); !strings.Contains(got, c.want) {
			t.Errorf("%s:\n%s\nwant it to contain:\n%s", c.path, got, c.want)
		}
	}
	if l, _ := os.Readlink(filepath.Join(root, "/etc/localtime")); l != "/usr/share/zoneinfo/Europe/Prague" {
		t.Errorf("localtime -> %q", l)
	}
	if l, _ := os.Readlink(filepath.Join(root, SSHWantsLink)); l != SSHUnit {
		t.Errorf("ssh wants link -> %q", l)
	}
	// The admin hash verifies, and the clear text is nowhere in the root.
	var hash string
	for _, l := range strings.Split(read(t, root, "/etc/shadow"), "\n") {
		if f := strings.Split(l, ":"); f[0] == "admin" {
			hash = f[1]
		}
	}
	if !crypt.Verify("Correct-Horse-9", hash) {
		t.Fatalf("admin hash %q does not verify", hash)
	}
	if out, _ := exec.Command("grep", "-rl", "Correct-Horse-9", root).Output(); len(out) != 0 {
		t.Fatalf("clear-text password found in %s", out)
	}
	modes := []struct {
		path     string
		mode     os.FileMode
		uid, gid int
	}{
		{NodeConfigPath, 0o640, 998, 998},
		{"/etc/opt/kaspersky", 0o750, 998, 998},
		{"/etc/shadow", 0o640, 0, 42},
		{"/home/admin", 0o700, 1000, 1000},
		{AuthorizedKeys, 0o644, 0, 0},
		{"/etc/hostname", 0o644, 0, 0},
		{SSHFirewallPath, 0o600, 0, 0},
	}
	for _, m := range modes {
		mode, uid, gid := statOwner(t, root, m.path)
		if mode != m.mode || uid != m.uid || gid != m.gid {
			t.Errorf("%s: %v %d:%d, want %v %d:%d", m.path, mode, uid, gid, m.mode, m.uid, m.gid)
		}
	}
	// One Ed25519 host key, private part 0600; ssh-keygen (the real peer)
	// reads it and agrees on the fingerprint the console shows.
	if keys, _ := filepath.Glob(filepath.Join(root, "/etc/ssh/ssh_host_*_key")); len(keys) != 1 || keys[0] != filepath.Join(root, HostKeyPath) {
		t.Errorf("host keys: %v, want only %s", keys, HostKeyPath)
	}
	if mode, uid, _ := statOwner(t, root, HostKeyPath); mode != 0o600 || uid != 0 {
		t.Errorf("host key mode %v owner %d", mode, uid)
	}
	fps, err := HostKeyFingerprints(root)
	if err != nil || len(fps) != 1 || !strings.HasPrefix(fps[0], "ED25519 SHA256:") {
		t.Fatalf("fingerprints %v %v", fps, err)
	}
	out, err := exec.Command("ssh-keygen", "-y", "-f", filepath.Join(root, HostKeyPath)).Output()
	if err != nil || !strings.HasPrefix(read(t, root, HostKeyPath+".pub"), strings.TrimSpace(string(out))) {
		t.Errorf("ssh-keygen -y on the private key: %q %v; .pub is %q", out, err, read(t, root, HostKeyPath+".pub"))
	}
	out, err = exec.Command("ssh-keygen", "-l", "-f", filepath.Join(root, HostKeyPath+".pub")).Output()
	if f := strings.Fields(string(out)); err != nil || len(f) < 2 || !strings.HasSuffix(fps[0], " "+f[1]) {
		t.Errorf("ssh-keygen -l: %q %v; we show %s", out, err, fps[0])
	}
	if !strings.Contains(read(t, root, IssuePath), fps[0]+"\n") {
		t.Errorf("issue does not show %s", fps[0])
	}
	if !Done(root) {
		t.Error("not marked done")
	}
	if tmp, _ := exec.Command("find", root, "-name", "*.ksmg-*").Output(); len(tmp) != 0 {
		t.Errorf("temporary files left: %s", tmp)
	}
	sshdCheck(t, root, "admin", "permitrootlogin no", "allowusers admin")
}

// sshdCheck has the real sshd parse our drop-in and checks the effective
// configuration for user.
func sshdCheck(t *testing.T, root, user string, wants ...string) {
	t.Helper()
	// sshd -t insists on its privilege-separation directory, which the
	// openssh-server package's tmpfiles.d creates at boot.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "sshd_config")
	if err := os.WriteFile(cfg, []byte("Include "+filepath.Join(root, SSHDConfigPath)+"\nHostKey "+filepath.Join(root, "/etc/ssh/ssh_host_ed25519_key")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("/usr/sbin/sshd", "-t", "-f", cfg).CombinedOutput(); err != nil {
		t.Fatalf("sshd -t rejects the config: %v\n%s", err, out)
	}
	out, err := exec.Command("/usr/sbin/sshd", "-T", "-f", cfg, "-C", "user="+user+",host=x,addr=192.0.2.9").Output()
	if err != nil {
		t.Fatalf("sshd -T: %v", err)
	}
	for _, want := range append([]string{"authorizedkeysfile /etc/ssh/authorized_keys", "passwordauthentication no", "hostkey /etc/ssh/ssh_host_ed25519_key"}, wants...) {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("sshd effective config lacks %q", want)
		}
	}
}

func TestReconfigureIsIdempotentAndRemovesStale(t *testing.T) {
	root := newRoot(t)
	ctx := context.Background()
	if err := Apply(ctx, Options{Root: root, Now: fixedNow}, staticAnswers()); err != nil {
		t.Fatal(err)
	}
	a := answers.Defaults()
	a.EULAAccepted = true
	a.AdminPassword = "Another-Pass-77"
	a.Hostname = "gw2"
	a.Interfaces = []answers.Interface{{Name: "ens192", Mode: answers.ModeDHCP, DNS: []string{"192.0.2.53"}}}
	a.KSN = true
	for range 2 {
		if err := Apply(ctx, Options{Root: root, Now: fixedNow}, a); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "/etc/systemd/network/50-ksmg-eth0.network")); !os.IsNotExist(err) {
		t.Error("stale eth0 network file kept")
	}
	if got := read(t, root, "/etc/systemd/network/50-ksmg-ens192.network"); !strings.HasSuffix(got, "[Network]\nDHCP=yes\nDNS=192.0.2.53\n") {
		t.Errorf("dhcp file: %s", got)
	}
	for _, p := range []string{AuthorizedKeys, SSHWantsLink, SSHFirewallPath} {
		if _, err := os.Lstat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("%s kept after SSH was turned off", p)
		}
	}
	if got := read(t, root, IssuePath); !strings.Contains(got, "SSH: off\n") {
		t.Errorf("issue after SSH was turned off: %s", got)
	}
	if n := strings.Count(read(t, root, "/etc/passwd"), "\nadmin:"); n != 1 {
		t.Errorf("admin appears %d times in passwd", n)
	}
	if got := read(t, root, "/etc/hosts"); strings.Count(got, "127.0.1.1") != 1 || !strings.Contains(got, "127.0.1.1\tgw2\n") {
		t.Errorf("hosts: %s", got)
	}
	n, err := ReadNodeConfig(root)
	if err != nil || n.Role != "control" || !n.KSN.Enabled || n.KSN.Source != "local" || n.JoinToken != "" {
		t.Errorf("node config %+v %v", n, err)
	}
}

func TestApplyRollsBack(t *testing.T) {
	root := newRoot(t)
	// /etc/timezone is a non-empty directory: renaming the new file over it
	// fails after hostname, passwd and others were already switched.
	if err := os.MkdirAll(filepath.Join(root, "/etc/timezone/blocker"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := map[string]string{}
	for _, p := range []string{"/etc/passwd", "/etc/group", "/etc/shadow", "/etc/hostname", "/etc/hosts"} {
		before[p] = read(t, root, p)
	}
	err := Apply(context.Background(), Options{Root: root, Now: fixedNow}, staticAnswers())
	if err == nil || !strings.Contains(err.Error(), "/etc/timezone") || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("err = %v, want a rolled-back failure naming /etc/timezone", err)
	}
	for p, want := range before {
		if got := read(t, root, p); got != want {
			t.Errorf("%s not restored:\n%s", p, got)
		}
	}
	for _, p := range []string{"/etc/systemd/network/50-ksmg-eth0.network", NodeConfigPath, StampPath, AuthorizedKeys, "/home/admin", "/etc/localtime"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("%s left behind after rollback", p)
		}
	}
	if tmp, _ := exec.Command("find", root, "-name", "*.ksmg-*").Output(); len(tmp) != 0 {
		t.Errorf("temporary files left: %s", tmp)
	}
}

func TestApplyRefusesBadInput(t *testing.T) {
	tests := []struct {
		name string
		edit func(*answers.Answers, string)
		want string
	}{
		{"invalid answers", func(a *answers.Answers, _ string) { a.Hostname = "bad_host" }, "hostname"},
		{"no kluser group", func(_ *answers.Answers, root string) {
			if err := os.WriteFile(filepath.Join(root, "/etc/group"), []byte("root:x:0:\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, `group "kluser" is missing`},
		{"no passwd", func(_ *answers.Answers, root string) { os.Remove(filepath.Join(root, "/etc/passwd")) }, "/etc/passwd"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := newRoot(t)
			a := staticAnswers()
			tc.edit(&a, root)
			err := Apply(context.Background(), Options{Root: root, Now: fixedNow}, a)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if Done(root) || read(t, root, "/etc/hostname") != "debian\n" {
				t.Fatal("something was written despite the error")
			}
		})
	}
}

func TestImportant(t *testing.T) {
	root := newRoot(t)
	now := fixedNow()
	if err := Important(root, now, "unattended answer ksmg.hostname from seed file: invalid"); err != nil {
		t.Fatal(err)
	}
	if err := Important(root, now, "second"); err != nil {
		t.Fatal(err)
	}
	got := read(t, root, ImportantLogPath)
	if got != "2026-11-22T08:00:00Z ksmg-firstboot: unattended answer ksmg.hostname from seed file: invalid\n2026-11-22T08:00:00Z ksmg-firstboot: second\n" {
		t.Fatalf("log: %q", got)
	}
	if mode, uid, gid := statOwner(t, root, ImportantLogPath); mode != 0o640 || uid != 0 || gid != 998 {
		t.Fatalf("log owner %v %d:%d", mode, uid, gid)
	}
}

func TestCurrentReadsBackWhatApplyWrote(t *testing.T) {
	root := newRoot(t)
	in := staticAnswers()
	if err := Apply(context.Background(), Options{Root: root, Now: fixedNow}, in); err != nil {
		t.Fatal(err)
	}
	got := Current(root)
	if !crypt.Verify(in.AdminPassword, got.AdminPasswordHash) {
		t.Fatal("current hash does not verify")
	}
	in.AdminPassword, got.AdminPasswordHash = "", ""
	in.KSN = false // a Secondary node follows the Control node
	if err := got.Validate(); err == nil {
		t.Fatal("read-back answers without a password must not validate on their own")
	}
	if !reflect.DeepEqual(got, in) {
		t.Fatalf("read back:\n%+v\nwant\n%+v", got, in)
	}
}

// TestSSHOffMakesNoHostKey: SSH is off by default, and then there is no
// host key at all (nothing to leak, nothing to generate at first boot).
func TestSSHOffMakesNoHostKey(t *testing.T) {
	root := newRoot(t)
	a := staticAnswers()
	a.SSHEnabled, a.SSHAuthorizedKey = false, ""
	if err := Apply(context.Background(), Options{Root: root, Now: fixedNow}, a); err != nil {
		t.Fatal(err)
	}
	if keys, _ := filepath.Glob(filepath.Join(root, "/etc/ssh/ssh_host_*")); len(keys) != 0 {
		t.Errorf("host keys made with SSH off: %v", keys)
	}
	if got := read(t, root, IssuePath); !strings.Contains(got, "SSH: off\n") || strings.Contains(got, "SHA256") {
		t.Errorf("issue: %s", got)
	}
	if got := read(t, root, SSHDConfigPath); !strings.Contains(got, "PermitRootLogin no\n") {
		t.Errorf("sshd drop-in: %s", got)
	}
}

// TestRootLogin: granting root SSH access lets the same key log in as
// root, by key only; taking it back (reconfigure) closes it again, and the
// host key survives the reconfiguration.
func TestRootLogin(t *testing.T) {
	root := newRoot(t)
	ctx := context.Background()
	a := staticAnswers()
	a.SSHRootLogin = true
	if err := Apply(ctx, Options{Root: root, Now: fixedNow}, a); err != nil {
		t.Fatal(err)
	}
	key := read(t, root, HostKeyPath)
	sshdCheck(t, root, "root", "permitrootlogin without-password", "allowusers admin", "allowusers root")
	if got := read(t, root, IssuePath); !strings.Contains(got, "SSH: enabled for admin and root;") {
		t.Errorf("issue: %s", got)
	}
	a.SSHRootLogin = false
	if err := Apply(ctx, Options{Root: root, Now: fixedNow}, a); err != nil {
		t.Fatal(err)
	}
	sshdCheck(t, root, "root", "permitrootlogin no")
	if got := read(t, root, SSHDConfigPath); strings.Contains(got, "root\n") && strings.Contains(got, "AllowUsers admin root") {
		t.Errorf("root still allowed: %s", got)
	}
	if read(t, root, HostKeyPath) != key {
		t.Error("reconfiguration replaced the host key clients pinned")
	}
	a.SSHEnabled = false
	a.SSHRootLogin = true
	if err := Apply(ctx, Options{Root: root, Now: fixedNow}, a); err == nil || !strings.Contains(err.Error(), "ssh.root_login") {
		t.Fatalf("root login without SSH: %v", err)
	}
}

// TestActivateOnlyWhatChanged: the change tracking that decides which
// services activate touches.
func TestActivateOnlyWhatChanged(t *testing.T) {
	root := newRoot(t)
	o := Options{Root: root, Now: fixedNow}
	dhcp := staticAnswers()
	dhcp.Interfaces = []answers.Interface{{Name: "ens192", Mode: answers.ModeDHCP}}
	dhcp.NTP = nil
	commit := func(a answers.Answers) *tx {
		t.Helper()
		var x tx
		if _, err := hostKey(o, &x, a.SSHEnabled); err != nil {
			t.Fatal(err)
		}
		if err := plan(&x, o, a, fixedHash, "ED25519 SHA256:x"); err != nil {
			t.Fatal(err)
		}
		if err := x.commit(); err != nil {
			t.Fatal(err)
		}
		return &x
	}
	// First boot, plain DHCP: the image's default already does that; no
	// NTP servers: timesyncd's defaults stay.
	x := commit(dhcp)
	if networkChanged(x, o, dhcp) {
		t.Error("plain DHCP on a fresh image counted as a network change")
	}
	if !x.changed(o.path(NTPPath)) || x.hadContent(o.path(NTPPath), "NTP=") {
		t.Error("NTP file tracking")
	}
	if !x.changed(o.path(SSHDConfigPath), o.path(HostKeyPath)) {
		t.Error("new sshd drop-in and host key not seen as changes")
	}
	// The same again: nothing changed at all.
	x = commit(dhcp)
	for _, p := range []string{NTPPath, SSHDConfigPath, AuthorizedKeys, HostKeyPath, "/etc/hostname", SSHWantsLink} {
		if x.changed(o.path(p)) {
			t.Errorf("%s counted as changed on an identical re-apply", p)
		}
	}
	if networkChanged(x, o, dhcp) {
		t.Error("identical re-apply counted as a network change")
	}
	// Static: a change networkd must pick up; then back to DHCP: also one
	// (the static file of ours is replaced).
	st := staticAnswers()
	if x = commit(st); !networkChanged(x, o, st) || !x.changed(o.path(NTPPath)) {
		t.Error("static network and NTP servers not seen as changes")
	}
	if x = commit(dhcp); !networkChanged(x, o, dhcp) || !x.hadContent(o.path(NTPPath), "NTP=") {
		t.Error("back to DHCP (and no NTP servers) not seen as changes")
	}
	// SSH off: the wants link goes, which activate turns into a stop.
	off := dhcp
	off.SSHEnabled, off.SSHAuthorizedKey = false, ""
	if x = commit(off); !x.changed(o.path(SSHWantsLink)) || x.changed(o.path(HostKeyPath)) {
		t.Error("turning SSH off: wants link not removed or host key touched")
	}
}

// TestActivateCommands: what activate runs for the changes of a first
// boot and of reconfigurations: nothing that is already in effect, never
// a daemon-reload, every systemctl call --no-block.
func TestActivateCommands(t *testing.T) {
	root := newRoot(t)
	var calls []string
	o := Options{Root: root, Now: fixedNow, Log: slog.New(slog.DiscardHandler),
		Exec: func(_ context.Context, name string, args ...string) ([]byte, error) {
			calls = append(calls, name+" "+strings.Join(args, " "))
			return nil, nil
		},
		Hostname: func() (string, error) { return "ksmg", nil },
	}
	step := func(a answers.Answers) []string {
		t.Helper()
		calls = nil
		var x tx
		key, err := hostKey(o, &x, a.SSHEnabled)
		if err != nil {
			t.Fatal(err)
		}
		if err := plan(&x, o, a, fixedHash, key); err != nil {
			t.Fatal(err)
		}
		if err := x.commit(); err != nil {
			t.Fatal(err)
		}
		if err := activate(context.Background(), o, a, &x); err != nil {
			t.Fatal(err)
		}
		return calls
	}
	dhcp := staticAnswers()
	dhcp.Interfaces = []answers.Interface{{Name: "ens192", Mode: answers.ModeDHCP}}
	dhcp.NTP = nil
	dhcp.SSHEnabled, dhcp.SSHAuthorizedKey = false, ""
	withSSH := dhcp
	withSSH.SSHEnabled, withSSH.SSHAuthorizedKey = true, testKey
	static := staticAnswers()
	static.Hostname = "ksmg"
	for _, tc := range []struct {
		name string
		a    answers.Answers
		want []string
	}{
		// The test root's keyboard is not the language's: the console
		// keymap is switched now (in the image, English is already in
		// effect and nothing runs).
		{"first boot, defaults", dhcp, []string{
			"hostnamectl --no-ask-password --transient hostname gw1.example.com",
			"systemctl --no-ask-password --no-block restart console-setup.service",
			"systemctl --no-ask-password --no-block start ksmg-gatewayd.service"}},
		// The firewall opens SSH's port before sshd restarts, and closes
		// it after sshd stopped.
		{"SSH turned on", withSSH, []string{
			"hostnamectl --no-ask-password --transient hostname gw1.example.com",
			"systemctl --no-ask-password --no-block try-reload-or-restart nftables.service",
			"systemctl --no-ask-password --no-block restart ssh.service",
			"systemctl --no-ask-password --no-block start ksmg-gatewayd.service"}},
		{"nothing changed", withSSH, []string{
			"hostnamectl --no-ask-password --transient hostname gw1.example.com",
			"systemctl --no-ask-password --no-block start ksmg-gatewayd.service ssh.service"}},
		{"static, NTP, same host name", static, []string{
			"systemctl --no-ask-password --no-block try-reload-or-restart systemd-networkd.service",
			"systemctl --no-ask-password --no-block try-restart systemd-timesyncd.service",
			"systemctl --no-ask-password --no-block start ksmg-gatewayd.service ssh.service"}},
		{"SSH off again", dhcp, []string{
			"hostnamectl --no-ask-password --transient hostname gw1.example.com",
			"systemctl --no-ask-password --no-block try-reload-or-restart systemd-networkd.service",
			"systemctl --no-ask-password --no-block try-restart systemd-timesyncd.service",
			"systemctl --no-ask-password --no-block stop ssh.service",
			"systemctl --no-ask-password --no-block try-reload-or-restart nftables.service",
			"systemctl --no-ask-password --no-block start ksmg-gatewayd.service"}},
	} {
		if got := step(tc.a); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("%s: ran\n%s\nwant\n%s", tc.name, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
		}
	}
	// Run by the unit: a new name does not ask hostnamed but queues
	// HostnameUnit, which sets it from /etc/hostname.
	o.HostnameByCaller = true
	renamed := dhcp
	renamed.Hostname = "gw2.example.com"
	want := "systemctl --no-ask-password --no-block start ksmg-hostname.service\n" +
		"systemctl --no-ask-password --no-block start ksmg-gatewayd.service"
	if got := step(renamed); strings.Join(got, "\n") != want {
		t.Errorf("host name set by the caller: ran\n%s\nwant\n%s", strings.Join(got, "\n"), want)
	}
	if got := read(t, root, "/etc/hostname"); got != "gw2.example.com\n" {
		t.Errorf("/etc/hostname = %q", got)
	}
	// Run by the unit at boot, which the gateway's start follows: no start
	// is queued for the gateway, but SSH, not in the boot's transaction,
	// is still started.
	o.GatewayStartedByCaller = true
	if got := step(renamed); strings.Join(got, "\n") != "systemctl --no-ask-password --no-block start "+HostnameUnit {
		t.Errorf("gateway started by the caller, the running name still the old one: ran\n%s\nwant the host name unit only", strings.Join(got, "\n"))
	}
	// The running name (o.Hostname: "ksmg") is the one answered.
	sameName := renamed
	sameName.Hostname = "ksmg"
	if got := step(sameName); len(got) != 0 {
		t.Errorf("gateway started by the caller, the running name answered: ran\n%s\nwant nothing", strings.Join(got, "\n"))
	}
	sshOn := withSSH
	sshOn.Hostname = sameName.Hostname
	want = "systemctl --no-ask-password --no-block try-reload-or-restart nftables.service\n" +
		"systemctl --no-ask-password --no-block restart ssh.service"
	if got := step(sshOn); strings.Join(got, "\n") != want {
		t.Errorf("gateway started by the caller, SSH on: ran\n%s\nwant\n%s", strings.Join(got, "\n"), want)
	}
}

// fixedHash stands in for the password hash in plan's tests.
func fixedHash() (string, error) { return "$y$j9T$x$y", nil }
