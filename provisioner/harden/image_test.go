//go:build linux

package harden

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/ksmg-appliance/ksmg/appliance"
	"github.com/ksmg-appliance/ksmg/images/imagefs"
)

// The tests in this file read the image `make images` built
// ($KSMG_IMAGE_DIR/ksmg-<version>.raw, as `make test` sets it), copied out
// without mounting (images/imagefs): the hardening as it was really applied
// to the appliance's root file system, file by file.

var (
	treeOnce sync.Once
	treeDir  string
	treeErr  error
)

func imageTree(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KSMG_IMAGE_DIR")
	if dir == "" {
		t.Skip("KSMG_IMAGE_DIR is not set: these tests read the built image (make test builds it first and sets it)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to copy the image's files with their owners (make test runs as root)")
	}
	treeOnce.Do(func() {
		spec, err := appliance.Load("")
		if err != nil {
			treeErr = err
			return
		}
		raw := filepath.Join(dir, spec.ImageBase()+".raw")
		tmp, err := os.MkdirTemp("", "ksmg-harden-image-")
		if err != nil {
			treeErr = err
			return
		}
		treeDir = filepath.Join(tmp, "root")
		treeErr = imagefs.Extract(context.Background(), raw, treeDir)
	})
	if treeErr != nil {
		t.Fatalf("copy the image's file systems: %v", treeErr)
	}
	return treeDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if treeDir != "" {
		os.RemoveAll(filepath.Dir(treeDir))
	}
	os.Exit(code)
}

// ids maps user and group names of the image to ids.
func ids(t *testing.T, root, file string) map[string]int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Split(l, ":")
		if len(f) > 2 {
			n, _ := strconv.Atoi(f[2])
			m[f[0]] = n
		}
	}
	return m
}

type node struct {
	mode     fs.FileMode
	uid, gid int
}

