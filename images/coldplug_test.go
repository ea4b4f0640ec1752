package images

import (
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
// subsystem, or a module rule for a module not in coldplugModules. Rules
// without a SUBSYSTEM key act on any object they otherwise match; those
// of the image key on a module alias (MODALIAS), a tag or a device name,
// which the skipped kinds of object do not have (checked in a booted
// guest when the list was made).
func coldplugConflicts(rules map[string]string) []string {
	var out []string
	skipped := func(file, pat string) (string, bool) {
		for _, alt := range strings.Split(pat, "|") {
			for _, s := range coldplugSkip {
				a, _ := path.Match(alt, s.name)
				b, _ := path.Match(s.name, alt)
				if (a || b) && s.covered != path.Base(file) {
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
			for _, m := range ruleSubsystem.FindAllStringSubmatch(line, -1) {
				name, ok := skipped(file, m[2])
				if !ok {
					continue
				}
				if name == "module" && m[1] == "==" {
					k := ruleKernel.FindStringSubmatch(line)
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
	if len(lines) != 3 || lines[0][1] != "" {
		t.Fatalf("want ExecStart= reset and two commands:\n%s", in)
	}
	mods := lines[1][1]
	if !strings.HasPrefix(mods, "-udevadm trigger --type=subsystems --action=add --subsystem-match=module ") {
		t.Errorf("module command: %s", mods)
	}
	for _, m := range coldplugModules {
		if !strings.Contains(mods, " --sysname-match="+m) {
			t.Errorf("module command lacks %s: %s", m, mods)
		}
	}
	main, ok := strings.CutPrefix(lines[2][1], "-"+udevTriggerCommand+" ")
	if !ok {
		t.Fatalf("main command is not Debian's plus options: %s", lines[2][1])
	}
	var want []string
	for _, s := range coldplugSkip {
		want = append(want, "--subsystem-nomatch="+s.name)
	}
	if main != strings.Join(want, " ") {
		t.Errorf("main command's options %q, want %q", main, strings.Join(want, " "))
	}
	// What the initramfs leaves out besides, the coldplug must replay.
	for _, s := range initramfsTriggerSkip {
		if strings.Contains(" "+main+" ", " --subsystem-nomatch="+s+" ") {
			t.Errorf("%s is left out by the initramfs and by the coldplug: nothing sets its permissions and tags", s)
		}
	}
}
