// Package apply writes validated first-boot answers into a root file
// system (the appliance's "/" or a scratch root in tests): networkd,
// hostname, time zone, NTP, the admin account, SSH, the node role and
// consent, and the completion stamp. Everything is validated and staged
// first and switched in as one transaction (see tx), so a failure leaves
// the previous configuration in place.
//
// google/renameio was considered for the atomic writes: it replaces one
// file at a time, but a multi-file switch that can be undone needs the
// backups kept by tx, so that small part is written here.
package apply

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/firstboot/crypt"
)

// HostnameUnit sets the running host name from /etc/hostname
// (firstboot/units); first boot's unit queues it (HostnameByCaller).
const HostnameUnit = "ksmg-hostname.service"

// Paths, relative to the root.
const (
	StampPath      = "/var/lib/ksmg/firstboot.done"
	NodeConfigPath = "/etc/opt/kaspersky/ksmg-node.yaml"
	NetworkDir     = "/etc/systemd/network"
	NTPPath        = "/etc/systemd/timesyncd.conf.d/ksmg.conf"
	// SSHDConfigPath sorts first among sshd's drop-ins ("10-"): sshd keeps
	// the first value of a keyword, so a hardening drop-in after it cannot
	// undo the administrator's own choices (root login, allowed users).
	SSHDConfigPath   = "/etc/ssh/sshd_config.d/10-ksmg-firstboot.conf"
	HostKeyPath      = "/etc/ssh/ssh_host_ed25519_key"
	AuthorizedKeys   = "/etc/ssh/authorized_keys"
	SSHWantsLink     = "/etc/systemd/system/multi-user.target.wants/ssh.service"
	SSHUnit          = "/usr/lib/systemd/system/ssh.service"
	ImportantLogPath = "/var/log/ksmg-important"
	IssuePath        = "/etc/issue.d/ksmg.issue"
	// SSHFirewallPath opens 22/tcp in the image's firewall (an nftables
	// drop-in read by /etc/nftables.conf, provisioner/harden) while SSH is on.
	SSHFirewallPath = "/etc/nftables.d/ksmg-ssh.nft"
	// AdminUser is the console/SSH administrator the wizard creates;
	// the image ships no such account and no default password.
	AdminUser = "admin"
	// ProductGroup owns the product's data and configuration (data contract).
	ProductGroup = "kluser"
)

// networkFile names an interface's networkd file; the prefix marks the
// files this package owns so a reconfiguration can remove stale ones.
func networkFile(ifname string) string { return NetworkDir + "/50-ksmg-" + ifname + ".network" }

// Options control where and how answers are applied.
type Options struct {
	Root string // "/" on the appliance; a scratch directory in tests
	Log  *slog.Logger
	Now  func() time.Time
	// Exec runs a command of the live system (systemctl, hostnamectl);
	// nil runs it, except that systemctl's --no-block jobs are queued over
	// systemd's private socket (jobs_linux.go). Tests record the calls.
	Exec func(ctx context.Context, name string, args ...string) ([]byte, error)
	// Hostname is the running host name; nil asks the kernel.
	Hostname func() (string, error)
	// HostnameByCaller: first boot's unit runs this, and a new name is set
	// by queueing HostnameUnit, which sets the running name from the
	// /etc/hostname written here, instead of asking hostnamed (starting
	// hostnamed for hostnamectl took 2.6 s of first boot under TCG). The
	// gateway takes its name from /etc/hostname (services/routing), so it
	// does not wait for that unit.
	HostnameByCaller bool
	// GatewayStartedByCaller: the caller's unit is ordered before the
	// gateway, which the boot transaction starts once it is done
	// (ksmg-firstboot@.service), so no start is queued for it. The request
	// waits for PID 1, busy starting the system: 0.8 s under TCG, on the
	// gateway's path.
	GatewayStartedByCaller bool
}

func (o *Options) live() bool { return filepath.Clean(o.Root) == "/" }

func (o *Options) path(p string) string { return filepath.Join(o.Root, p) }