func stat(t *testing.T, root, p string) node {
	t.Helper()
	st, err := os.Lstat(filepath.Join(root, p))
	if err != nil {
		t.Fatalf("image: %v", err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	return node{st.Mode(), int(sys.Uid), int(sys.Gid)}
}

//nolint:gocyclo // a linear list of checks, one per hardening file in the built image
func TestImageHardeningFiles(t *testing.T) {
	root := imageTree(t)
	users, groups := ids(t, root, "etc/passwd"), ids(t, root, "etc/group")
	check := func(dst string, want []byte, mode fs.FileMode, owner, group string) {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(root, dst))
		if err != nil {
			t.Errorf("%s: %v", dst, err)
			return
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the hardening writes", dst)
		}
		if owner == "" {
			owner = "root"
		}
		if group == "" {
			group = "root"
		}
		n := stat(t, root, dst)
		if n.mode.Perm() != mode || n.uid != users[owner] || n.gid != groups[group] {
			t.Errorf("%s: %v %d:%d, want %v %s:%s", dst, n.mode, n.uid, n.gid, mode, owner, group)
		}
	}
	for _, f := range Install {
		data, err := fs.ReadFile(Files(), f.Src)
		if err != nil {
			t.Fatal(err)
		}
		check(f.Dst, data, f.Mode, f.Owner, f.Group)
	}
	fw, err := Firewall(Options{})
	if err != nil {
		t.Fatal(err)
	}
	check(FirewallPath, fw, 0o600, "", "")
	if n := stat(t, root, FirewallDropIn); !n.mode.IsDir() || n.mode.Perm() != 0o700 {
		t.Errorf("%s: %v", FirewallDropIn, n.mode)
	}
	if n := stat(t, root, "boot"); n.mode.Perm() != 0o700 || n.uid != 0 {
		t.Errorf("/boot: %v uid %d, want 0700 root", n.mode, n.uid)
	}
	if n := stat(t, root, "etc/ssh/sshd_config"); n.mode.Perm() != 0o600 {
		t.Errorf("/etc/ssh/sshd_config: %v, want 0600", n.mode)
	}
	ld, _ := os.ReadFile(filepath.Join(root, "etc/login.defs"))
	for _, kv := range LoginDefs {
		if !regexp.MustCompile(`(?m)^` + kv[0] + ` ` + kv[1] + `$`).Match(ld) {
			t.Errorf("/etc/login.defs: %s is not %s", kv[0], kv[1])
		}
	}
	if login, _ := os.ReadFile(filepath.Join(root, "etc/pam.d/login")); !bytes.Contains(login, []byte("\n"+SecurettyLine+"\n")) {
		t.Errorf("/etc/pam.d/login lacks pam_securetty")
	}
	// Every set-id program of the image has its audit rule, and only those.
	var setid []string
	if err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if st, err := d.Info(); err == nil && st.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
				setid = append(setid, "/"+strings.TrimPrefix(p, root+"/"))
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rules, _ := os.ReadFile(filepath.Join(root, PrivilegedRulesPath))
	if want := PrivilegedRules(setid); !bytes.Equal(rules, want) {
		t.Errorf("%s does not cover exactly the image's set-id programs %v:\n%s", PrivilegedRulesPath, setid, rules)
	}
	for _, g := range MaskGenerators {
		if l, _ := os.Readlink(filepath.Join(root, "etc/systemd/system-generators", g)); l != "/dev/null" {
			t.Errorf("generator %s not masked", g)
		}
	}
	for _, u := range MaskUnits {
		if l, _ := os.Readlink(filepath.Join(root, "etc/systemd/system", u)); l != "/dev/null" {
			t.Errorf("%s not masked", u)
		}
	}
	for _, u := range EnableUnits {
		links, _ := filepath.Glob(filepath.Join(root, "etc/systemd/system/*.wants", u))
		if len(links) == 0 {
			t.Errorf("%s is not enabled", u)
		}
	}
	for _, c := range compilers {
		if _, err := os.Lstat(filepath.Join(root, c)); err == nil {
			t.Errorf("compiler %s in the image", c)
		}
	}
}

// TestImageBootLocked: the boot menu GRUB reads has the superuser lock
// before anything else, the kernel command line of /etc/default/grub, and
// only root can read it.
func TestImageBootLocked(t *testing.T) {
	root := imageTree(t)
	dg, err := os.ReadFile(filepath.Join(root, DefaultGrub))
	if err != nil {
		t.Fatal(err)
	}
	cmdline, err := KernelCmdline(dg)
	if err != nil {
		t.Fatal(err)
	}
	lock := regexp.MustCompile(`(?m)\Aset superusers="root"\npassword_pbkdf2 root grub\.pbkdf2\.sha512\.10000\.0{128}\.0{128}\n`)
	menu, err := os.ReadFile(filepath.Join(root, "boot/grub/grub.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	if !lock.Match(stripComments(menu)) {
		t.Errorf("/boot/grub/grub.cfg does not start with the superuser lock:\n%s", menu)
	}
	if !bytes.Contains(menu, []byte(" rw "+cmdline+" ")) || !bytes.Contains(menu, []byte("--unrestricted {")) {
		t.Errorf("/boot/grub/grub.cfg lacks the command line %q or the unrestricted entry:\n%s", cmdline, menu)
	}
	if n := stat(t, root, "boot/grub/grub.cfg"); n.mode.Perm() != 0o600 || n.uid != 0 {
		t.Errorf("/boot/grub/grub.cfg: %v uid %d, want 0600 root", n.mode, n.uid)
	}
	esp, err := os.ReadFile(filepath.Join(root, "boot/efi/EFI/debian/grub.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	if !lock.Match(stripComments(esp)) || !bytes.HasSuffix(esp, []byte("configfile $prefix/grub.cfg\n")) {
		t.Errorf("the ESP's grub.cfg must lock GRUB before it reads the menu:\n%s", esp)
	}
	fstab, _ := os.ReadFile(filepath.Join(root, "etc/fstab"))
	for _, mp := range []string{"/var", "/tmp", "/dev/shm", "/var/tmp", "/home", "/proc", "/boot/efi"} {
		re := regexp.MustCompile(`(?m)^\S+\s+` + regexp.QuoteMeta(mp) + `\s+\S+\s+(\S+)`)
		m := re.FindSubmatch(fstab)
		if m == nil {
			t.Errorf("/etc/fstab has no %s", mp)
			continue
		}
		for _, o := range []string{"nodev", "nosuid", "noexec"} {
			if !slices.Contains(strings.Split(string(m[1]), ","), o) {
				t.Errorf("/etc/fstab: %s lacks %s (%s)", mp, o, m[1])
			}
		}
	}
}

// TestImageNoUSB: no USB device can reach the appliance because its kernel
// (Debian's cloud flavour) has no USB stack at all. USBGuard was dropped for
// that reason: usbguard-daemon 1.1.3 exits when /sys/bus/usb/devices is
// absent (USBGuard issue #693) and systemd restarted it until it gave up,
// leaving the appliance degraded.
func TestImageNoUSB(t *testing.T) {
	root := imageTree(t)
	configs, _ := filepath.Glob(filepath.Join(root, "boot/config-*"))
	if len(configs) == 0 {
		t.Fatal("no /boot/config-* in the image: cannot tell whether the kernel has USB support")
	}
	for _, c := range configs {
		b, err := os.ReadFile(c)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte("\n# CONFIG_USB_SUPPORT is not set\n")) {
			t.Errorf("%s: the kernel has USB support; USB devices need a guard again (images/HARDENING.md, Devices: usbcore.authorized_default=0 is on the command line, USBGuard needs ConditionPathIsDirectory=/sys/bus/usb/devices)", strings.TrimPrefix(c, root))
		}
	}
	if usb, _ := filepath.Glob(filepath.Join(root, "usr/lib/modules/*/kernel/drivers/usb")); len(usb) > 0 {
		t.Errorf("USB drivers in the image: %v", usb)
	}
	for _, p := range []string{"usr/sbin/usbguard-daemon", "etc/usbguard"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("/%s is in the image: USBGuard has nothing to guard without a USB stack and fails to start", p)
		}
	}
}

func stripComments(b []byte) []byte {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return []byte(strings.Join(out, "\n"))
}

// TestImageDataPermissions walks the image: every location of the data
// contract (../shared/product/data-layout.md) is kluser's with 0750
// directories and 0640 files, or is created so at boot (tmpfiles.d); the
// bundled-MTA locations are absent (the image has no Postfix); and nothing
// anywhere is writable by everyone without the sticky bit or owned by an
// unknown account.
func TestImageDataPermissions(t *testing.T) {
	root := imageTree(t)
	users, groups := ids(t, root, "etc/passwd"), ids(t, root, "etc/group")
	kluser, klgroup := users["kluser"], groups["kluser"]
	if kluser == 0 || klgroup == 0 {
		t.Fatalf("image has no kluser account")
	}
	// In the image: checked recursively.
	for _, loc := range []string{"/etc/opt/kaspersky", "/var/opt/kaspersky", "/var/log/kaspersky", "/var/log/ksmg-traces"} {
		err := filepath.WalkDir(filepath.Join(root, loc), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel := "/" + strings.TrimPrefix(p, root+"/")
			n := stat(t, root, rel)
			want := fs.FileMode(0o640)
			if d.IsDir() {
				want = 0o750
			}
			if n.mode.Perm() != want || n.uid != kluser || n.gid != klgroup {
				t.Errorf("%s: %v %d:%d, want %v kluser:kluser", rel, n.mode, n.uid, n.gid, want)
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", loc, err)
		}
	}
	// Created at boot: what tmpfiles.d says.
	tmpfiles := tmpfilesEntries(t, root)
	for loc, want := range map[string]string{
		"/var/log/ksmg-messages":  "f 0640 kluser kluser",
		"/var/log/ksmg-important": "f 0640 kluser kluser",
		"/var/log/secure":         "f 0640 kluser kluser",
		"/tmp/ksmgtmp":            "D 0750 kluser kluser",
		"/tmp/klms_filter":        "D 0750 kluser kluser",
	} {
		if got := tmpfiles[loc]; got != want {
			t.Errorf("tmpfiles.d: %s is %q, want %q", loc, got, want)
		}
	}
	for _, absent := range []string{"/etc/postfix", "/var/spool/postfix", "/var/log/maillog"} {
		if _, err := os.Lstat(filepath.Join(root, absent)); err == nil {
			t.Errorf("%s exists, but the image bundles no Postfix", absent)
		}
	}
	// The whole tree.
	var worldWritable, unowned []string
	if err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		rel := "/" + strings.TrimPrefix(p, root+"/")
		if st.Mode().Perm()&0o002 != 0 && !(st.IsDir() && st.Mode()&fs.ModeSticky != 0) {
			worldWritable = append(worldWritable, rel)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if !hasID(users, int(sys.Uid)) || !hasID(groups, int(sys.Gid)) {
			unowned = append(unowned, fmt.Sprintf("%s (%d:%d)", rel, sys.Uid, sys.Gid))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(worldWritable) > 0 {
		t.Errorf("writable by everyone (without sticky bit): %v", worldWritable)
	}
	if len(unowned) > 0 {
		t.Errorf("owned by no account of the image: %v", unowned)
	}
}

func hasID(m map[string]int, id int) bool {
	for _, v := range m {
		if v == id {
			return true
		}
	}
	return false
}

// tmpfilesEntries reads "type path mode user group" of every tmpfiles.d
// line of the image's /usr/lib/tmpfiles.d.
func tmpfilesEntries(t *testing.T, root string) map[string]string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(root, "usr/lib/tmpfiles.d/*.conf"))
	sort.Strings(files)
	out := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) >= 5 && !strings.HasPrefix(fl[0], "#") {
				out[fl[1]] = strings.Join(fl[:1], "") + " " + strings.Join(fl[2:5], " ")
			}
		}
	}
	return out
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d)`)

// TestImageUnitsExposure scores every ksmg unit as the image ships it
// (unit file and drop-ins under the image's root) with systemd-analyze
// security --offline: at most MaxExposure (2.0; the gateway 1.5, first
// boot 2.1). The boot tests check the same online.
func TestImageUnitsExposure(t *testing.T) {
	root := imageTree(t)
	units, _ := filepath.Glob(filepath.Join(root, "usr/lib/systemd/system/ksmg-*.service"))
	if len(units) == 0 {
		t.Fatal("no ksmg units in the image")
	}
	for _, u := range units {
		name := filepath.Base(u)
		arg := name
		if strings.HasSuffix(name, "@.service") {
			arg = strings.TrimSuffix(name, "@.service") + "@tty1.service"
		}
		max := MaxExposure(arg)
		out, _ := exec.Command("systemd-analyze", "security", "--offline=yes", "--no-pager", "--root="+root, arg).CombinedOutput()
		m := exposureRE.FindSubmatch(out)
		if m == nil {
			t.Errorf("%s: no exposure level:\n%s", name, out)
			continue
		}
		level, _ := strconv.ParseFloat(string(m[1]), 64)
		t.Logf("%s: exposure %.1f (max %.1f)", name, level, max)
		if level > max {
			t.Errorf("%s: exposure %.1f, want <= %.1f", name, level, max)
		}
	}
}

// TestImageSSHD asks the image's own sshd (OpenSSH 10, run in a private
// mount namespace chrooted into the copy) for its effective configuration:
// the hardening is in force and the file is private.
func TestImageSSHD(t *testing.T) {
	root := imageTree(t)
	key := "/tmp/ksmg-test-hostkey"
	script := `set -e
