package images

import (
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var (
	ruleSubsystem = regexp.MustCompile(`\bSUBSYSTEM(==|!=)"([^"]*)"`)
	ruleKernel    = regexp.MustCompile(`\bKERNEL=="([^"]*)"`)
)

// coldplugConflicts returns the udev rules (file: line) that act on
// objects the coldplug drop-in leaves out: a SUBSYSTEM match (== or !=,
// each alternative of a pattern, globs both ways) naming a skipped
// subsystem, a module rule for a module not in coldplugModules, or a rule
// whose KERNEL pattern matches a virtual console (tty0-tty63, left out of
// the terminals' command, coldplugTTY), with or without a SUBSYSTEM key.
// Other rules without a SUBSYSTEM key act on any object they otherwise
// match; those of the image key on a module alias (MODALIAS), a tag or a
// device name, which the skipped kinds of object do not have
// (TestBootSecureBootSMTP checks it in the booted guest: coldplugProbe).
func coldplugConflicts(rules map[string]string) []string {
	var out []string
	covered := func(s string, file string) bool {
		for _, c := range coldplugSkip {
			if c.name == s {
				return slices.Contains(c.covered, path.Base(file))
			}
		}
		return false
	}
	skipped := func(file, pat string) (string, bool) {
		for _, alt := range strings.Split(pat, "|") {
			for _, s := range coldplugSkip {
				a, _ := path.Match(alt, s.name)
				b, _ := path.Match(s.name, alt)
				if (a || b) && !covered(s.name, file) {
					return s.name, true
				}
			}
		}
		return "", false
	}
	for _, file := range slices.Sorted(maps.Keys(rules)) {
		// A backslash at the end of a line continues the rule.
		text := strings.ReplaceAll(rules[file], "\\\n", " ")
		for _, line := range strings.Split(text, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k := ruleKernel.FindStringSubmatch(line)
			if k != nil && !covered("tty", file) && slices.ContainsFunc(strings.Split(k[1], "|"), matchesVirtualConsole) {
				out = append(out, file+": "+line)
				continue
			}
			for _, m := range ruleSubsystem.FindAllStringSubmatch(line, -1) {
				name, ok := skipped(file, m[2])
				if !ok {
					continue
				}
				// The terminals' command replays every name but the
				// virtual consoles' (checked above); a jump past the
				// terminal rules does nothing to any.
				if name == "tty" && (k != nil || ruleOnlyJumps.MatchString(line)) {
					continue
				}
				if name == "module" && m[1] == "==" {
					if k != nil && slices.ContainsFunc(strings.Split(k[1], "|"), func(mod string) bool { return slices.Contains(coldplugModules, mod) }) {
						continue
					}
				}
				out = append(out, file+": "+line)
			}
		}
	}
	return out
}

// ruleOnlyJumps is a rule whose one action is a GOTO.
var ruleOnlyJumps = regexp.MustCompile(`^([A-Z]+(\{[^}]*\})?(==|!=)"[^"]*",\s*)+GOTO="[^"]*"$`)

// matchesVirtualConsole: the KERNEL pattern alt matches a virtual
// console's name (tty0-tty63), which the coldplug does not replay.
func matchesVirtualConsole(alt string) bool {
	for n := range 64 {
		if ok, _ := path.Match(alt, fmt.Sprintf("tty%d", n)); ok {
			return true
		}
	}
	return false
}

func TestColdplugConflicts(t *testing.T) {
	tests := []struct {
		name  string
		rules string
		want  int
	}{
		{"block and net rules", `SUBSYSTEM=="block", TAG+="systemd"` + "\n" + `SUBSYSTEM=="net", KERNEL!="lo", RUN+="x"`, 0},
		{"mem is not memory", `SUBSYSTEM=="mem", KERNEL=="null", MODE="0666"`, 0},
		{"a skipped subsystem", `SUBSYSTEM=="memory", ATTR{state}="online"`, 1},
		{"an alternative of a pattern", `SUBSYSTEM=="block|bdi", GOTO="x"`, 1},
		{"a glob", `SUBSYSTEM=="ata_*", RUN+="x"`, 1},
		{"a negated match", `SUBSYSTEM!="wakeup", GOTO="end"`, 1},
		{"a continued line", "ACTION==\"add\", \\\n  SUBSYSTEM==\"scsi_host\", RUN+=\"x\"", 1},
		{"a comment", `# SUBSYSTEM=="memory"`, 0},
		{"a rule whose work is done otherwise", `ACTION=="add", SUBSYSTEM=="vtconsole", RUN+="x"`, 1},
		{"a module with a kept event", `SUBSYSTEM=="module", KERNEL=="fuse", TAG+="systemd"`, 0},
		{"a module whose event is left out", `SUBSYSTEM=="module", KERNEL=="loop", RUN+="x"`, 1},
		{"a module rule for any module", `SUBSYSTEM=="module", RUN+="x"`, 1},
		{"a serial port", `SUBSYSTEM=="tty", KERNEL=="ttyS*", TAG+="systemd"`, 0},
		{"a virtual console", `SUBSYSTEM=="tty", KERNEL=="tty[0-9]*|hvc[0-9]*", GROUP="tty"`, 1},
		{"a virtual console without SUBSYSTEM", `KERNEL=="tty*", MODE="0666"`, 1},
		{"any terminal", `SUBSYSTEM=="tty", RUN+="x"`, 1},
		{"a jump past the terminal rules", `SUBSYSTEM!="tty", GOTO="serial_end"`, 0},
		{"a console's screen buffer", `SUBSYSTEM=="vc", KERNEL=="vcs*", GROUP="tty"`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := coldplugConflicts(map[string]string{"99-test.rules": tt.rules}); len(got) != tt.want {
				t.Errorf("conflicts %q, want %d", got, tt.want)
			}
		})
	}
}

// The drop-in keeps Debian's command and only adds exclusions to it.
func TestColdplugDropIn(t *testing.T) {
	in := string(udevColdplugDropIn())
	lines := regexp.MustCompile(`(?m)^ExecStart=(.*)$`).FindAllStringSubmatch(in, -1)
	if len(lines) != 4 || lines[0][1] != "" {
		t.Fatalf("want ExecStart= reset and three commands:\n%s", in)
	}
	// The modules' and the terminals' commands: one subsystem, these names.
	sysnames := func(what, cmd, prefix string, names []string) {
		if !strings.HasPrefix(cmd, prefix+" ") {
			t.Errorf("%s command: %s", what, cmd)
		}
		for _, n := range names {
			if !strings.Contains(cmd, " --sysname-match="+n) {
				t.Errorf("%s command lacks %s: %s", what, n, cmd)
			}
		}
	}
	sysnames("module", lines[1][1], "-udevadm trigger --type=subsystems --action=add --subsystem-match=module", coldplugModules)
	sysnames("terminals'", lines[2][1], "-udevadm trigger --type=devices --action=add --subsystem-match=tty", coldplugTTY)
	if i := slices.IndexFunc(coldplugTTY, matchesVirtualConsole); i >= 0 {
		t.Errorf("terminals' command replays the virtual consoles (%s)", coldplugTTY[i])
	}
	main, ok := strings.CutPrefix(lines[3][1], "-"+udevTriggerCommand+" ")
	if !ok {
		t.Fatalf("main command is not Debian's plus options: %s", lines[3][1])
	}
	var want []string
	for _, s := range coldplugSkip {
		want = append(want, "--subsystem-nomatch="+s.name)
	}
	if main != strings.Join(want, " ") {
		t.Errorf("main command's options %q, want %q", main, strings.Join(want, " "))
	}
}
