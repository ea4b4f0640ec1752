package harden

import (
	"fmt"
	"io/fs"
	"maps"
	"os/exec"
	"strings"
	"testing"
)

func goodRuntime(t *testing.T) map[string]string {
	dg, _ := fs.ReadFile(Files(), "default-grub")
	cl, err := KernelCmdline(dg)
	if err != nil {
		t.Fatal(err)
	}
	v := map[string]string{
		"firewall": "active", "firewall_input_policy": "drop", "firewall_tcp_open": "25,443,22",
		"apparmor": "active", "apparmor_profiles": "ksmg-firstboot (enforce),ksmg-gatewayd (enforce)",
		"gateway_confinement": "ksmg-gatewayd (enforce)", "apparmor_denials": "0",
		"auditd": "active", "usb_bus": "absent", "audit_enabled": "2", "audit_rules": fmt.Sprint(auditRuleCount() + 30),
		"sysctl_diff": "none", "failed_units": "none", "unsettled_units": "none", "gateway_core_limit": "0", "core_pattern": "|/bin/false",
		"ssh_local_socket": "absent", "listen": "tcp:22,tcp:25,udp:68",
		"secure_log": "640:kluser:kluser", "cmdline": "BOOT_IMAGE=/vmlinuz root=UUID=x ro " + cl + " console=ttyS0,115200",
		"lsm":                            "lockdown,capability,landlock,yama,apparmor,ima,evm",
		"cmdline_unknown":                "spectre_v2=on spec_store_bypass_disable=seccomp",
		"exposure_ksmg-gatewayd.service": "1.4", "exposure_ksmg-logrotate.service": "1.2",
		"exposure_ksmg-firstboot@tty1.service": "2.1",
		"modules_loaded":                       "ahci,autofs4,button,evdev,libahci,libata,nf_tables,scsi_common,scsi_mod,sd_mod,vmw_pvscsi,vmxnet3",
	}
	for _, m := range []string{"/tmp", "/var/tmp", "/dev/shm", "/home", "/var"} {
		v["mount_options_"+m] = "rw,nosuid,nodev,noexec,relatime"
	}
	v["mount_options_/proc"] = "rw,nosuid,nodev,noexec,relatime,hidepid=invisible"
	v["mount_options_/dev"] = "rw,nosuid,noexec,relatime,size=965544k,nr_inodes=241386,mode=755,inode64"
	return v
}