mount --rbind /dev "$1/dev"
mount -t proc proc "$1/proc"
mkdir -p "$1/run/sshd"
chroot "$1" ssh-keygen -q -t ed25519 -N "" -f ` + key + `
chroot "$1" /usr/sbin/sshd -T -h ` + key + ` -C user=admin,host=client.example,addr=192.0.2.9
`
	cmd := exec.Command("unshare", "--mount", "--fork", "sh", "-c", script, "sh", root)
	out, err := cmd.CombinedOutput()
	os.Remove(filepath.Join(root, key))
	os.Remove(filepath.Join(root, key+".pub"))
	if err != nil {
		t.Fatalf("sshd -T in the image: %v\n%s", err, out)
	}
	eff := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			eff[k] = v
		}
	}
	for k, want := range map[string]string{
		"permitrootlogin":            "no",
		"permitemptypasswords":       "no",
		"maxauthtries":               "3",
		"logingracetime":             "30",
		"clientaliveinterval":        "300",
		"clientalivecountmax":        "2",
		"allowtcpforwarding":         "no",
		"allowagentforwarding":       "no",
		"allowstreamlocalforwarding": "no",
		"x11forwarding":              "no",
		"permittunnel":               "no",
		"disableforwarding":          "yes",
		"compression":                "no",
		"loglevel":                   "VERBOSE",
		"banner":                     "/etc/issue.net",
		"ciphers":                    "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes192-ctr,aes128-ctr",
		"macs":                       "hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,umac-128-etm@openssh.com",
		"kexalgorithms":              "mlkem768x25519-sha256,sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512",
	} {
		if eff[k] != want {
			t.Errorf("sshd -T: %s %q, want %q", k, eff[k], want)
		}
	}
	// Nothing weak is left in the offers.
	for _, k := range []string{"ciphers", "macs", "kexalgorithms"} {
		for _, weak := range []string{"cbc", "sha1", "umac-64", "nistp", "group14", "group1-", "3des", "md5"} {
			if strings.Contains(eff[k], weak) {
				t.Errorf("sshd offers %s in %s: %s", weak, k, eff[k])
			}
		}
	}
	for _, f := range []string{"etc/ssh/sshd_config", "etc/ssh/sshd_config.d/50-ksmg-hardening.conf"} {
		if n := stat(t, root, f); n.mode.Perm() != 0o600 || n.uid != 0 {
			t.Errorf("/%s: %v uid %d, want 0600 root", f, n.mode, n.uid)
		}
	}
}

// The image's AppArmor policy is ours and unix_chkpwd's: every profile
// file apparmor.service compiles at first boot (on its critical path) is
// for a program the appliance runs. Debian's ~95 others are left out by
// the rootfs build (images/rootfs.go).
func TestImageAppArmorProfiles(t *testing.T) {
	root := imageTree(t)
	ents, err := os.ReadDir(filepath.Join(root, "etc/apparmor.d"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"unix-chkpwd"}
	for _, f := range Install {
		if d, name := filepath.Split(f.Dst); d == "/etc/apparmor.d/" {
			want = append(want, name)
		}
	}
	var got []string
	for _, e := range ents {
		if !e.IsDir() {
			got = append(got, e.Name())
		}
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("/etc/apparmor.d profiles %v, want %v", got, want)
	}
	for _, dir := range []string{"abi", "abstractions", "tunables"} {
		if ents, err := os.ReadDir(filepath.Join(root, "etc/apparmor.d", dir)); err != nil || len(ents) == 0 {
			t.Errorf("/etc/apparmor.d/%s: %d entries, %v; the policy language must stay", dir, len(ents), err)
		}
	}
}

// TestImageIntegrityDatabase runs the image's own AIDE against the image's
// files as copied out of the disk: the database the build made in its tree
// must describe the file systems made from that tree (other inode numbers
// and change times, which the rules leave out). The boot test runs the
// same check through ksmg-integrity.service in the booted appliance.
func TestImageIntegrityDatabase(t *testing.T) {
	root := imageTree(t)
	db, err := os.Stat(filepath.Join(root, AIDEDatabase))
	if err != nil {
		t.Fatalf("no AIDE database in the image: %v", err)
	}
	if db.Mode().Perm() != 0o600 || db.Size() < 1<<20 {
		t.Errorf("%s: mode %v, %d bytes; want 0600 and the whole system in it", AIDEDatabase, db.Mode().Perm(), db.Size())
	}
	cmd := exec.Command("chroot", root, "aide", "--check", "--config="+AIDEConfig)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("aide --check on the image's files: %v\n%s", err, out)
	}
	// A control: one changed byte in a shipped program is found.
	victim := filepath.Join(root, "usr/bin/less")
	orig, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(victim)
	changed := slices.Clone(orig)
	changed[len(changed)/2] ^= 0xff
	if err := os.WriteFile(victim, changed, fi.Mode()); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(victim, fi.ModTime(), fi.ModTime()) // same time, same size: only the hash tells
	defer func() {
		_ = os.WriteFile(victim, orig, fi.Mode())
		_ = os.Chtimes(victim, fi.ModTime(), fi.ModTime())
	}()
	out, err = exec.Command("chroot", root, "aide", "--check", "--config="+AIDEConfig).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "/usr/bin/less") {
		t.Errorf("aide --check did not report a changed /usr/bin/less (err %v):\n%s", err, out)
	}
}
