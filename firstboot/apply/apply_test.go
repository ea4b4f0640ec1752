//go:build unix

package apply

import (
	"context"
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
		{SSHDConfigPath, "AuthorizedKeysFile /etc/ssh/authorized_keys\n"},
		{SSHFirewallPath, "add element inet ksmg tcp_open { 22 }\n"},
		{NodeConfigPath, "role: secondary\ncontrol_address: ctl.example.com:8443\njoin_token: 0123456789abcdef0123\nlanguage: en\neula:\n    accepted: true\n    accepted_at: \"2026-11-22T08:00:00Z\"\nksn:\n    enabled: false\n    source: control-node\n"},
		{StampPath, "2026-11-22T08:00:00Z\n"},
		{"/etc/passwd", "admin:x:1000:1000:ksmg administrator:/home/admin:/bin/bash\n"},
		{"/etc/group", "admin:x:1000:\n"},
		{IssuePath, "ksmg mail gateway gw1.example.com (secondary node)\n  IPv4: \\4  IPv6: \\6\n  SSH: enabled for admin; host key fingerprints:\n    ECDSA SHA256:"},
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
	if keys, _ := filepath.Glob(filepath.Join(root, "/etc/ssh/ssh_host_*_key")); len(keys) < 2 {
		t.Errorf("host keys not generated: %v", keys)
	}
	fps, err := HostKeyFingerprints(ctx, root)
	if err != nil || len(fps) < 2 || !strings.Contains(strings.Join(fps, " "), "ED25519 SHA256:") {
		t.Errorf("fingerprints %v %v", fps, err)
	}
	if !Done(root) {
		t.Error("not marked done")
	}
	if tmp, _ := exec.Command("find", root, "-name", "*.ksmg-*").Output(); len(tmp) != 0 {
		t.Errorf("temporary files left: %s", tmp)
	}
	sshdCheck(t, root)
}

// sshdCheck has the real sshd parse our drop-in.
func sshdCheck(t *testing.T, root string) {
	t.Helper()
	// sshd -t insists on its privilege-separation directory, which the
	// openssh-server package's tmpfiles.d creates at boot.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "sshd_config")
	os.WriteFile(cfg, []byte("Include "+filepath.Join(root, SSHDConfigPath)+"\nHostKey "+filepath.Join(root, "/etc/ssh/ssh_host_ed25519_key")+"\n"), 0o600)
	if out, err := exec.Command("/usr/sbin/sshd", "-t", "-f", cfg).CombinedOutput(); err != nil {
		t.Fatalf("sshd -t rejects the config: %v\n%s", err, out)
	}
	out, err := exec.Command("/usr/sbin/sshd", "-T", "-f", cfg, "-C", "user=admin,host=x,addr=192.0.2.9").Output()
	if err != nil {
		t.Fatalf("sshd -T: %v", err)
	}
	for _, want := range []string{"authorizedkeysfile /etc/ssh/authorized_keys", "passwordauthentication no", "permitrootlogin no", "allowusers admin"} {
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
			os.WriteFile(filepath.Join(root, "/etc/group"), []byte("root:x:0:\n"), 0o644)
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
	Important(root, now, "second")
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