func TestCheckRuntime(t *testing.T) {
	t.Parallel()
	notes, err := CheckRuntime(goodRuntime(t), true)
	if err != nil {
		t.Fatalf("good values rejected: %v", err)
	}
	if !strings.Contains(strings.Join(notes, "\n"), "ksmg-firstboot@tty1.service exposure 2.1") {
		t.Errorf("first boot's exposure not reported: %v", notes)
	}
	for _, tc := range []struct {
		key, val string
		ssh      bool
		want     string
	}{
		{"firewall", "inactive", true, "firewall="},
		{"firewall_input_policy", "accept", true, "policy"},
		{"firewall_tcp_open", "25,443", true, "22 must be open"},
		{"firewall_tcp_open", "25,22", true, "lacks 443"},
		{"gateway_confinement", "unconfined", true, "gateway_confinement"},
		{"apparmor_profiles", "ksmg-gatewayd (complain)", true, "ksmg-gatewayd (enforce)"},
		{"apparmor_denials", "3", true, "apparmor_denials"},
		{"audit_enabled", "1", true, "audit_enabled"},
		{"usb_bus", "present", true, "usb_bus"},
		{"failed_units", "usbguard.service", true, "failed_units=\"usbguard.service\""},
		{"failed_units", "", true, "failed_units"},
		{"unsettled_units", "usbguard.service", true, "unsettled_units"},
		{"audit_rules", "3", true, "audit_rules"},
		{"sysctl_diff", "kernel.sysrq=438", true, "sysctl_diff"},
		{"gateway_core_limit", "unlimited", true, "gateway_core_limit"},
		{"ssh_local_socket", "present", true, "ssh_local_socket"},
		{"listen", "tcp:22,tcp:25,udp:5355", true, "LLMNR"},
		{"listen", "tcp:25", true, "sshd must listen"},
		{"mount_options_/tmp", "rw,nosuid,nodev", true, "/tmp is mounted without noexec"},
		{"secure_log", "644:root:root", true, "secure_log"},
		{"mount_options_/proc", "rw,nosuid,nodev,noexec", true, "hidepid"},
		{"mount_options_/dev", "rw,nosuid,relatime,mode=755", true, "/dev is mounted without noexec"},
		{"cmdline", "root=UUID=x ro", true, "cmdline"},
		{"cmdline_unknown", "spectre_v2=on page_poison=1", true, `does not know "page_poison=1"`},
		{"cmdline_unknown", "", true, "was not read"},
		{"lsm", "lockdown,capability,landlock,yama,apparmor,tomoyo,bpf,ipe,ima,evm", true, "as the command line's lsm= says"},
		{"lsm", "", true, "as the command line's lsm= says"},
		{"exposure_ksmg-gatewayd.service", "1.6", true, "exposure 1.6"},
		{"exposure_ksmg-logrotate.service", "2.1", true, "exposure 2.1"},
		{"exposure_ksmg-firstboot@tty1.service", "2.2", true, "exposure 2.2, want <= 2.1"},
		{"exposure_ksmg-console-status.service", "2.1", true, "exposure 2.1, want <= 2.0"},
		{"firewall_tcp_open", "25,443,22", false, "22 must be open"},
		{"modules_loaded", "autofs4,ip_tables,x_tables", true, "module ip_tables is loaded"},
		{"modules_loaded", "autofs4,kvm_amd,kvm", true, "module kvm_amd is loaded"},
		{"modules_loaded", "sg,usb_storage", true, "module usb_storage is loaded"},
		{"modules_loaded", "", true, "did not read /proc/modules"},
	} {
		v := maps.Clone(goodRuntime(t))
		v[tc.key] = tc.val
		if !tc.ssh {
			v["listen"] = "tcp:25"
		}
		if _, err := CheckRuntime(v, tc.ssh); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%q (ssh %v): err = %v, want %q", tc.key, tc.val, tc.ssh, err, tc.want)
		}
	}
}

// TestRuntimeProbeParses: the probe is valid POSIX sh (dash, the image's sh).
func TestRuntimeProbeParses(t *testing.T) {
	t.Parallel()
	for _, sh := range []string{"dash", "sh"} {
		if out, err := exec.Command(sh, "-n", "-c", RuntimeProbe).CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", sh, err, out)
		}
	}
}

func TestCheckLSM(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cmdline, lsm, want string
	}{
		{"root=UUID=x lsm=lockdown,capability,apparmor", "lockdown,capability,apparmor", ""},
		{"root=UUID=x lsm=lockdown,capability,yama", "lockdown,capability,yama", "AppArmor is not among"},
		{"root=UUID=x", "lockdown,capability,apparmor", "has no lsm="},
		{"root=UUID=x lsm=lockdown,capability,apparmor", "lockdown,capability,apparmor,bpf", "want \"lockdown,capability,apparmor\""},
	} {
		errs := checkLSM(map[string]string{"cmdline": tc.cmdline, "lsm": tc.lsm})
		switch {
		case tc.want == "" && len(errs) > 0:
			t.Errorf("%q, %q: %v", tc.cmdline, tc.lsm, errs)
		case tc.want != "" && (len(errs) == 0 || !strings.Contains(errs[0].Error(), tc.want)):
			t.Errorf("%q, %q: %v, want an error with %q", tc.cmdline, tc.lsm, errs, tc.want)
		}
	}
}