// Apply validates a, then writes everything and marks first boot done.
// Services are only touched (systemctl, hostnamectl) when Root is "/",
// and only those whose configuration changed. Each phase's duration is
// logged: first boot is on the critical path of the appliance's start.
func Apply(ctx context.Context, o Options, a answers.Answers) error {
	if o.Root == "" {
		o.Root = "/"
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := a.Validate(); err != nil {
		return fmt.Errorf("answers are not valid: %w", err)
	}
	phase := time.Now()
	took := func(name string) {
		o.Log.Info("first-boot phase done", "phase", name, "elapsed", time.Since(phase).Round(time.Millisecond).String())
		phase = time.Now()
	}
	// The password is hashed (0.5-1.4 s of yescrypt under TCG) while the
	// other files are staged; /etc/shadow is staged last, with the hash.
	hash := func() (string, error) { return a.AdminPasswordHash, nil }
	if a.AdminPasswordHash == "" {
		type hashed struct {
			hash string
			err  error
			took time.Duration
		}
		res := make(chan hashed, 1) // the hash finishes even if planning fails
		go func() {
			start := time.Now()
			h, err := crypt.Hash(a.AdminPassword)
			res <- hashed{h, err, time.Since(start)}
		}()
		hash = sync.OnceValues(func() (string, error) {
			r := <-res
			if r.err != nil {
				return "", fmt.Errorf("hash admin password: %w", r.err)
			}
			o.Log.Info("admin password hashed", "elapsed", r.took.Round(time.Millisecond).String())
			return r.hash, nil
		})
	}
	var t tx
	// A host key only when SSH is on (it is off by default): one Ed25519
	// key, made here in-process, switched in with everything else.
	hostKey, err := hostKey(o, &t, a.SSHEnabled)
	if err != nil {
		return err
	}
	if err := plan(&t, o, a, hash, hostKey); err != nil {
		return err
	}
	if err := t.commit(); err != nil {
		return err
	}
	took("write configuration")
	o.Log.Info("first-boot configuration written", "root", o.Root, "files", len(t.changes))
	if !o.live() {
		o.Log.Info("scratch root: services not touched", "root", o.Root)
		return nil
	}
	err = activate(ctx, o, a, &t)
	took("activate")
	return err
}

// plan reads what it needs from the root and queues every change; the
// stamp is queued last so it only appears once all else is in place.
func plan(t *tx, o Options, a answers.Answers, hash func() (string, error), hostKey string) error {
	passwd, err := readColonFile(o.path("/etc/passwd"))
	if err != nil {
		return err
	}
	group, err := readColonFile(o.path("/etc/group"))
	if err != nil {
		return err
	}
	shadow, err := readColonFile(o.path("/etc/shadow"))
	if err != nil {
		return err
	}
	kluser, ok := group.id(ProductGroup)
	if !ok {
		return fmt.Errorf("%s: group %q is missing; the image must create it (sysusers.d)", o.path("/etc/group"), ProductGroup)
	}
	kluserUID, ok := passwd.id(ProductGroup)
	if !ok {
		return fmt.Errorf("%s: user %q is missing; the image must create it (sysusers.d)", o.path("/etc/passwd"), ProductGroup)
	}
	shadowGID, _ := group.id("shadow")

	// Admin account.
	uid, hasUser := passwd.id(AdminUser)
	gid, hasGroup := group.id(AdminUser)
	if !hasUser || !hasGroup {
		id := freeID(passwd, group)
		if !hasUser {
			uid = id
		}
		if !hasGroup {
			gid = id
		}
	}
	home := "/home/" + AdminUser
	passwd.set(AdminUser, []string{AdminUser, "x", strconv.Itoa(uid), strconv.Itoa(gid), "ksmg administrator", home, "/bin/bash"})
	group.set(AdminUser, []string{AdminUser, "x", strconv.Itoa(gid), ""})
	days := strconv.FormatInt(o.Now().Unix()/86400, 10)
	// Minimum age 1 day, as login.defs says (provisioner/harden); no
	// maximum: passwords do not expire by time (images/HARDENING.md).
	t.file(o.path("/etc/passwd"), passwd.bytes(), 0o644, 0, 0)
	t.file(o.path("/etc/group"), group.bytes(), 0o644, 0, 0)
	t.fileFunc(o.path("/etc/shadow"), func() ([]byte, error) {
		h, err := hash()
		if err != nil {
			return nil, err
		}
		shadow.set(AdminUser, []string{AdminUser, h, days, "1", "99999", "7", "", "", ""})
		return shadow.bytes(), nil
	}, 0o640, 0, shadowGID)
	if gshadow, err := readColonFile(o.path("/etc/gshadow")); err == nil {
		gshadow.set(AdminUser, []string{AdminUser, "!", "", ""})
		t.file(o.path("/etc/gshadow"), gshadow.bytes(), 0o640, 0, shadowGID)
	}
	t.mkdir(o.path("/home"), 0o755, 0, 0)
	t.mkdir(o.path(home), 0o700, uid, gid)

	// Host name.
	t.file(o.path("/etc/hostname"), []byte(a.Hostname+"\n"), 0o644, 0, 0)
	if hosts, err := os.ReadFile(o.path("/etc/hosts")); err == nil {
		t.file(o.path("/etc/hosts"), hostsWithName(hosts, a.Hostname), 0o644, 0, 0)
	}

	// Network: one file per interface; stale files of ours are removed.
	t.mkdir(o.path("/etc/systemd"), 0o755, 0, 0)
	t.mkdir(o.path(NetworkDir), 0o755, 0, 0)
	want := map[string]bool{}
	for _, ifc := range a.Interfaces {
		p := o.path(networkFile(ifc.Name))
		want[p] = true
		t.file(p, networkd(ifc), 0o644, 0, 0)
	}
	old, _ := filepath.Glob(o.path(NetworkDir + "/50-ksmg-*.network"))
	for _, p := range old {
		if !want[p] {
			t.remove(p)
		}
	}

	// Time zone and NTP.
	t.file(o.path("/etc/timezone"), []byte(a.Timezone+"\n"), 0o644, 0, 0)
	t.symlink(o.path("/etc/localtime"), "/usr/share/zoneinfo/"+a.Timezone)
	t.mkdir(o.path(filepath.Dir(NTPPath)), 0o755, 0, 0)
	t.file(o.path(NTPPath), timesyncd(a.NTP), 0o644, 0, 0)

	// Language: system locale and console keyboard (see language.go).
	planLanguage(t, o, a.Language)

	// SSH: sshd reads the one authorized_keys file of the data contract;
	// the service is enabled only when asked.
	t.mkdir(o.path("/etc/ssh"), 0o755, 0, 0)
	t.mkdir(o.path("/etc/ssh/sshd_config.d"), 0o755, 0, 0)
	t.file(o.path(SSHDConfigPath), sshdConfig(a), 0o644, 0, 0)
	t.mkdir(o.path("/etc/systemd/system"), 0o755, 0, 0)
	t.mkdir(o.path(filepath.Dir(SSHWantsLink)), 0o755, 0, 0)
	if a.SSHEnabled {
		// 0644 root:root, not the contract's 0640 kluser: sshd opens the
		// file with the logging-in user's rights, and public keys are
		// not secret.
		t.file(o.path(AuthorizedKeys), []byte(strings.TrimSpace(a.SSHAuthorizedKey)+"\n"), 0o644, 0, 0)
		t.symlink(o.path(SSHWantsLink), SSHUnit)
		t.mkdir(o.path(filepath.Dir(SSHFirewallPath)), 0o700, 0, 0)
		t.file(o.path(SSHFirewallPath), []byte(SSHFirewallRule), 0o600, 0, 0)
	} else {
		t.remove(o.path(AuthorizedKeys))
		t.remove(o.path(SSHWantsLink))
		t.remove(o.path(SSHFirewallPath))
	}

	// Console login banner: agetty shows /etc/issue.d/*.issue and expands
	// \4 and \6 to the current addresses, so it stays right under DHCP.
	t.mkdir(o.path("/etc/issue.d"), 0o755, 0, 0)
	t.file(o.path(IssuePath), issue(a, hostKey), 0o644, 0, 0)

	// Node role and consent.
	t.mkdir(o.path("/etc/opt"), 0o755, 0, 0)
	// Owned by kluser, 0750/0640, as the data contract says for every
	// product location; ksmg-gatewayd's unit keeps /etc read-only all the same.
	t.mkdir(o.path("/etc/opt/kaspersky"), 0o750, kluserUID, kluser)
	node, err := nodeConfig(a, o.Now())
	if err != nil {
		return err
	}
	t.file(o.path(NodeConfigPath), node, 0o640, kluserUID, kluser)

	// Completion stamp, last.
	t.mkdir(o.path("/var"), 0o755, 0, 0)
	t.mkdir(o.path("/var/lib"), 0o755, 0, 0)
	t.mkdir(o.path(filepath.Dir(StampPath)), 0o755, 0, 0)
	t.file(o.path(StampPath), []byte(o.Now().UTC().Format(time.RFC3339)+"\n"), 0o644, 0, 0)
	return nil
}

func issue(a answers.Answers, hostKey string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "ksmg mail gateway %s (%s node)\n  IPv4: \\4  IPv6: \\6\n", a.Hostname, a.Role)
	if a.SSHEnabled {
		who := AdminUser
		if a.SSHRootLogin {
			who += " and root"
		}
		fmt.Fprintf(&b, "  SSH: enabled for %s; host key %s\n", who, hostKey)
	} else {
		b.WriteString("  SSH: off\n")
	}
	b.WriteString("\n")
	return []byte(b.String())
}

