package services

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/internal/testsync"
)

// TestLogrotateReopensGatewayLogs runs the real ksmg-gatewayd and the real
// logrotate on the shipped configuration (forced rotation, paths in a temp
// root). The postrotate script's `systemctl kill --signal=SIGUSR1` is carried
// out by a stand-in that sends the signal to the daemon with kill(1), since no
// systemd runs here. After the rotation the daemon must log to the new file.
func TestLogrotateReopensGatewayLogs(t *testing.T) {
	t.Parallel()
	bin := gatewayBinary(t)
	root := t.TempDir()
	logDir := filepath.Join(root, "var/log")
	for _, d := range []string{"ksmg-traces", "kaspersky/extra"} {
		if err := os.MkdirAll(filepath.Join(logDir, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	cfgFile := filepath.Join(root, "gateway.yaml")
	daemon, port := startListening(t, "ksmg-gatewayd started", func(port int) []string {
		mustWrite(t, cfgFile, fmt.Sprintf(`hostname: reopen.test
listen: ["127.0.0.1:%d"]
spool_dir: %[2]s/queue
tls: {cert_file: %[2]s/tls/gw.crt, key_file: %[2]s/tls/gw.key, generate: true}
trusted_networks: ["127.0.0.0/8"]
relay: {default_route: "127.0.0.1:%d", default_tls: none}
backup: {dir: %[2]s/backup}
logging:
  messages_file: %[4]s/ksmg-messages
  important_file: %[4]s/ksmg-important
  trace_dir: %[4]s/kaspersky
  events_dir: %[2]s/events
`, port, root, freePort(t), logDir), 0o640)
		return []string{bin, "--config", cfgFile}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	messages := filepath.Join(logDir, "ksmg-messages")
	send(t, addr, "before@rotation.test")
	waitContains(t, messages, "before@rotation.test")

	raw, err := fs.ReadFile(Files(), "logrotate.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer(
		"/var/log/", logDir+"/",
		"create 0640 kluser kluser", "create 0640 root root",
		"/usr/libexec/ksmg/ksmg-logcap", mustAbs(t, "files/ksmg-logcap"),
	).Replace(string(raw))
	confFile := filepath.Join(root, "logrotate.conf")
	mustWrite(t, confFile, conf, 0o644)
	fake := filepath.Join(root, "bin")
	mustWrite(t, filepath.Join(fake, "systemctl"), fmt.Sprintf(`#!/bin/sh
case "$*" in
"-q is-active ksmg-gatewayd.service") exit 0 ;;
"kill --kill-whom=main --signal=SIGUSR1 ksmg-gatewayd.service") exec kill -USR1 %d ;;
*) echo "unexpected systemctl $*" >&2; exit 1 ;;
esac
`, daemon.cmd.Process.Pid), 0o755)
	if out, err := run(t, []string{"PATH=" + fake + ":" + os.Getenv("PATH")},
		"logrotate", "--force", "--state", filepath.Join(root, "state"), confFile); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("logrotate: %v\n%s", err, out)
	}

	send(t, addr, "after@rotation.test")
	waitContains(t, messages, "after@rotation.test")
	old, err := os.ReadFile(messages + ".1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(old, []byte("before@rotation.test")) || bytes.Contains(old, []byte("after@rotation.test")) {
		t.Errorf("rotated %s.1 should hold only the lines from before the rotation:\n%s", messages, old)
	}
	cur, _ := os.ReadFile(messages)
	if bytes.Contains(cur, []byte("before@rotation.test")) {
		t.Errorf("new %s holds lines from before the rotation:\n%s", messages, cur)
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// send submits one message without STARTTLS (the daemon's certificate is
// self-signed); the relay route is closed, so it stays queued.
func send(t *testing.T, addr, from string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil { // a daemon that never answers fails, not hangs
		t.Fatal(err)
	}
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		t.Fatalf("SMTP greeting from %s: %v", addr, err)
	}
	defer c.Close()
	steps := []func() error{
		func() error { return c.Hello("client.test") },
		func() error { return c.Mail(from) },
		func() error { return c.Rcpt("rcpt@dest.test") },
		func() error {
			w, err := c.Data()
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "From: <%s>\r\nTo: <rcpt@dest.test>\r\nSubject: reopen\r\n\r\nbody\r\n", from)
			return w.Close()
		},
		c.Quit,
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("SMTP step %d from %s: %v", i, from, err)
		}
	}
}

func waitContains(t *testing.T, name, s string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		data, _ := os.ReadFile(name)
		if bytes.Contains(data, []byte(s)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never got a line with %q; it has:\n%s", name, s, data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// daemon is a long-running command under test: its stderr is kept (and
// logged if the test fails), and done is closed when it has exited.
type daemon struct {
	cmd    *exec.Cmd
	stderr *testsync.Buffer
	done   chan struct{}
}

// startDaemon starts a long-running command; at the end of the test it is
// sent SIGTERM and waited for.
func startDaemon(t *testing.T, name string, args ...string) *daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, name, args...)
	d := &daemon{cmd: cmd, stderr: &testsync.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = d.stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait() // killed at the end: Wait reports that
		close(d.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-d.done
		if t.Failed() {
			t.Logf("%s stderr:\n%s", filepath.Base(name), d.stderr.String())
		}
	})
	return d
}

// waitStderr waits until the daemon's stderr holds s; false if the daemon
// exited first or the time ran out.
func (d *daemon) waitStderr(s string, timeout time.Duration) bool {
	deadline := time.After(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(d.stderr.String(), s) {
		select {
		case <-d.done:
			return strings.Contains(d.stderr.String(), s)
		case <-deadline:
			return false
		case <-tick.C:
		}
	}
	return true
}

// startListening starts a daemon that binds a port picked by freePort, and
// waits until the daemon itself says on stderr that it listens (ready). A
// connect is no such proof: freePort closes its socket before the daemon
// binds, and go test runs other packages meanwhile, so another process may
// take the port in between, and a connect then reaches that process (CI saw
// a reset from one). A daemon that lost its port that way exits with
// "already in use" and is started again on a fresh port.
func startListening(t *testing.T, ready string, args func(port int) []string) (*daemon, int) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		port := freePort(t)
		argv := args(port)
		d := startDaemon(t, argv[0], argv[1:]...)
		if d.waitStderr(ready, 30*time.Second) {
			return d, port
		}
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
		}
		if attempt < 5 && strings.Contains(strings.ToLower(d.stderr.String()), "already in use") {
			t.Logf("port %d was taken before %s bound it; trying another", port, filepath.Base(argv[0]))
			continue
		}
		t.Fatalf("%s never reported %q; stderr:\n%s", filepath.Base(argv[0]), ready, d.stderr.String())
	}
}
