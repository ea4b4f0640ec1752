//go:build unix

package gatewayd_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/services/spool"
)

// smtpSink runs Postfix's smtp-sink as the internal mail server, dumping
// each message it receives into a directory.
func smtpSink(t *testing.T) (addr, dump string) {
	t.Helper()
	bin := "/usr/sbin/smtp-sink"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s missing: install postfix (ci/packages.txt)", bin)
	}
	// smtp-sink drops privileges to nobody, so its dump directory is outside
	// the 0700 test temp dir.
	dump, err := os.MkdirTemp("", "ksmg-sink-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dump, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dump) })
	addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(bin, "-u", "nobody", "-d", dump+"/%M.", addr, "64")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) // killed: Wait reports that
	return addr, dump
}

func swaks(t *testing.T, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Fatal("swaks missing: install it (ci/packages.txt)")
	}
	out, err := exec.Command("swaks", append([]string{"--timeout", "60"}, args...)...).CombinedOutput()
	return string(out), err
}

// TestSwaksThroughGateway: a real client (swaks) and a real downstream
// (Postfix smtp-sink) around the daemon.
func TestSwaksThroughGateway(t *testing.T) {
	sinkAddr, dump := smtpSink(t)
	// The loopback client is deliberately NOT trusted, so the relay rule
	// applies to it like to any Internet client.
	g := newGW(t, fmt.Sprintf(`
protected_domains:
  - {name: example.com, route: "%s", tls: opportunistic}
trusted_networks: ["192.0.2.0/24"]
limits: {max_message_size: 20000}
lists:
  deny: {senders: ["@spam.test"], recipients: ["blocked@example.com"]}
  allow: {senders: ["friend@spam.test"]}
`, sinkAddr))
	g.start()
	defer g.shutdown()

	for _, tc := range []struct {
		name string
		args []string
		want string // in swaks' transcript
		ok   bool   // accepted and delivered
	}{
		{"plain", []string{"--from", "alice@sender.test", "--to", "bob@example.com", "--header", "Subject: plain"}, "250 2.0.0 OK: queued as", true},
		{"starttls", []string{"--tls", "--from", "alice@sender.test", "--to", "carol@example.com", "--header", "Subject: tls"}, "250 2.0.0 OK: queued as", true},
		{"open relay refused", []string{"--from", "alice@sender.test", "--to", "victim@elsewhere.test"}, "550 5.7.1 Relaying denied", false},
		{"oversize", []string{"--from", "alice@sender.test", "--to", "bob@example.com", "--body", strings.Repeat("0123456789abcdef\n", 2000)}, "552 5.3.4", false},
		{"deny sender", []string{"--from", "bulk@spam.test", "--to", "bob@example.com"}, "550 5.7.1 Sender address rejected", false},
		{"deny recipient", []string{"--from", "alice@sender.test", "--to", "blocked@example.com"}, "550 5.7.1 Recipient address rejected", false},
		{"allow overrides deny", []string{"--from", "friend@spam.test", "--to", "dave@example.com", "--header", "Subject: allowed"}, "250 2.0.0 OK: queued as", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := swaks(t, append([]string{"--server", g.addr(), "--helo", "client.test"}, tc.args...)...)
			if !strings.Contains(out, tc.want) {
				t.Fatalf("swaks transcript lacks %q (err %v):\n%s", tc.want, err, out)
			}
			if tc.ok != (err == nil) {
				t.Fatalf("swaks exit error %v, want success=%v:\n%s", err, tc.ok, out)
			}
			if tc.name == "starttls" && !strings.Contains(out, "TLS started") {
				t.Fatalf("no TLS session:\n%s", out)
			}
		})
	}

	// Three messages were accepted: smtp-sink must get all three.
	defer func() {
		if t.Failed() {
			t.Logf("events:\n%s\nimportant:\n%s\nstderr:\n%s", g.read("log/ksmg-messages"), g.read("log/ksmg-important"), g.stderrText())
		}
	}()
	wants := []string{"Subject: plain", "Subject: tls", "Subject: allowed", "by gw.test (ksmg-gatewayd) with ESMTPS id", "X-Rcpt-Args: <carol@example.com>"}
	var ents []os.DirEntry
	var all string
	read := func() {
		ents, _ = os.ReadDir(dump)
		all = ""
		for _, e := range ents {
			b, _ := os.ReadFile(filepath.Join(dump, e.Name()))
			all += string(b)
		}
	}
	// smtp-sink creates a dump file before it has written it: wait for
	// the contents, not only the files (a read between the two once
	// missed the last message's Subject).
	waitFor(t, 60*time.Second, "3 messages at smtp-sink", func() bool {
		read()
		for _, w := range wants {
			if !strings.Contains(all, w) {
				return false
			}
		}
		return len(ents) >= 3
	})
	read()
	for _, want := range wants {
		if !strings.Contains(all, want) {
			t.Errorf("delivered mail lacks %q", want)
		}
	}
	if len(ents) != 3 {
		t.Errorf("smtp-sink got %d messages, want 3", len(ents))
	}
	// One event line per step, machine-parsable, and never the body.
	if n := g.countEvents("rejected"); n != 4 {
		t.Errorf("%d rejected events, want 4:\n%s", n, g.read("log/ksmg-messages"))
	}
	waitFor(t, 10*time.Second, "3 delivered events", func() bool { return g.countEvents("delivered") == 3 })
	if strings.Contains(g.read("log/ksmg-messages"), "This is a test mailing") {
		t.Error("message body appears in the messages log")
	}
	// Backup holds a copy of each processed message.
	waitFor(t, 10*time.Second, "3 backup copies", func() bool {
		b, _ := os.ReadDir(filepath.Join(g.dir, "backup"))
		return len(b) == 3
	})
	bk, _ := os.ReadDir(filepath.Join(g.dir, "backup"))
	var copies string
	for _, e := range bk {
		env, msg, err := spool.ReadFile(filepath.Join(g.dir, "backup", e.Name()))
		if err != nil {
			t.Fatalf("backup copy unreadable: %v", err)
		}
		if env.ClientIP != "127.0.0.1" || env.ID+".msg" != e.Name() {
			t.Errorf("backup envelope %+v", env)
		}
		copies += string(msg)
	}
	for _, want := range []string{"Subject: plain", "Subject: tls", "Subject: allowed"} {
		if !strings.Contains(copies, want) {
			t.Errorf("Backup lacks the copy with %q", want)
		}
	}
	for _, p := range []string{"log/ksmg-messages", "log/ksmg-important", "tls/gw.crt"} {
		fi, err := os.Stat(filepath.Join(g.dir, p))
		if err != nil || fi.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %v err %v, want 0640", p, fi.Mode().Perm(), err)
		}
	}
	if fi, _ := os.Stat(filepath.Join(g.dir, "tls/gw.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v, want 0600", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(filepath.Join(g.dir, "queue")); fi.Mode().Perm() != 0o750 {
		t.Errorf("queue dir mode %v, want 0750", fi.Mode().Perm())
	}
}
