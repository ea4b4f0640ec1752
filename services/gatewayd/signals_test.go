//go:build unix

package gatewayd_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TestInvalidConfigExit2: the daemon refuses a bad file with status 2 and a
// message naming the file, the key and what was expected.
func TestInvalidConfigExit2(t *testing.T) {
	bin := daemonBin(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml, want string
		env              []string
	}{
		{"max_recipients", "limits: {max_recipients: abc}\n", `key limits.max_recipients: expected a positive integer, got "abc"`, nil},
		{"unknown key", "relay: {smarthost: x}\n", `key relay.smarthost: expected a known key`, nil},
		{"size", "backup: {max_size: huge}\n", `key backup.max_size: expected a positive size`, nil},
		{"tls mode", "protected_domains: [{name: a.test, route: 'h:25', tls: sometimes}]\n", `key protected_domains[0].tls: expected one of none, opportunistic, required, got "sometimes"`, nil},
		{"yaml", "limits: {max_recipients: 5\n", `valid YAML`, nil},
		{"env override", "", `environment KSMG_RELAY_WORKERS: key relay.workers: expected a positive integer, got "-3"`, []string{"KSMG_RELAY_WORKERS=-3"}},
		// Issue 11.9: a misspelt variable and an open relay are refused.
		{"env typo", "", `environment KSMG_LIMITS_MAX_RECIPENTS: key (variable name): expected a variable that names a configuration key`, []string{"KSMG_LIMITS_MAX_RECIPENTS=5"}},
		{"open relay", "trusted_networks: [\"0.0.0.0/0\"]\n", `key trusted_networks[0]: expected a private, loopback, link-local or documentation network`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o640); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "--config", p)
			cmd.Env = append(os.Environ(), tc.env...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit %v, want status 2; output %s", err, out)
			}
			msg := string(out)
			if !strings.HasPrefix(msg, "ksmg-gatewayd: ") || !strings.Contains(msg, tc.want) {
				t.Fatalf("message %q lacks %q", msg, tc.want)
			}
			if tc.env == nil && !strings.Contains(msg, p) {
				t.Fatalf("message %q does not name the file %s", msg, p)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		p := filepath.Join(dir, "absent.yaml")
		out, err := exec.Command(bin, "--config", p).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), p) {
			t.Fatalf("exit %v output %s; want status 2 naming %s", err, out, p)
		}
	})
}

func trySend(addr, from, to string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.SendMail(from, []string{to}, strings.NewReader("Subject: s\r\n\r\nx\r\n"))
}

