package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ksmg-appliance/ksmg/firstboot/apply"
)

// silentTerminal opens a pseudo-terminal whose far end never answers, as
// a VM's serial port that nobody listens on. It returns the terminal
// side and a function that returns everything written to it so far.
func silentTerminal(t *testing.T) (*os.File, func() []byte) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	var (
		mu  sync.Mutex
		got []byte
	)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			mu.Lock()
			got = append(got, buf[:n]...)
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return tty, func() []byte {
		mu.Lock()
		defer mu.Unlock()
		return bytes.Clone(got)
	}
}

// TestConsoleOnStdinAsksTheTerminalNothing runs first boot the way
// ksmg-firstboot@ttyS0.service does, on a serial line nobody answers,
// after another console finished setup: it must exit at once. With the
// console on standard output (the control), bubbletea's init asks the
// terminal for its background colour and waits 5 s for the answer; the
// gateway waited for that on every first boot.
func TestConsoleOnStdinAsksTheTerminalNothing(t *testing.T) {
	t.Parallel()
	const query = "\x1b]11;?" // OSC 11: what is your background colour?
	run := func(t *testing.T, onStdin bool) (time.Duration, []byte) {
		root := t.TempDir()
		must(t, os.MkdirAll(filepath.Join(root, filepath.Dir(apply.StampPath)), 0o755))
		must(t, os.WriteFile(filepath.Join(root, apply.StampPath), nil, 0o644))
		tty, written := silentTerminal(t)
		args := []string{"--root", root, "--charset", "ascii"}
		cmd := exec.Command(binary, args...)
		cmd.Stdin, cmd.Stdout = tty, tty
		if onStdin {
			cmd.Args = append(cmd.Args, "--console-on-stdin")
			cmd.Stdout = nil // the journal, in the unit
		}
		// Its own session with the terminal as controlling terminal, in
		// the foreground: what systemd's StandardInput=tty gives it.
		cmd.Env = []string{"TERM=vt220", "PATH=" + os.Getenv("PATH")}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("ksmg-firstboot: %v\n%s", err, stderr.Bytes())
		}
		took := time.Since(start)
		time.Sleep(100 * time.Millisecond) // the reader drains the terminal
		return took, written()
	}
	took, written := run(t, true)
	t.Logf("--console-on-stdin: exited after %s; the terminal got %q", took.Round(time.Millisecond), written)
	if bytes.Contains(written, []byte(query)) {
		t.Errorf("first boot asked the terminal for its background colour: %q", written)
	}
	if took > 3*time.Second {
		t.Errorf("first boot took %s to notice setup was done (a silent terminal held it up)", took)
	}
	took, written = run(t, false)
	t.Logf("control, console on stdout: exited after %s; the terminal got %q", took.Round(time.Millisecond), written)
	if !bytes.Contains(written, []byte(query)) || took < 4*time.Second {
		t.Errorf("control: expected the background query and a 5 s wait on stdout, got %q after %s", written, took)
	}
}

// TestSerialConsoleFindingSetupDoneAsksNothing is the boot's usual race:
// ksmg-firstboot@ttyS0 starts while the tty1 instance holds the consoles'
// lock and applies the answers. When it gets the lock, setup is done and
// it has nothing to print, so it must not ask its terminal whether it
// shows UTF-8: a serial port nobody answers held it (and the gateway,
// which waits for both consoles) up to a second, and the question's
// "é" would be left on a console someone does watch.
func TestSerialConsoleFindingSetupDoneAsksNothing(t *testing.T) {
	t.Parallel()
	root := scratchRoot(t)
	lockDir := filepath.Join(root, "run", "lock")
	must(t, os.MkdirAll(lockDir, 0o755))
	unlock, err := flock(filepath.Join(lockDir, "ksmg-firstboot.lock")) // the applying console
	must(t, err)
	tty, written := silentTerminal(t)
	// Line prompts with the character set asked of the terminal ("auto"):
	// what a vt220 on ttyS0 gets in the image.
	cmd := exec.Command(binary, append(hermetic(t, root), "--console-on-stdin", "--accessible", "on", "--json")...)
	cmd.Stdin = tty
	cmd.Env = []string{"TERM=vt220", "PATH=" + os.Getenv("PATH"), "CREDENTIALS_DIRECTORY="}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	must(t, cmd.Start())
	// It has passed its "already done?" check when it waits for the lock.
	deadline := time.Now().Add(30 * time.Second)
	for !waitsForLock(t, cmd.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatalf("ksmg-firstboot never waited for the consoles' lock:\n%s", logs.Bytes())
		}
		time.Sleep(10 * time.Millisecond)
	}
	must(t, os.MkdirAll(filepath.Join(root, filepath.Dir(apply.StampPath)), 0o755))
	must(t, os.WriteFile(filepath.Join(root, apply.StampPath), nil, 0o644))
	unlock()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ksmg-firstboot: %v\n%s", err, logs.Bytes())
	}
	if !bytes.Contains(logs.Bytes(), []byte("first boot was done on another console")) {
		t.Fatalf("expected it to find setup done by the other console:\n%s", logs.Bytes())
	}
	time.Sleep(100 * time.Millisecond) // the reader drains the terminal
	if got := written(); len(got) > 0 {
		t.Errorf("the console that found setup done wrote to its terminal (want nothing, not even the UTF-8 question): %q", got)
	}
}

// waitsForLock tells whether process pid is blocked in flock(2): the
// kernel lists a waiting request in /proc/locks as "N: -> FLOCK ...".
func waitsForLock(t *testing.T, pid int) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Skipf("cannot see lock waiters here: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 5 && f[1] == "->" && f[2] == "FLOCK" && f[5] == strconv.Itoa(pid) {
			return true
		}
	}
	return false
}