func hostsWithName(hosts []byte, fqdn string) []byte {
	short, _, _ := strings.Cut(fqdn, ".")
	entry := "127.0.1.1\t" + fqdn
	if short != fqdn {
		entry += " " + short
	}
	var out []string
	replaced := false
	for _, l := range strings.Split(strings.TrimRight(string(hosts), "\n"), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "127.0.1.1" {
			if !replaced {
				out = append(out, entry)
				replaced = true
			}
			continue
		}
		out = append(out, l)
	}
	if !replaced {
		out = append(out, entry)
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

func networkd(ifc answers.Interface) []byte {
	var b bytes.Buffer
	b.WriteString("# Written by ksmg-firstboot; change with ksmg-firstboot --reconfigure.\n")
	fmt.Fprintf(&b, "[Match]\nName=%s\n\n[Network]\n", ifc.Name)
	if ifc.Mode == answers.ModeDHCP {
		b.WriteString("DHCP=yes\n")
	}
	for _, kv := range [][2]string{{"Address", ifc.Address4}, {"Gateway", ifc.Gateway4}, {"Address", ifc.Address6}, {"Gateway", ifc.Gateway6}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, "%s=%s\n", kv[0], kv[1])
		}
	}
	for _, d := range ifc.DNS {
		fmt.Fprintf(&b, "DNS=%s\n", d)
	}
	if ifc.SearchDomain != "" {
		fmt.Fprintf(&b, "Domains=%s\n", ifc.SearchDomain)
	}
	return b.Bytes()
}