// TestSignals: SIGHUP with an invalid file keeps the old configuration
// serving; a valid one applies; SIGUSR1 reopens the logs after a
// logrotate-style rename; SIGTERM drains and exits 0 with mail queued.
func TestSignals(t *testing.T) {
	route := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // down: mail stays queued
	base := fmt.Sprintf("protected_domains: [{name: example.com, route: %q}]\nrelay: {retry_initial: 1h, retry_max: 1h}\n", route)
	g := newGW(t, base)
	g.start()

	if err := trySend(g.addr(), "a@s.test", "b@example.com"); err != nil {
		t.Fatal(err)
	}

	// Invalid reload: rejected, old config keeps serving.
	if err := os.WriteFile(g.cfg, []byte(g.baseConfig()+base+"limits: {max_recipients: abc}\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	g.signal(syscall.SIGHUP)
	if !g.waitNotify("READY=1", 10*time.Second) {
		t.Fatal("no READY=1 after SIGHUP")
	}
	waitFor(t, 5*time.Second, "the rejected reload in the important log", func() bool {
		return strings.Contains(g.read("log/ksmg-important"), "configuration reload rejected")
	})
	if imp := g.read("log/ksmg-important"); !strings.Contains(imp, g.cfg) || !strings.Contains(imp, "limits.max_recipients") {
		t.Errorf("important log does not say why: %s", imp)
	}
	if err := trySend(g.addr(), "spam@bad.test", "b@example.com"); err != nil {
		t.Fatalf("after an invalid reload the gateway stopped serving: %v", err)
	}

	// Valid reload: a new deny list entry applies at once; a new
	// max_message_size (the SIZE go-smtp advertises and enforces) needs a
	// restart, and the reload says so rather than "reloaded".
	if err := os.WriteFile(g.cfg, []byte(g.baseConfig()+base+"lists: {deny: {senders: ['@bad.test']}}\nlimits: {max_message_size: 60MB}\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	g.signal(syscall.SIGHUP)
	if !g.waitNotify("READY=1", 10*time.Second) {
		t.Fatal("no READY=1 after the second SIGHUP")
	}
	waitFor(t, 5*time.Second, "the deny list to apply", func() bool {
		err := trySend(g.addr(), "spam@bad.test", "b@example.com")
		return err != nil && strings.Contains(err.Error(), "550")
	})
	if imp := g.read("log/ksmg-important"); !regexp.MustCompile(`only after a restart.*max_message_size`).MatchString(imp) {
		t.Errorf("the reload did not say that max_message_size needs a restart:\n%s", imp)
	}

	// SIGUSR1 after logrotate moved the files.
	for _, f := range []string{"log/ksmg-messages", "log/ksmg-important"} {
		p := filepath.Join(g.dir, f)
		if err := os.Rename(p, p+".1"); err != nil {
			t.Fatal(err)
		}
	}
	g.signal(syscall.SIGUSR1)
	waitFor(t, 5*time.Second, "reopened ksmg-messages with new events", func() bool {
		_ = trySend(g.addr(), "a@s.test", "b@example.com") // the log line decides
		return strings.Contains(g.read("log/ksmg-messages"), `"action":"received"`)
	})

	// SIGTERM: STOPPING=1, clean exit, queued mail kept.
	g.signal(syscall.SIGTERM)
	if !g.waitNotify("STOPPING=1", 20*time.Second) {
		t.Fatal("no STOPPING=1 after SIGTERM")
	}
	select {
	case err := <-g.exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, g.stderrText())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if n := queued(t, g); n < 3 {
		t.Fatalf("%d messages queued after the stop, want >= 3 (next hop is down)", n)
	}
}

// TestSocketActivationAndWatchdog: the listener comes from systemd's socket
// activation protocol (systemd-socket-activate passes it as fd 3 with
// LISTEN_FDS/LISTEN_PID, as systemd does), listen: in the file is then
// unused, and with WATCHDOG_USEC set the daemon pings WATCHDOG=1.
func TestSocketActivationAndWatchdog(t *testing.T) {
	if _, err := exec.LookPath("systemd-socket-activate"); err != nil {
		t.Fatal("systemd-socket-activate missing: install systemd (ci/packages.txt)")
	}
	down := newSink(t, "")
	g := newGW(t, fmt.Sprintf("protected_domains: [{name: example.com, route: %q}]\n", down.addr))
	active := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	// It passes on only the environment named with -E.
	g.prefix = []string{"systemd-socket-activate", "-l", active, "-E", "NOTIFY_SOCKET", "-E", "WATCHDOG_USEC"}
	g.env = []string{"WATCHDOG_USEC=300000"}
	g.launch()
	// systemd-socket-activate starts the daemon at the first connection.
	var err error
	for i := 0; i < 100; i++ { // until systemd-socket-activate listens
		if err = trySend(active, "a@s.test", "b@example.com"); err == nil || !strings.Contains(err.Error(), "refused") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("send via the activated socket: %v\n%s", err, g.stderrText())
	}
	if !g.waitNotify("WATCHDOG=1", 10*time.Second) {
		t.Fatalf("no WATCHDOG=1 with WATCHDOG_USEC set; stderr:\n%s", g.stderrText())
	}
	if !strings.Contains(g.stderrText(), "using sockets passed by systemd") {
		t.Errorf("daemon did not report the passed socket:\n%s", g.stderrText())
	}
	if c, err := smtp.Dial(g.addr()); err == nil {
		c.Close()
		t.Error("the configured listen address is served although systemd passed a socket")
	}
	waitFor(t, 20*time.Second, "delivery", func() bool { return len(down.messages()) == 1 })
	if err := g.stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
}
