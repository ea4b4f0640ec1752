//go:build linux

package images

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/ksmg-appliance/ksmg/appliance"
	"github.com/ksmg-appliance/ksmg/internal/unitcheck"
)

func TestUnknownFormat(t *testing.T) {
	t.Parallel()
	spec, err := appliance.Load("")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Build(context.Background(), Options{Spec: spec, Formats: []string{"raw", "qcow9"}, OutDir: t.TempDir(), BinDir: ".", CacheDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), `unknown output format "qcow9"`) || !strings.Contains(err.Error(), "raw") {
		t.Fatalf("err = %v, want unknown format naming the known ones", err)
	}
}

func TestWriteSparseAt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src, err := os.Create(filepath.Join(dir, "src"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// data at 0, a hole, an explicit zero block, data near the end.
	if _, err := src.WriteAt([]byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := src.WriteAt(make([]byte, 1<<20), 3<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := src.WriteAt([]byte("tail"), 8<<20-4); err != nil {
		t.Fatal(err)
	}
	dst, err := os.Create(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := dst.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	const off = 5 << 20
	if err := writeSparseAt(context.Background(), dst, src, off, 8<<20); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 8<<20)
	copy(want, "hello")
	copy(want[8<<20-4:], "tail")
	got := make([]byte, 8<<20)
	if _, err := dst.ReadAt(got, off); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("copied data differs")
	}
	var st1 = statBlocks(t, dst.Name())
	if st1 > 4<<20 {
		t.Errorf("destination uses %d bytes: holes and zero blocks were written", st1)
	}
}

func TestDiskIDsFixed(t *testing.T) {
	t.Parallel()
	spec, _ := appliance.Load("")
	a, b := newDiskIDs(spec), newDiskIDs(spec)
	if a != b {
		t.Fatalf("ids differ between calls")
	}
	spec.Version = "9.9.9"
	if c := newDiskIDs(spec); c.Disk == a.Disk || c.RootUUID == a.RootUUID {
		t.Errorf("a new version must get new ids")
	}
	seen := map[string]bool{}
	for _, v := range []string{a.Disk, a.ESPPart, a.RootPart, a.VarPart, a.RootUUID, a.VarUUID, a.RootSeed, a.VarSeed} {
		if len(v) != 36 || seen[v] {
			t.Errorf("id %q malformed or repeated", v)
		}
		seen[v] = true
	}
}

func TestCheckNoCredentials(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		shadow string
		ok     bool
	}{
		{"root:*:20000:0:99999:7:::\nkluser:!*:20000::::::\n", true},
		{"root:$y$j9T$abc$def:20000:0:99999:7:::\n", false},
		{"root::20000:0:99999:7:::\n", false},
	} {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "etc/shadow"), []byte(tc.shadow), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := checkNoCredentials(dir); (err == nil) != tc.ok {
			t.Errorf("%q: err = %v", tc.shadow, err)
		}
	}
}