func timesyncd(ntp []string) []byte {
	s := "# Written by ksmg-firstboot.\n[Time]\n"
	if len(ntp) > 0 {
		s += "NTP=" + strings.Join(ntp, " ") + "\n"
	} else {
		s += "# No servers given: timesyncd's FallbackNTP applies.\n"
	}
	return []byte(s)
}

// SSHFirewallRule adds SSH to the firewall's set of open TCP ports.
const SSHFirewallRule = "# Written by ksmg-firstboot: SSH is enabled.\nadd element inet ksmg tcp_open { 22 }\n"

func sshdConfig(a answers.Answers) []byte {
	users, root := AdminUser, "no"
	if a.SSHRootLogin {
		// Granted explicitly at first boot or by --reconfigure: the same
		// authorized key, never a password.
		users, root = AdminUser+" root", "prohibit-password"
	}
	return []byte(`# Written by ksmg-firstboot; change with ksmg-firstboot --reconfigure.
# Only the administrator (and root when granted), only with a key.
AuthorizedKeysFile /etc/ssh/authorized_keys
AllowUsers ` + users + `
PermitRootLogin ` + root + `
PasswordAuthentication no
KbdInteractiveAuthentication no
# The one host key first boot makes.
HostKey ` + HostKeyPath + `
`)
}

// NodeConfig is the product's node file (/etc/opt/kaspersky/ksmg-node.yaml).
type NodeConfig struct {
	Role           string    `yaml:"role"`
	ControlAddress string    `yaml:"control_address,omitempty"`
	JoinToken      string    `yaml:"join_token,omitempty"`
	Language       string    `yaml:"language"`
	EULA           EULA      `yaml:"eula"`
	KSN            KSNConfig `yaml:"ksn"`
}

// EULA records the acceptance.
type EULA struct {
	Accepted   bool   `yaml:"accepted"`
	AcceptedAt string `yaml:"accepted_at"`
}

// KSNConfig records the reputation-service consent. On a Secondary node it
// follows the Control node and Enabled is not decided locally.
type KSNConfig struct {
	Enabled bool   `yaml:"enabled"`
	Source  string `yaml:"source"` // "local" or "control-node"
}

func nodeConfig(a answers.Answers, now time.Time) ([]byte, error) {
	n := NodeConfig{
		Role: a.Role, Language: a.Language,
		EULA: EULA{Accepted: a.EULAAccepted, AcceptedAt: now.UTC().Format(time.RFC3339)},
		KSN:  KSNConfig{Enabled: a.KSN, Source: "local"},
	}
	if a.Role == answers.RoleSecondary {
		n.ControlAddress, n.JoinToken = a.ControlAddress, a.JoinToken
		n.KSN = KSNConfig{Enabled: false, Source: "control-node"}
	}
	b, err := yaml.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("encode node config: %w", err)
	}
	return append([]byte("# Written by ksmg-firstboot; change with ksmg-firstboot --reconfigure.\n"), b...), nil
}

