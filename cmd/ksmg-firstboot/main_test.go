package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var binary string // ksmg-firstboot built from this tree for the tests

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ksmg-firstboot-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "ksmg-firstboot")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build ksmg-firstboot: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGqLbRk2vzRZ9bkfHF6H2mXmbiGsmdNw2WnNo6j3KXm7 admin@example"

// scratchRoot has the account files of the image (kluser from sysusers.d).
func scratchRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	for name, c := range map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/bash\nkluser:x:998:998::/var/opt/kaspersky:/usr/sbin/nologin\n",
		"group":  "root:x:0:\nshadow:x:42:\nkluser:x:998:\n",
		"shadow": "root:!*:20000:0:99999:7:::\n",
	} {
		must(t, os.WriteFile(filepath.Join(root, "etc", name), []byte(c), 0o640))
	}
	return root
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, root, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hermetic flags: no unattended source of the host machine leaks in.
func hermetic(t *testing.T, root string) []string {
	none := filepath.Join(t.TempDir(), "absent")
	return []string{"--root", root, "--interfaces", "eth0", "--kvp-pool", none, "--credentials-dir", none,
		"--by-label", none, "--vmware-rpctool", none, "--guest-kvp-pool", filepath.Join(none, ".kvp_pool_1")}
}

// tmuxTerm is a real 80x24 terminal: the wizard under tmux, driven with
// send-keys and read with capture-pane.
type tmuxTerm struct {
	t      *testing.T
	socket string
	seen   []string // every screen a wait returned, for checks over the whole walk
}

var termSeq atomic.Int32

func startTerm(t *testing.T, env []string, args ...string) *tmuxTerm {
	t.Helper()
	tt := &tmuxTerm{t: t, socket: fmt.Sprintf("ksmg-fb-%d-%d", os.Getpid(), termSeq.Add(1))}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	redirect := ""
	if slices.Contains(args, "--console-on-stdin") {
		redirect = " >/dev/null" // as the unit: stdout is not the terminal
	}
	shell := "env -u CREDENTIALS_DIRECTORY " + strings.Join(env, " ") + " " + binary + " " + strings.Join(quoted, " ") + redirect + "; echo EXIT=$?; sleep 600"
	cmd := exec.Command("tmux", "-L", tt.socket, "-f", "/dev/null", "new-session", "-d", "-x", "80", "-y", "24", "-s", "fb", shell)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", tt.socket, "kill-server").Run() })
	return tt
}

func (tt *tmuxTerm) screen() string {
	out, err := exec.Command("tmux", "-L", tt.socket, "capture-pane", "-p", "-J", "-t", "fb").Output()
	if err != nil {
		tt.t.Fatalf("capture-pane: %v", err)
	}
	return string(out)
}

// keys sends tmux key names (Enter, BTab, Down, C-u, ...).
func (tt *tmuxTerm) keys(k ...string) {
	tt.t.Helper()
	if out, err := exec.Command("tmux", append([]string{"-L", tt.socket, "send-keys", "-t", "fb"}, k...)...).CombinedOutput(); err != nil {
		tt.t.Fatalf("send-keys %v: %v %s", k, err, out)
	}
}

// typeText sends literal text.
func (tt *tmuxTerm) typeText(s string) {
	tt.t.Helper()
	if out, err := exec.Command("tmux", "-L", tt.socket, "send-keys", "-t", "fb", "-l", s).CombinedOutput(); err != nil {
		tt.t.Fatalf("send-keys: %v %s", err, out)
	}
}

// waitFor waits until the screen shows want and returns the screen.
func (tt *tmuxTerm) waitFor(want string) string {
	tt.t.Helper()
	return tt.wait("screen never showed", want, func(s string) bool { return strings.Contains(s, want) })
}

func (tt *tmuxTerm) wait(what, want string, ok func(screen string) bool) string {
	tt.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var s string
	for time.Now().Before(deadline) {
		s = tt.screen()
		if ok(s) {
			tt.seen = append(tt.seen, s)
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
	tt.t.Fatalf("%s %q; last screen:\n%s", what, want, s)
	return ""
}

// flat is a screen's text as one line: huh's borders (┃) and the line
// breaks of wrapped text removed, runs of spaces made one, so that a
// message can be found whatever width it was wrapped to.
func flat(screen string) string {
	var out []string
	for _, l := range strings.Split(screen, "\n") {
		out = append(out, strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "┃")))
	}
	return strings.Join(strings.Fields(strings.Join(out, " ")), " ")
}

// containsText ignores white space altogether: lipgloss also wraps at
// hyphens ("a-" / "z"), where flat would put a space.
func containsText(screen, want string) bool {
	return strings.Contains(strings.Join(strings.Fields(flat(screen)), ""), strings.Join(strings.Fields(want), ""))
}

// waitText waits until the screen shows the text want, wherever it wraps.
func (tt *tmuxTerm) waitText(want string) string {
	tt.t.Helper()
	return tt.wait("screen never showed the text", want, func(s string) bool { return containsText(s, want) })
}

// wantText fails unless screen shows the text want.
func (tt *tmuxTerm) wantText(screen, want string) {
	tt.t.Helper()
	if !containsText(screen, want) {
		tt.t.Fatalf("screen does not show %q:\n%s", want, screen)
	}
}

// focused is the wizard's focused field: huh marks its lines with ┃.
func focused(screen string) string {
	var out []string
	for _, l := range strings.Split(screen, "\n") {
		if strings.HasPrefix(l, "┃") {
			out = append(out, strings.TrimSpace(strings.TrimPrefix(l, "┃")))
		}
	}
	return strings.Join(out, "\n")
}

// focus waits until the focused field's title contains title: huh moves
// focus asynchronously, so typing before that would land in the old field.
func (tt *tmuxTerm) focus(title string) string {
	tt.t.Helper()
	return tt.wait("focus never reached", title, func(s string) bool { return containsText(focused(s), title) })
}

// fill focuses a field, types a value (after clearing) and presses Enter.
func (tt *tmuxTerm) fill(title, value string) {
	tt.t.Helper()
	tt.focus(title)
	tt.keys("C-u")
	if value != "" {
		tt.typeText(value)
	}
	tt.keys("Enter")
}

// history is the whole scrollback, for line-prompt (accessible) mode.
func (tt *tmuxTerm) history() string {
	out, err := exec.Command("tmux", "-L", tt.socket, "capture-pane", "-p", "-S", "-", "-t", "fb").Output()
	if err != nil {
		tt.t.Fatalf("capture-pane: %v", err)
	}
	return string(out)
}