func statBlocks(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// TestHashMemo: a large sparse file's SHA-256 is memoised under its sparse
// fingerprint; a change in the data changes the fingerprint.
func TestHashMemo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "disk.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("gpt"), 512); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("data"), 16<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b := hasher{cacheDir: filepath.Join(dir, "cache"), memoMin: 1 << 20}
	ctx := context.Background()
	want := fileSHA256(t, p)
	for i := 0; i < 2; i++ {
		got, size, err := b.hashFile(ctx, p)
		if err != nil || got != want || size != 64<<20 {
			t.Fatalf("pass %d: %s %d %v, want %s", i, got, size, err, want)
		}
	}
	memos, _ := filepath.Glob(filepath.Join(dir, "cache", "sha256", "*"))
	if len(memos) != 1 {
		t.Fatalf("memo files: %v", memos)
	}
	// Same extents, different byte: new fingerprint, correct new hash.
	f, _ = os.OpenFile(p, os.O_RDWR, 0)
	if _, err := f.WriteAt([]byte("dbta"), 16<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, _, err := b.hashFile(ctx, p)
	if want2 := fileSHA256(t, p); err != nil || got != want2 || got == want {
		t.Fatalf("after change: %s %v, want %s", got, err, want2)
	}
}

// TestConsoleStatusExposure: the status line needs no privilege at all
// (unit states over D-Bus, /sys, statfs): a transient user in a sandbox,
// rated at most 1.0 by systemd-analyze security (9.6 before).
func TestConsoleStatusExposure(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	unit := filepath.Join(dir, "ksmg-console-status.service")
	if err := os.WriteFile(unit, embedded("ksmg-console-status.service"), 0o644); err != nil {
		t.Fatal(err)
	}
	level, out, err := unitcheck.Exposure(unit, 1.0)
	t.Logf("ksmg-console-status.service: exposure %.1f", level)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := exec.Command("systemd-analyze", "verify", "--man=no", unit).CombinedOutput(); err != nil || len(out) != 0 {
		// verify wants ExecStart to exist on the host; only that may be said.
		if !strings.Contains(string(out), "/usr/lib/ksmg/console-status") {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	}
}

// debianUnits are the units of unitOrderings as Debian 13 installs them
// (console-setup 1.242, auditd 4.0.2, apparmor 4.1.0, systemd 257.13-1~deb13u1).
var debianUnits = map[string]string{
	"keyboard-setup.service":       "[Unit]\nDescription=Set the console keyboard layout\nDefaultDependencies=no\nBefore=local-fs-pre.target\nWants=local-fs-pre.target\nConditionPathExists=/bin/setupcon\n\n[Service]\nType=oneshot\nExecStart=/lib/console-setup/keyboard-setup.sh\nRemainAfterExit=yes\n\n[Install]\nWantedBy=sysinit.target\n",
	"audit-rules.service":          "[Unit]\nDescription=Load Audit Rules\nConditionKernelCommandLine=!audit=0\nConditionKernelCommandLine=!audit=off\nDefaultDependencies=no\n# We need the local file system for the rules. Augenrules uses /tmp while\n# constructing rules, so we have to wait for that to be available, too.\nAfter=local-fs.target systemd-tmpfiles-setup.service\n\nDocumentation=man:auditctl(8) https://github.com/linux-audit/audit-documentation\n\n[Service]\nType=oneshot\nExecStart=/usr/sbin/augenrules --load\n\n[Install]\nWantedBy=multi-user.target\n\n",
	"apparmor.service":             "[Unit]\nDescription=Load AppArmor profiles\nDefaultDependencies=no\nBefore=sysinit.target\nAfter=local-fs.target\nAfter=systemd-journald-audit.socket\nRequiresMountsFor=/var/cache/apparmor\nAssertPathIsReadWrite=/sys/kernel/security/apparmor/.load\nConditionSecurity=apparmor\n\n[Service]\nType=oneshot\nExecStart=/lib/apparmor/apparmor.systemd reload\nExecReload=/lib/apparmor/apparmor.systemd reload\nExecStop=/bin/true\nRemainAfterExit=yes\n\n[Install]\nWantedBy=sysinit.target\n",
	"console-setup.service":        "[Unit]\nDescription=Set console font and keymap\nDefaultDependencies=no\nAfter=console-screen.service kbd.service local-fs.target\nBefore=display-manager.service\nRequiresMountsFor=/usr\nConditionPathExists=/bin/setupcon\n\n[Service]\nType=oneshot\nExecStart=/lib/console-setup/console-setup.sh\nRemainAfterExit=yes\n\n[Install]\nWantedBy=multi-user.target\n",
	"systemd-networkd.service":     "#  SPDX-License-Identifier: LGPL-2.1-or-later\n#\n#  This file is part of systemd.\n#\n#  systemd is free software; you can redistribute it and/or modify it\n#  under the terms of the GNU Lesser General Public License as published by\n#  the Free Software Foundation; either version 2.1 of the License, or\n#  (at your option) any later version.\n\n[Unit]\nDescription=Network Configuration\nDocumentation=man:systemd-networkd.service(8)\nDocumentation=man:org.freedesktop.network1(5)\nConditionCapability=CAP_NET_ADMIN\nDefaultDependencies=no\n# systemd-udevd.service can be dropped once tuntap is moved to netlink\nAfter=systemd-networkd.socket systemd-udevd.service network-pre.target systemd-sysusers.service systemd-sysctl.service\nBefore=network.target multi-user.target shutdown.target initrd-switch-root.target\nConflicts=shutdown.target initrd-switch-root.target\nWants=systemd-networkd.socket network.target systemd-networkd-persistent-storage.service\n\n[Service]\nAmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_NET_BROADCAST CAP_NET_RAW CAP_BPF CAP_SYS_ADMIN\nBusName=org.freedesktop.network1\nCapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_NET_BROADCAST CAP_NET_RAW CAP_BPF CAP_SYS_ADMIN\nDeviceAllow=char-* rw\nExecStart=!!/usr/lib/systemd/systemd-networkd\nFileDescriptorStoreMax=512\nImportCredential=network.wireguard.*\nLockPersonality=yes\nMemoryDenyWriteExecute=yes\nNoNewPrivileges=yes\nProtectProc=invisible\nProtectClock=yes\nProtectControlGroups=yes\nProtectHome=yes\nProtectKernelLogs=yes\nProtectKernelModules=yes\nProtectSystem=strict\nRestart=on-failure\nRestartKillSignal=SIGUSR2\nRestartSec=0\nRestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6 AF_PACKET\nRestrictNamespaces=yes\nRestrictRealtime=yes\nRestrictSUIDSGID=yes\nRuntimeDirectory=systemd/netif\nRuntimeDirectoryPreserve=yes\nSystemCallArchitectures=native\nSystemCallErrorNumber=EPERM\nSystemCallFilter=@system-service bpf\nType=notify-reload\nUser=systemd-network\nWatchdogSec=3min\n\n[Install]\nWantedBy=multi-user.target\nAlso=systemd-networkd.socket\nAlias=dbus-org.freedesktop.network1.service\n\n# The output from this generator is used by udevd and networkd. Enable it by\n# default when enabling systemd-networkd.service.\nAlso=systemd-network-generator.service\n\n# We want to enable systemd-networkd-wait-online.service whenever this service\n# is enabled. systemd-networkd-wait-online.service has\n# WantedBy=network-online.target, so enabling it only has an effect if\n# network-online.target itself is enabled or pulled in by some other unit.\nAlso=systemd-networkd-wait-online.service\n",
	"systemd-udevd.service":        "#  SPDX-License-Identifier: LGPL-2.1-or-later\n#\n#  This file is part of systemd.\n#\n#  systemd is free software; you can redistribute it and/or modify it\n#  under the terms of the GNU Lesser General Public License as published by\n#  the Free Software Foundation; either version 2.1 of the License, or\n#  (at your option) any later version.\n\n[Unit]\nDescription=Rule-based Manager for Device Events and Files\nDocumentation=man:systemd-udevd.service(8) man:udev(7)\nDefaultDependencies=no\nAfter=systemd-sysusers.service systemd-hwdb-update.service\nBefore=sysinit.target\nWants=systemd-udev-load-credentials.service\nConditionPathIsReadWrite=/sys\n\n[Service]\nCapabilityBoundingSet=~CAP_SYS_TIME CAP_WAKE_ALARM\nDelegate=pids\nDelegateSubgroup=udev\nType=notify-reload\n# Note that udev will reset the value internally for its workers\nOOMScoreAdjust=-1000\nSockets=systemd-udevd-control.socket systemd-udevd-kernel.socket\nRestart=always\nRestartSec=0\nExecStart=/usr/lib/systemd/systemd-udevd\nKillMode=mixed\nTasksMax=infinity\nPrivateMounts=yes\nProtectHostname=yes\nMemoryDenyWriteExecute=yes\nRestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6\nRestrictRealtime=yes\nRestrictSUIDSGID=yes\nSystemCallFilter=@system-service @module @raw-io bpf\nSystemCallFilter=~@clock\nSystemCallErrorNumber=EPERM\nSystemCallArchitectures=native\nLockPersonality=yes\nIPAddressDeny=any\nWatchdogSec=3min\n",
	"systemd-udev-trigger.service": "#  SPDX-License-Identifier: LGPL-2.1-or-later\n#\n#  This file is part of systemd.\n#\n#  systemd is free software; you can redistribute it and/or modify it\n#  under the terms of the GNU Lesser General Public License as published by\n#  the Free Software Foundation; either version 2.1 of the License, or\n#  (at your option) any later version.\n\n[Unit]\nDescription=Coldplug All udev Devices\nDocumentation=man:udev(7) man:systemd-udevd.service(8)\nDefaultDependencies=no\nWants=systemd-udevd.service\nAfter=systemd-udevd-kernel.socket systemd-udevd-control.socket\nBefore=sysinit.target\nConditionPathIsReadWrite=/sys\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=-udevadm trigger --type=all --action=add --prioritized-subsystem=module,block,tpmrm,net,tty,input\n",
}

func TestUnitOrderings(t *testing.T) {
	// What each override must order differently, spelled out here rather
	// than taken from unitOrderings.
	want := map[string]struct{ gone, has []string }{
		"keyboard-setup.service": {gone: []string{"local-fs-pre.target"}, has: []string{"Before=getty@tty1.service"}},
		"audit-rules.service":    {gone: []string{"local-fs.target", "systemd-tmpfiles-setup.service"}, has: []string{"RequiresMountsFor=/var/log /tmp"}},
		"apparmor.service":       {gone: []string{"local-fs.target"}, has: []string{"RequiresMountsFor=/var/cache/apparmor", "Before=sysinit.target"}},
		"console-setup.service":  {gone: []string{"local-fs.target"}, has: []string{"After=console-screen.service kbd.service", "Before=getty@tty1.service"}},
		"systemd-networkd.service": {gone: []string{"systemd-udevd.service"},
			has: []string{"After=systemd-networkd.socket network-pre.target systemd-sysusers.service systemd-sysctl.service", "Before=network.target multi-user.target shutdown.target initrd-switch-root.target"}},
		"systemd-udevd.service":        {gone: []string{"sysinit.target"}, has: []string{"After=systemd-sysusers.service systemd-hwdb-update.service"}},
		"systemd-udev-trigger.service": {gone: []string{"sysinit.target"}, has: []string{"Wants=systemd-udevd.service", "After=systemd-udevd-kernel.socket systemd-udevd-control.socket"}},
	}
	if len(unitOrderings) != len(want) {
		t.Fatalf("%d unit orderings, want %d", len(unitOrderings), len(want))
	}
	for _, u := range unitOrderings {
		t.Run(u.Unit, func(t *testing.T) {
			debian, ok := debianUnits[u.Unit]
			if !ok {
				t.Fatalf("no Debian text for %s", u.Unit)
			}
			got, err := u.override(debian)
			if err != nil {
				t.Fatal(err)
			}
			code := regexp.MustCompile(`(?m)^#.*\n`).ReplaceAllString(string(got), "")
			for _, g := range want[u.Unit].gone {
				if strings.Contains(code, g) {
					t.Errorf("override still names %s:\n%s", g, got)
				}
			}
			for _, h := range want[u.Unit].has {
				if !strings.Contains(code, "\n"+h+"\n") {
					t.Errorf("override lacks %q:\n%s", h, got)
				}
			}
			for _, l := range strings.Split(code, "\n") {
				if !strings.Contains(debian, l) && !slices.Contains(want[u.Unit].has, l) {
					t.Errorf("override adds %q", l)
				}
			}
			if !strings.Contains(string(got), "[Unit]\n# ksmg-appliance") {
				t.Errorf("override does not say why, after [Unit]:\n%s", got)
			}
			// Nothing else changes: without the lines the override adds,
			// Debian's lines are there in order, less the replaced ones.
			debianLines := strings.Split(debian, "\n")
			var rest []string
			for _, l := range strings.Split(string(got), "\n") {
				added := slices.Contains(u.Add, l) || (strings.HasPrefix(l, "#") && !slices.Contains(debianLines, l)) ||
					slices.ContainsFunc(u.Replace, func(r [2]string) bool { return r[1] != "" && r[1] == l })
				if !added {
					rest = append(rest, l)
				}
			}
			kept := slices.DeleteFunc(debianLines, func(l string) bool {
				return slices.ContainsFunc(u.Replace, func(r [2]string) bool { return r[0] == l })
			})
			if !slices.Equal(rest, kept) {
				t.Errorf("override changes more than the ordering:\n%s", got)
			}
			// A Debian unit without one of the lines, or with one twice,
			// fails the build.
			for _, r := range u.Replace {
				if _, err := u.override(strings.Replace(debian, r[0]+"\n", "", 1)); err == nil {
					t.Errorf("a unit without %q was accepted", r[0])
				}
				if _, err := u.override(strings.Replace(debian, r[0]+"\n", r[0]+"\n"+r[0]+"\n", 1)); err == nil {
					t.Errorf("a unit with %q twice was accepted", r[0])
				}
			}
		})
	}
}