// ReadNodeConfig reads the node file back (reconfiguration prefill).
func ReadNodeConfig(root string) (NodeConfig, error) {
	var n NodeConfig
	b, err := os.ReadFile(filepath.Join(root, NodeConfigPath))
	if err != nil {
		return n, err
	}
	if err := yaml.Unmarshal(b, &n); err != nil {
		return n, fmt.Errorf("%s: %w", filepath.Join(root, NodeConfigPath), err)
	}
	return n, nil
}

// hostKey returns the fingerprint of the root's Ed25519 host key and, when
// SSH is on and there is none yet, queues a new one in t. An existing key
// is kept (its fingerprint is what clients pinned); with SSH off and no
// key, it returns "".
func hostKey(o Options, t *tx, want bool) (string, error) {
	p := o.path(HostKeyPath)
	if pub, err := os.ReadFile(p + ".pub"); err == nil {
		k, _, _, _, err := ssh.ParseAuthorizedKey(pub)
		if err != nil {
			return "", fmt.Errorf("%s: %w", p+".pub", err)
		}
		return Fingerprint(k), nil
	}
	if !want {
		return "", nil
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generate SSH host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "root@ksmg")
	if err != nil {
		return "", fmt.Errorf("encode SSH host key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", err
	}
	t.mkdir(o.path("/etc/ssh"), 0o755, 0, 0) // before the files in it
	t.file(p, pem.EncodeToMemory(block), 0o600, 0, 0)
	t.file(p+".pub", append(bytes.TrimSpace(ssh.MarshalAuthorizedKey(sshPub)), []byte(" root@ksmg\n")...), 0o644, 0, 0)
	return Fingerprint(sshPub), nil
}

// Fingerprint is "TYPE SHA256:..." as ssh-keygen -l shows it.
func Fingerprint(k ssh.PublicKey) string {
	typ := strings.ToUpper(strings.TrimPrefix(k.Type(), "ssh-"))
	return typ + " " + ssh.FingerprintSHA256(k)
}

// HostKeyFingerprints lists "TYPE SHA256:..." of the root's SSH host keys.
func HostKeyFingerprints(root string) ([]string, error) {
	pubs, _ := filepath.Glob(filepath.Join(root, "/etc/ssh/ssh_host_*_key.pub"))
	sort.Strings(pubs)
	var out []string
	for _, p := range pubs {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey(b)
		if err != nil {
			return nil, fmt.Errorf("fingerprint %s: %w", p, err)
		}
		out = append(out, Fingerprint(k))
	}
	return out, nil
}

// activate makes the running system use what changed. The files are
// already in place and valid, so failures here are reported but do not
// undo them: the next boot applies them anyway. Nothing that is already
// in effect is reloaded or restarted (first boot is on the critical path
// of the gateway's start), and every systemctl call is --no-block: the
// units involved may be waiting for first boot to finish.
func activate(ctx context.Context, o Options, a answers.Answers, t *tx) error {
	var errs []error
	execute, hostname := o.Exec, o.Hostname
	if execute == nil {
		var jobs bus
		defer jobs.close()
		execute = jobs.execute
	}
	if hostname == nil {
		hostname = os.Hostname
	}
	run := func(name string, args ...string) {
		// Nothing is ever asked: without the flag systemctl starts
		// systemd-tty-ask-password-agent on first boot's terminal, a
		// program first boot's AppArmor profile does not allow (seen
		// denied in the booted image).
		args = append([]string{"--no-ask-password"}, args...)
		start := time.Now()
		out, err := execute(ctx, name, args...)
		o.Log.Info("activate", "cmd", name+" "+strings.Join(args, " "), "elapsed", time.Since(start).Round(time.Millisecond).String())
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out)))
		}
	}
	// hostnamed, or HostnameUnit at boot, sets the kernel's name from the
	// /etc/hostname just written (the static name wins over the transient
	// one asked for), so this process needs no CAP_SYS_ADMIN.
	if cur, err := hostname(); err != nil || cur != a.Hostname {
		if o.HostnameByCaller {
			run("systemctl", "--no-block", "start", HostnameUnit)
		} else {
			run("hostnamectl", "--transient", "hostname", a.Hostname)
		}
	}
	if networkChanged(t, o, a) {
		run("systemctl", "--no-block", "try-reload-or-restart", "systemd-networkd.service")
	}
	if t.changed(o.path(NTPPath)) && (len(a.NTP) > 0 || t.hadContent(o.path(NTPPath), "NTP=")) {
		run("systemctl", "--no-block", "try-restart", "systemd-timesyncd.service")
	}
	if t.changed(o.path(KeyboardPath)) {
		activateLanguage(ctx, o, execute)
	}
	// The firewall opens SSH's port before sshd (re)starts and closes it
	// after sshd stops (the jobs are queued in this order).
	firewall := t.changed(o.path(SSHFirewallPath))
	if firewall && a.SSHEnabled {
		run("systemctl", "--no-block", "try-reload-or-restart", "nftables.service")
	}
	var start []string
	if !o.GatewayStartedByCaller {
		start = append(start, "ksmg-gatewayd.service")
	}
	switch {
	case a.SSHEnabled && t.changed(o.path(SSHDConfigPath), o.path(AuthorizedKeys), o.path(HostKeyPath)):
		run("systemctl", "--no-block", "restart", "ssh.service")
	case a.SSHEnabled:
		start = append(start, "ssh.service")
	case t.changed(o.path(SSHWantsLink)):
		run("systemctl", "--no-block", "stop", "ssh.service")
	}
	if firewall && !a.SSHEnabled {
		run("systemctl", "--no-block", "try-reload-or-restart", "nftables.service")
	}
	if len(start) > 0 {
		run("systemctl", append([]string{"--no-block", "start"}, start...)...)
	}
	return errors.Join(errs...)
}

