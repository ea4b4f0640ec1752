package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/firstboot/apply"
	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
	"github.com/ksmg-appliance/ksmg/firstboot/sources"
)

func completeKV(hostname string) map[string]string {
	return map[string]string{
		"ksmg.eula.accepted":           "true",
		"ksmg.admin.password":          "Correct-Horse-9",
		"ksmg.hostname":                hostname,
		"ksmg.network.mode":            "static",
		"ksmg.network.address":         "192.0.2.10/24",
		"ksmg.network.gateway":         "192.0.2.1",
		"ksmg.network.dns":             "192.0.2.53",
		"ksmg.timezone":                "Europe/Prague",
		"ksmg.cluster.role":            "secondary",
		"ksmg.cluster.control_address": "ctl.example.com",
		"ksmg.cluster.join_token":      "0123456789abcdef0123",
	}
}

func ovfEnvDoc(kv map[string]string) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:oe="http://schemas.dmtf.org/ovf/environment/1" xmlns:ve="http://www.vmware.com/schema/ovfenv" oe:id="">
<PlatformSection><Kind>VMware ESXi</Kind></PlatformSection>
<PropertySection>
`)
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "<Property oe:key=%q oe:value=%q/>\n", k, kv[k])
	}
	b.WriteString("</PropertySection>\n</Environment>\n")
	return b.String()
}

// sourceSetups put answers where each unattended source reads them and
// return the flags pointing the command there.
var sourceSetups = map[string]func(t *testing.T, kv map[string]string) []string{
	// The VMware backdoor exists only inside a VMware guest, so a script
	// stands in for vmware-rpctool, printing the OVF environment ESXi serves.
	"ovf": func(t *testing.T, kv map[string]string) []string {
		dir := t.TempDir()
		doc := filepath.Join(dir, "ovfenv.xml")
		must(t, os.WriteFile(doc, []byte(ovfEnvDoc(kv)), 0o644))
		tool := filepath.Join(dir, "vmware-rpctool")
		// First boot's completion signal (info-set) leaves a file.
		must(t, os.WriteFile(tool, []byte("#!/bin/sh\n[ \"$1\" = 'info-set guestinfo.ksmg.firstboot done' ] && { touch '"+doc+".signalled'; exit 0; }\n[ \"$1\" = 'info-get guestinfo.ovfEnv' ] || exit 2\ncat '"+doc+"'\n"), 0o755))
		return []string{"--vmware-rpctool", tool, "--dmi-vendor", vmwareVendor(t)}
	},
	"kvp": func(t *testing.T, kv map[string]string) []string {
		pool := filepath.Join(t.TempDir(), ".kvp_pool_0")
		var recs []sources.KVPRecord
		recs = append(recs, sources.KVPRecord{Key: "HostName", Value: "hyperv-host-01"})
		for k, v := range kv {
			recs = append(recs, sources.KVPRecord{Key: k, Value: v})
		}
		data, err := sources.EncodeKVPPool(recs)
		must(t, err)
		must(t, os.WriteFile(pool, data, 0o644))
		return []string{"--kvp-pool", pool, "--guest-kvp-pool", filepath.Join(filepath.Dir(pool), ".kvp_pool_1")}
	},
	"credentials": func(t *testing.T, kv map[string]string) []string {
		dir := t.TempDir()
		for k, v := range kv {
			must(t, os.WriteFile(filepath.Join(dir, k), []byte(v+"\n"), 0o400))
		}
		return []string{"--credentials-dir", dir}
	},
	"seed": func(t *testing.T, kv map[string]string) []string {
		p := filepath.Join(t.TempDir(), "ksmg-seed.yaml")
		must(t, os.WriteFile(p, sources.FormatSeed(kv), 0o644))
		return []string{"--seed", p}
	},
}

// runNoTTY runs the command with stdin not a terminal: it cannot prompt.
func runNoTTY(t *testing.T, args ...string) (string, error) {
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "CREDENTIALS_DIRECTORY=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func TestUnattendedComplete(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"ovf", "kvp", "credentials", "seed"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			root := scratchRoot(t)
			extra := sourceSetups[name](t, completeKV("gw-"+name))
			out, err := runNoTTY(t, append(hermetic(t, root), extra...)...)
			if err != nil {
				t.Fatalf("unattended run failed: %v\n%s", err, out)
			}
			if !strings.Contains(out, "ksmg appliance is set up") || strings.Contains(out, "Correct-Horse-9") || strings.Contains(out, "0123456789abcdef0123") {
				t.Fatalf("unexpected output (or a secret in it):\n%s", out)
			}
			if got := readFile(t, root, "/etc/hostname"); got != "gw-"+name+"\n" {
				t.Fatalf("hostname %q", got)
			}
			if got := readFile(t, root, apply.NodeConfigPath); !strings.Contains(got, "role: secondary") {
				t.Fatalf("node config:\n%s", got)
			}
			if !apply.Done(root) {
				t.Fatal("not marked done")
			}
			if name == "kvp" {
				pool := extra[1]
				data, _ := os.ReadFile(pool)
				if bytes.Contains(data, []byte("Correct-Horse-9")) || bytes.Contains(data, []byte("0123456789abcdef0123")) {
					t.Fatal("secrets left in the KVP pool")
				}
				if !bytes.Contains(data, []byte("gw-kvp")) || !bytes.Contains(data, []byte("hyperv-host-01")) {
					t.Fatal("scrubbing removed non-secret records")
				}
				// The guest told the host it is done (pool 1).
				recs, err := sources.ParseKVPPool(must1(os.ReadFile(extra[3])))
				if err != nil || len(recs) != 1 || recs[0] != (sources.KVPRecord{Key: sources.DoneKey, Value: sources.DoneValue}) {
					t.Fatalf("guest pool: %v %v", recs, err)
				}
			}
			if name == "ovf" {
				// The guest told the vSphere host it is done.
				if _, err := os.Stat(filepath.Join(filepath.Dir(extra[1]), "ovfenv.xml.signalled")); err != nil {
					t.Fatalf("no completion signal through vmware-rpctool: %v", err)
				}
			}
			// Second boot: nothing asked, nothing changed.
			before := readFile(t, root, "/etc/shadow")
			out, err = runNoTTY(t, hermetic(t, root)...)
			if err != nil || readFile(t, root, "/etc/shadow") != before {
				t.Fatalf("second run must be a no-op: %v\n%s", err, out)
			}
		})
	}
}

func TestUnattendedPrecedence(t *testing.T) {
	t.Parallel()
	root := scratchRoot(t)
	args := hermetic(t, root)
	seedKV := completeKV("from-seed")
	seedKV["ksmg.network.ntp"] = "ntp.seed.example"
	args = append(args, sourceSetups["seed"](t, seedKV)...)
	args = append(args, sourceSetups["credentials"](t, map[string]string{"ksmg.hostname": "from-credentials"})...)
	args = append(args, sourceSetups["ovf"](t, map[string]string{"ksmg.timezone": "UTC"})...)
	out, err := runNoTTY(t, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := readFile(t, root, "/etc/hostname"); got != "from-credentials\n" {
		t.Errorf("credentials must win over the seed file: %q", got)
	}
	if got := readFile(t, root, "/etc/timezone"); got != "UTC\n" {
		t.Errorf("OVF must win over all: %q", got)
	}
	if got := readFile(t, root, apply.NTPPath); !strings.Contains(got, "NTP=ntp.seed.example") {
		t.Errorf("seed values not overridden must stay: %q", got)
	}
}

func TestUnattendedPartialWithoutConsoleFails(t *testing.T) {
	t.Parallel()
	root := scratchRoot(t)
	args := append(hermetic(t, root), sourceSetups["credentials"](t, map[string]string{"ksmg.hostname": "gw-partial"})...)
	out, err := runNoTTY(t, args...)
	if err == nil || !strings.Contains(out, "answers are incomplete and there is no console") {
		t.Fatalf("want a clear failure, got %v\n%s", err, out)
	}
	if apply.Done(root) {
		t.Fatal("marked done with partial answers")
	}
}

// walkToHostname answers the steps before the host name in the wizard.
func walkToHostname(tt *tmuxTerm) string {
	tt.focus("Language")
	tt.keys("Enter")
	tt.focus("License agreement")
	tt.keys("Enter")
	tt.focus("Do you accept the license agreement?")
	tt.keys("y")
	tt.focus("Participate in Kaspersky Security Network?")
	tt.keys("Enter")
	tt.fill("Administrator password", "Correct-Horse-9")
	tt.fill("Confirm password", "Correct-Horse-9")
	return tt.focus("Host name")
}

func TestUnattendedPartialOpensPrefilled(t *testing.T) {
	t.Parallel()
	root := scratchRoot(t)
	kvpArgs := sourceSetups["kvp"](t, map[string]string{"ksmg.hostname": "gw-partial", "ksmg.eula.accepted": "true", "ksmg.cluster.join_token": "0123456789abcdef0123"})
	args := append(hermetic(t, root), kvpArgs...)
	tt := startTerm(t, []string{"TERM=xterm-256color"}, args...)
	tt.focus("Language")
	tt.keys("Enter")
	// The EULA was accepted unattended: the confirmation is preselected.
	tt.focus("License agreement")
	tt.keys("Enter")
	tt.focus("Do you accept the license agreement?")
	tt.keys("Enter")
	tt.focus("Participate in Kaspersky Security Network?")
	tt.keys("Enter")
	tt.fill("Administrator password", "Correct-Horse-9")
	tt.fill("Confirm password", "Correct-Horse-9")
	if s := tt.focus("Host name"); !strings.Contains(focused(s), "gw-partial") {
		t.Fatalf("host name not prefilled:\n%s", s)
	}
	tt.keys("C-c")
	if s := tt.waitFor("EXIT="); !strings.Contains(s, "EXIT=1") || !strings.Contains(s, "setup aborted") {
		t.Fatalf("abort not reported:\n%s", s)
	}
	if apply.Done(root) {
		t.Fatal("marked done after abort")
	}
	// Not applied, so not used: the secret stays for the restarted wizard.
	if data, _ := os.ReadFile(kvpArgs[1]); !bytes.Contains(data, []byte("0123456789abcdef0123")) {
		t.Fatal("secret scrubbed although nothing was applied")
	}
}

func TestUnattendedInvalidReportedAndValidPrefilled(t *testing.T) {
	t.Parallel()
	root := scratchRoot(t)
	kv := map[string]string{"ksmg.hostname": "gw-valid", "ksmg.timezone": "Mars/Olympus", "ksmg.admin.password": "weak-secret"}
	args := append(hermetic(t, root), sourceSetups["seed"](t, kv)...)
	tt := startTerm(t, []string{"TERM=xterm-256color"}, args...)
	s := tt.waitText(catalogOf(t, "en").tr("%d unattended answers were rejected; correct them in the steps below:", 2))
	for _, want := range []string{"ksmg.timezone", "ksmg.admin.password"} {
		if !strings.Contains(strings.ReplaceAll(s, "\n", " "), want) {
			t.Errorf("console does not report %s:\n%s", want, s)
		}
	}
	log := readFile(t, root, apply.ImportantLogPath)
	for _, want := range []string{"unattended answer rejected: ksmg.timezone: time zone \"Mars/Olympus\" is not in the tz database (from seed file", "unattended answer rejected: ksmg.admin.password"} {
		if !strings.Contains(log, want) {
			t.Errorf("important log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "weak-secret") || strings.Contains(tt.history(), "weak-secret") {
		t.Fatal("a rejected secret was logged or shown")
	}
	if s := walkToHostname(tt); !strings.Contains(focused(s), "gw-valid") {
		t.Fatalf("valid answer not prefilled:\n%s", s)
	}
	tt.keys("C-c")
	tt.waitFor("EXIT=")
}

func TestReconfigure(t *testing.T) {
	t.Parallel()
	root := scratchRoot(t)
	if out, err := runNoTTY(t, append(hermetic(t, root), sourceSetups["seed"](t, completeKV("gw-first"))...)...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	tt := startTerm(t, []string{"TERM=xterm-256color"}, append(hermetic(t, root), "--reconfigure")...)
	tt.focus("Language")
	tt.keys("Enter")
	tt.focus("License agreement")
	tt.keys("Enter")
	tt.focus("Do you accept the license agreement?")
	tt.keys("Enter") // accepted before
	tt.focus("Participate in Kaspersky Security Network?")
	tt.keys("Enter")
	if s := tt.focus("Administrator password"); !strings.Contains(s, "Leave empty to keep") {
		t.Fatalf("current password cannot be kept:\n%s", s)
	}
	tt.fill("Administrator password", "")
	tt.fill("Confirm password", "")
	if s := tt.focus("Host name"); !strings.Contains(focused(s), "gw-first") {
		t.Fatalf("current host name not prefilled:\n%s", s)
	}
	tt.keys("C-c")
	tt.waitFor("EXIT=")
}

func TestListKeys(t *testing.T) {
	t.Parallel()
	out, err := runNoTTY(t, "--list-keys")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, k := range []string{"ksmg.hostname ", "ksmg.admin.password ", "ksmg.cluster.join_token ", "ksmg.ssh.authorized_key "} {
		if !strings.Contains(out, k) {
			t.Errorf("--list-keys lacks %s", k)
		}
	}
	if !strings.Contains(out, "ksmg.admin.password            admin password (strength rule applies) (secret") {
		t.Errorf("secret keys not marked:\n%s", out)
	}
}

// TestUnattendedApplyFailure: complete answers that cannot be applied (the
// image lacks the kluser group) leave nothing half-done, are reported on
// the console and in the important log, and the wizard opens prefilled.
func TestUnattendedApplyFailure(t *testing.T) {
	t.Parallel()
	root := scratchRoot(t)
	must(t, os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nshadow:x:42:\n"), 0o644))
	args := append(hermetic(t, root), sourceSetups["seed"](t, completeKV("gw-fail"))...)
	tt := startTerm(t, []string{"TERM=xterm-256color"}, args...)
	s := tt.waitText(catalogOf(t, "en").tr("%d unattended answers were rejected; correct them in the steps below:", 1))
	if !strings.Contains(strings.Join(strings.Fields(s), " "), `group "kluser" is missing`) {
		t.Fatalf("failure not shown on the console:\n%s", s)
	}
	if log := readFile(t, root, apply.ImportantLogPath); !strings.Contains(log, "unattended setup failed, nothing was changed:") {
		t.Fatalf("important log:\n%s", log)
	}
	if apply.Done(root) {
		t.Fatal("marked done")
	}
	if _, err := os.Stat(filepath.Join(root, "/etc/hostname")); !os.IsNotExist(err) {
		t.Fatal("hostname written despite the failure")
	}
	tt.focus("Language")
	tt.keys("Enter")
	tt.focus("License agreement")
	tt.keys("Enter")
	tt.focus("Do you accept the license agreement?")
	tt.keys("Enter") // prefilled: accepted
	tt.focus("Participate in Kaspersky Security Network?")
	tt.keys("Enter")
	tt.focus("Administrator password")
	tt.keys("Enter") // prefilled from the seed
	tt.focus("Confirm password")
	tt.keys("Enter")
	if s := tt.focus("Host name"); !strings.Contains(focused(s), "gw-fail") {
		t.Fatalf("answers not prefilled:\n%s", s)
	}
	tt.keys("C-c")
	tt.waitFor("EXIT=")
}

func must1[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestUnattendedErrorsInChosenLanguage: with ksmg.language given
// unattended, every line the console gets about the answers is in that
// language: a rejected answer and the source it came from, a source that
// cannot be read (a Hyper-V KVP pool cut short: a number of bytes, in
// the plural form the number takes) and the closing "no console to ask
// on"; the important log keeps English, and the wizard opens in it.
func TestUnattendedErrorsInChosenLanguage(t *testing.T) {
	t.Parallel()
	for _, lang := range []string{i18n.Czech, i18n.Russian} {
		t.Run(lang, func(t *testing.T) {
			t.Parallel()
			c := catalogOf(t, lang)
			kv := completeKV("gw-" + lang)
			kv["ksmg.language"] = lang
			kv["ksmg.timezone"] = "Mars/Olympus"
			root := scratchRoot(t)
			seed := sourceSetups["seed"](t, kv)
			// A short directory, so the path is not wrapped on the screen.
			dir, err := os.MkdirTemp("", "k")
			must(t, err)
			t.Cleanup(func() { _ = os.RemoveAll(dir) })
			pool := filepath.Join(dir, ".kvp_pool_0")
			must(t, os.WriteFile(pool, make([]byte, 100), 0o644))
			args := append(hermetic(t, root), append(seed, "--kvp-pool", pool)...)
			out, err := runNoTTY(t, args...)
			if err == nil {
				t.Fatalf("incomplete answers applied:\n%s", out)
			}
			tz := c.tr("time zone %q is not in the tz database", "Mars/Olympus")
			rejected := func(s string) string { return "ksmg-firstboot: " + c.tr("unattended answer rejected: %v", s) }
			want := []string{
				rejected(c.tr("%s: %v", c.tr("Hyper-V KVP (%s)", pool), c.tr("KVP pool is %d bytes, not a whole number of %d-byte records", 100, sources.KVPRecordSize))),
				rejected(c.tr("%v (from %s)", "ksmg.timezone: "+tz, c.tr("seed file %s", seed[1]))),
				"ksmg-firstboot: " + c.tr("answers are incomplete and there is no console to ask on; pass complete unattended answers (see ksmg-firstboot --help)"),
			}
			// The console's lines (the JSON log lines are for the journal).
			var told []string
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "ksmg-firstboot: ") {
					told = append(told, l)
				}
			}
			if strings.Join(told, "\n") != strings.Join(want, "\n") {
				t.Errorf("console lines in %s:\n%s\nwant:\n%s\nwhole output:\n%s", lang, strings.Join(told, "\n"), strings.Join(want, "\n"), out)
			}
			// Without the names and values that stay as they are, no English.
			names := strings.NewReplacer(pool, "", seed[1], "", "ksmg-firstboot", "", "--help", "", "Hyper-V", "", "ksmg.timezone", "", "Mars/Olympus", "", "seed", "")
			for _, l := range told {
				checkNoEnglish(t, lang, []string{names.Replace(l)})
			}
			log := readFile(t, root, apply.ImportantLogPath)
			for _, w := range []string{
				`unattended answer rejected: ksmg.timezone: time zone "Mars/Olympus" is not in the tz database (from seed file ` + seed[1] + ")",
				"unattended answer rejected: Hyper-V KVP (" + pool + "): KVP pool is 100 bytes, not a whole number of 2,560-byte records",
				"answers are incomplete and there is no console to ask on",
			} {
				if !strings.Contains(log, w) {
					t.Errorf("important log lacks, in English, %q:\n%s", w, log)
				}
			}

			tt := startTerm(t, []string{"TERM=xterm-256color"}, args...)
			s := tt.waitText(c.tr("%d unattended answers were rejected; correct them in the steps below:", 2))
			tt.wantText(s, "ksmg.timezone: "+tz)
			tt.wantText(s, "- Hyper-V KVP ("+pool+"): ") // as it is: the note's markup (_) escaped
			tt.focus(c.tr("Language"))
			tt.keys("Enter")
			tt.focus(c.tr("License agreement"))
			tt.keys("C-c")
			tt.waitFor("EXIT=")
		})
	}
}

// TestUnattendedTwoConsolesReadOnce starts first boot on two consoles at
// once, as the image does (tty1 and ttyS0), with complete answers from
// the VMware OVF environment: one instance reads and applies them, the
// other waits and finds setup done, without reading the sources again.
func TestUnattendedTwoConsolesReadOnce(t *testing.T) {
	t.Parallel()
	root := scratchRoot(t)
	dir := t.TempDir()
	doc := filepath.Join(dir, "ovfenv.xml")
	must(t, os.WriteFile(doc, []byte(ovfEnvDoc(completeKV("gw-two"))), 0o644))
	reads := filepath.Join(dir, "reads")
	tool := filepath.Join(dir, "vmware-rpctool")
	must(t, os.WriteFile(tool, []byte("#!/bin/sh\n[ \"$1\" = 'info-set guestinfo.ksmg.firstboot done' ] && exit 0\n"+
		"[ \"$1\" = 'info-get guestinfo.ovfEnv' ] || exit 2\necho read >> '"+reads+"'\nsleep 0.3\ncat '"+doc+"'\n"), 0o755))
	args := append(hermetic(t, root), "--vmware-rpctool", tool, "--dmi-vendor", vmwareVendor(t))
	outs := make([]string, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() { outs[i], errs[i] = runNoTTY(t, args...) })
	}
	wg.Wait()
	setUp, waited := 0, 0
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("instance %d: %v\n%s", i, errs[i], outs[i])
		}
		if strings.Contains(outs[i], "ksmg appliance is set up") {
			setUp++
		}
		if strings.Contains(outs[i], "first boot was done on another console") {
			waited++
		}
	}
	if setUp != 1 || waited != 1 {
		t.Errorf("want one instance that set up and one that found it done:\n--- 1:\n%s\n--- 2:\n%s", outs[0], outs[1])
	}
	if got, err := os.ReadFile(reads); err != nil || string(got) != "read\n" {
		t.Errorf("the OVF environment was read %d times, want once (%v)", strings.Count(string(got), "read"), err)
	}
}

// vmwareVendor is a stand-in for /sys/class/dmi/id/sys_vendor of a VMware
// VM: first boot runs vmware-rpctool only there.
func vmwareVendor(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sys_vendor")
	must(t, os.WriteFile(p, []byte("VMware, Inc.\n"), 0o644))
	return p
}

// fakeSystemctl puts a systemctl on PATH that records its arguments, one
// line per call, in the returned file. Without systemd to reach, first
// boot runs systemctl for its jobs; with it, the jobs would go to this
// machine's systemd, so the test is skipped there.
func fakeSystemctl(t *testing.T) (path, calls string) {
	t.Helper()
	if _, err := os.Stat("/run/systemd/private"); err == nil {
		t.Skip("systemd runs here: first boot would queue its jobs with it, not with a systemctl on PATH")
	}
	dir := t.TempDir()
	calls = filepath.Join(dir, "calls")
	must(t, os.WriteFile(filepath.Join(dir, "systemctl"), []byte("#!/bin/sh\necho \"$*\" >> '"+calls+"'\n"), 0o755))
	return dir + string(os.PathListSeparator) + os.Getenv("PATH"), calls
}

// TestWizardUnitsStartWhenSetupNeedsAPerson: the boot starts first boot
// on tty1 only; when the answers cannot complete setup, that instance
// starts the other consoles' (--wizard-units), and when they do, nothing.
func TestWizardUnitsStartWhenSetupNeedsAPerson(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		kv    map[string]string
		calls string
	}{
		{"complete", completeKV("gw-complete"), ""},
		{"partial", map[string]string{"ksmg.hostname": "gw-partial"}, "--no-ask-password --no-block start ksmg-firstboot@tty1.service ksmg-firstboot@ttyS0.service\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path, calls := fakeSystemctl(t)
			root := scratchRoot(t)
			args := append(hermetic(t, root), sourceSetups["credentials"](t, tt.kv)...)
			cmd := exec.Command(binary, append(args, "--wizard-units=ksmg-firstboot@tty1.service,ksmg-firstboot@ttyS0.service")...)
			cmd.Env = []string{"PATH=" + path, "CREDENTIALS_DIRECTORY="}
			out, err := cmd.CombinedOutput()
			// Without a console, partial answers still fail (after the
			// other consoles were asked to open the wizard).
			if (err == nil) != (tt.calls == "") {
				t.Fatalf("exit: %v\n%s", err, out)
			}
			got, _ := os.ReadFile(calls)
			if string(got) != tt.calls {
				t.Errorf("systemctl calls %q, want %q\n%s", got, tt.calls, out)
			}
		})
	}
}

// TestConsoleWithoutTerminalWaitsForSetup: the unit's console can be a
// device without a terminal behind it (ttyS0 on a VM with no serial port:
// reads and writes fail). The instance there must neither fail (Restart=
// ran it again every 2 s, logging an error each time, while a person set
// the appliance up on tty1) nor end before setup is done (the gateway is
// ordered after it).
func TestConsoleWithoutTerminalWaitsForSetup(t *testing.T) {
	t.Parallel()
	root := scratchRoot(t)
	args := append(hermetic(t, root), sourceSetups["credentials"](t, map[string]string{"ksmg.hostname": "gw-partial"})...)
	cmd := exec.Command(binary, append(args, "--console-on-stdin", "--poll", "50ms", "--json")...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "CREDENTIALS_DIRECTORY="}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs // stdin: /dev/null, not a terminal
	must(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		t.Fatalf("exited (%v) before setup was done:\n%s", err, logs.Bytes())
	case <-time.After(2 * time.Second):
	}
	must(t, os.MkdirAll(filepath.Join(root, filepath.Dir(apply.StampPath)), 0o755))
	must(t, os.WriteFile(filepath.Join(root, apply.StampPath), nil, 0o644))
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit once setup was done: %v\n%s", err, logs.Bytes())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("still waiting 30 s after setup was done:\n%s", logs.Bytes())
	}
	if !bytes.Contains(logs.Bytes(), []byte("no terminal on this console")) {
		t.Errorf("the wait is not logged:\n%s", logs.Bytes())
	}
	if b, _ := os.ReadFile(filepath.Join(root, apply.ImportantLogPath)); bytes.Contains(b, []byte("no console to ask on")) {
		t.Errorf("important-events log has a failure for a console that waited:\n%s", b)
	}
}