// execute runs a command of the live system, queueing systemctl's
// --no-block jobs over systemd's private socket when it can be reached.
func (b *bus) execute(ctx context.Context, name string, args ...string) ([]byte, error) {
	if name == "systemctl" {
		if handled, err := b.run(ctx, args); handled {
			return nil, err
		}
	}
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

// StartUnits queues start jobs for units without waiting for them
// (systemctl --no-block start), over systemd's private socket when it can
// be reached, else by running systemctl.
func StartUnits(ctx context.Context, units ...string) error {
	var jobs bus
	defer jobs.close()
	args := append([]string{"--no-ask-password", "--no-block", "start"}, units...)
	if out, err := jobs.execute(ctx, "systemctl", args...); err != nil {
		return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// WaitUnits starts units and waits until they are up (systemctl start):
// a unit the boot is starting is waited for, an active one returns at
// once.
func WaitUnits(ctx context.Context, units ...string) error {
	args := append([]string{"--no-ask-password", "start"}, units...)
	if out, err := exec.CommandContext(ctx, "systemctl", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// networkChanged: the network files changed in a way networkd has not
// applied yet. Until first boot writes its files, the image's default
// (80-ksmg-dhcp.network) runs DHCP on every Ethernet interface, so plain
// DHCP answers on a system without files of ours change nothing.
func networkChanged(t *tx, o Options, a answers.Answers) bool {
	var ours []string
	hadOurs := false
	for _, c := range t.changes {
		if strings.HasPrefix(c.path, o.path(NetworkDir)+"/50-ksmg-") {
			ours = append(ours, c.path)
			hadOurs = hadOurs || c.before.exists
		}
	}
	if !t.changed(ours...) {
		return false
	}
	if hadOurs {
		return true
	}
	for _, ifc := range a.Interfaces {
		if ifc.Mode != answers.ModeDHCP || len(ifc.DNS) > 0 || ifc.SearchDomain != "" {
			return true
		}
	}
	return false
}

// Done reports whether first boot was completed in root.
func Done(root string) bool {
	_, err := os.Stat(filepath.Join(root, StampPath))
	return err == nil
}

// Important appends one line to /var/log/ksmg-important (created 0640
// root:kluser when missing, per the data contract). Callers never pass
// secret values.
func Important(root string, now time.Time, msg string) error {
	p := filepath.Join(root, ImportantLogPath)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(p), err)
	}
	_, statErr := os.Stat(p)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	if statErr != nil {
		_ = f.Chmod(0o640) // whatever the process umask
		if g, err := readColonFile(filepath.Join(root, "/etc/group")); err == nil {
			if gid, ok := g.id(ProductGroup); ok {
				_ = f.Chown(0, gid)
			}
		}
	}
	if _, err := fmt.Fprintf(f, "%s ksmg-firstboot: %s\n", now.UTC().Format(time.RFC3339), msg); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return f.Sync()
}
