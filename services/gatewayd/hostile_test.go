//go:build unix

package gatewayd_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/services/internal/smtptest"
	"github.com/ksmg-appliance/ksmg/services/internal/tmpfs"
)

// The hostile-client suite (issue 11): the real daemon, clients that
// misbehave on purpose, and a next hop that records the raw bytes it gets
// (rawsink). Each test names the clause it holds the daemon to.

// hostileGW runs the daemon with example.com routed to a recording sink.
func hostileGW(t *testing.T, sink *smtptest.Sink, extra string) *gw {
	t.Helper()
	g := newGW(t, fmt.Sprintf(`protected_domains: [{name: example.com, route: %q}, {name: down.test, route: "127.0.0.1:%d"}]
relay: {default_route: %q, retry_initial: 300ms, retry_max: 600ms}
%s`, sink.Addr, freePort(t), sink.Addr, extra))
	g.start()
	t.Cleanup(func() {
		if g.cmd.ProcessState == nil {
			g.shutdown()
		}
	})
	return g
}

func noBareLineEnds(t *testing.T, sink *smtptest.Sink) {
	t.Helper()
	if n := smtptest.BareLineEnds(sink.Raw()); len(n) > 0 {
		t.Errorf("the next hop got bare CR or LF at %v:\n%q", n, sink.Raw())
	}
}

// Issue 11.1, RFC 5321 §4.1.2: an address that cannot be written on the
// wire is refused at RCPT (553 5.1.3) and MAIL (553 5.1.7); the other
// recipients of the message are delivered.
func TestHostileUnwritableAddresses(t *testing.T) {
	t.Parallel()
	sink := smtptest.StartSink(t, nil)
	g := hostileGW(t, sink, "")
	c := smtptest.Dial(t, g.addr())
	c.Cmd("EHLO c", "250 ")
	c.Cmd("MAIL FROM:<\"a\rb\"@sender.test>", "553 5.1.7 Bad sender address syntax")
	c.Cmd("MAIL FROM:<a@sender.test>", "250 ")
	c.Cmd("RCPT TO:<\"x\rRSET\"@example.com>", "553 5.1.3 Bad recipient address syntax")
	c.Cmd("RCPT TO:<good@example.com>", "250 ")
	c.Cmd("DATA", "354 ")
	c.Cmd("Subject: s\r\n\r\nbody\r\n.", "250 2.0.0 OK: queued")
	waitFor(t, 20*time.Second, "delivery to good@", func() bool { return len(sink.Txns()) == 1 })
	if tx := sink.Txns()[0]; len(tx.Rcpts) != 1 || tx.Rcpts[0] != "RCPT TO:<good@example.com>" {
		t.Errorf("delivered to %q", tx.Rcpts)
	}
	noBareLineEnds(t, sink)
}

// Issue 11.2 (SMTP smuggling, CVE-2023-51764 class), RFC 5321 §2.3.8 and
// §4.1.1.4: every lax end-of-data variant, by DATA and by BDAT, is refused
// with 550 5.6.0 (the DATA <CR><LF>.<CR> case too: third_party/go-smtp
// keeps the CR that go-smtp 0.26.0 dropped after a line-initial dot). The
// next hop never gets a bare CR or LF nor a smuggled transaction, and the
// session stays in step.
func TestHostileSmuggling(t *testing.T) {
	t.Parallel()
	sink := smtptest.StartSink(t, nil)
	g := hostileGW(t, sink, "")
	smuggled := "MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nsmuggled\r\n"
	for _, v := range []string{"\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r", "\r.\r\n", "\r\n.\r"} {
		for _, mode := range []string{"DATA", "BDAT"} {
			c := smtptest.Dial(t, g.addr())
			c.Envelope("a@sender.test", "b@example.com")
			body := "Subject: smuggle\r\n\r\nbefore" + v + smuggled
			want := "550 5.6.0 Message refused: bare CR or LF"
			if mode == "DATA" {
				c.Cmd("DATA", "354 ")
				c.Send(body + ".\r\n")
			} else {
				c.Send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(body), body))
			}
			if l := c.Expect(""); !strings.HasPrefix(l, want) {
				t.Errorf("%s %q: %q, want %q", mode, v, l, want)
			}
			c.Cmd("QUIT", "221 ")
		}
	}
	// A clean message after them all, to know when the relay is through.
	c := smtptest.Dial(t, g.addr())
	c.Envelope("a@sender.test", "last@example.com")
	c.Cmd("DATA", "354 ")
	c.Cmd("Subject: last\r\n\r\nok\r\n.", "250 ")
	waitFor(t, 20*time.Second, "the clean message downstream", func() bool { return len(sink.Txns()) == 1 })
	time.Sleep(300 * time.Millisecond)
	for _, tx := range sink.Txns() {
		if tx.Mail != "MAIL FROM:<a@sender.test>" {
			t.Errorf("smuggled transaction downstream: %+v", tx)
		}
	}
	if strings.Contains(string(sink.Raw()), "evil@attacker.test") {
		t.Errorf("the smuggled command reached the next hop")
	}
	noBareLineEnds(t, sink)
}

// Issue 11.3, RFC 5321 §4.5.3.2: the idle timeout is per read; a slow
// client that keeps sending is served past it. One that stalls in the
// body gets 421 4.4.2, the connection closes, and what it sends later (a
// whole transaction) is never run as commands. A partial command at the
// timeout (issue 11.4) is not run either.
func TestHostileTimeouts(t *testing.T) {
	t.Parallel()
	sink := smtptest.StartSink(t, nil)
	g := hostileGW(t, sink, "limits: {idle_timeout: 2s, min_data_rate: 100KB}\n")

	slow := smtptest.Dial(t, g.addr())
	slow.Envelope("a@sender.test", "slow@example.com")
	slow.Cmd("DATA", "354 ")
	slow.Send("Subject: slow\r\n\r\n")
	for i := 0; i < 6; i++ { // 4.2 s: twice the idle timeout
		time.Sleep(700 * time.Millisecond)
		slow.Send(fmt.Sprintf("line %d\r\n", i))
	}
	slow.Cmd(".", "250 2.0.0 OK: queued")

	stall := smtptest.Dial(t, g.addr())
	stall.Envelope("a@sender.test", "stalled@example.com")
	stall.Cmd("DATA", "354 ")
	stall.Send("Subject: stall\r\n\r\npart")
	time.Sleep(3 * time.Second)
	_, _ = io.WriteString(stall.C, "\r\n.\r\nMAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nsmuggled\r\n.\r\n") // may fail: closed
	if rest := stall.Rest(); rest != "421 4.4.2 gw.test Error: timeout exceeded, closing connection\r\n" {
		t.Errorf("a stalled body got %q, want only 421 4.4.2 and the close", rest)
	}

	partial := smtptest.Dial(t, g.addr())
	partial.Send("EHLO slow")
	if rest := partial.Rest(); rest != "421 4.4.2 gw.test Error: timeout exceeded, closing connection\r\n" {
		t.Errorf("a partial EHLO got %q, want only 421 4.4.2 and the close", rest)
	}

	waitFor(t, 20*time.Second, "the slow message downstream", func() bool { return len(sink.Txns()) == 1 })
	time.Sleep(time.Second)
	if n := len(sink.Txns()); n != 1 || sink.Txns()[0].Rcpts[0] != "RCPT TO:<slow@example.com>" {
		t.Errorf("downstream got %d messages: %+v", n, sink.Txns())
	}
}

// Issue 11.5, RFC 5321 §4.1.2: quoted local parts are relayed quoted; and
// RFC 5321 §4.5.1: <postmaster> without a domain is accepted (issue 11.9),
// for the first protected domain's postmaster.
func TestHostileQuotingAndPostmaster(t *testing.T) {
	t.Parallel()
	sink := smtptest.StartSink(t, nil)
	g := hostileGW(t, sink, "")
	c := smtptest.Dial(t, g.addr())
	c.Cmd("EHLO c", "250 ")
	c.Cmd(`MAIL FROM:<"a b"@sender.test>`, "250 ")
	for _, r := range []string{`<"john doe"@example.com>`, `<"victim@other.net"@example.com>`, `<"a\"b"@example.com>`, `<Postmaster>`} {
		c.Cmd("RCPT TO:"+r, "250 ")
	}
	c.Cmd("DATA", "354 ")
	c.Cmd("Subject: q\r\n\r\nx\r\n.", "250 ")
	waitFor(t, 20*time.Second, "delivery", func() bool { return len(sink.Txns()) == 1 })
	tx := sink.Txns()[0]
	want := `MAIL FROM:<"a b"@sender.test>|RCPT TO:<"john doe"@example.com>|RCPT TO:<"victim@other.net"@example.com>|RCPT TO:<"a\"b"@example.com>|RCPT TO:<postmaster@example.com>`
	if got := tx.Mail + "|" + strings.Join(tx.Rcpts, "|"); got != want {
		t.Errorf("envelope on the wire\n%s\nwant\n%s", got, want)
	}
}

// Issue 11.6: a permanent failure is reported at once, while the message's
// other recipient (next hop down) keeps being retried.
func TestHostilePromptDSN(t *testing.T) {
	t.Parallel()
	sink := smtptest.StartSink(t, func(rcpt string) string {
		if strings.Contains(rcpt, "nobody@") {
			return "550 5.1.1 No such user"
		}
		return ""
	})
	g := hostileGW(t, sink, "")
	c := smtptest.Dial(t, g.addr())
	c.Envelope("alice@sender.test", "nobody@example.com")
	c.Cmd("RCPT TO:<later@down.test>", "250 ")
	c.Cmd("DATA", "354 ")
	c.Cmd("Subject: p\r\n\r\nx\r\n.", "250 ")
	waitFor(t, 20*time.Second, "the DSN", func() bool { return len(sink.Txns()) == 1 })
	if tx := sink.Txns()[0]; tx.Mail != "MAIL FROM:<>" || tx.Rcpts[0] != "RCPT TO:<alice@sender.test>" || !strings.Contains(string(tx.Data), "Final-Recipient: rfc822; nobody@example.com") {
		t.Errorf("first downstream message is not the DSN: %+v", tx)
	}
	if queued(t, g) != 1 {
		t.Errorf("the message left the queue with later@down.test pending")
	}
}

// Issue 11.7: a full spool (a tmpfs of 4 MiB the test mounts and fills) is
// answered 452 4.3.1 without internal paths; the torn file is removed, the
// daemon keeps serving and accepts mail again once space returns.
func TestHostileFullSpool(t *testing.T) {
	t.Parallel()
	sink := smtptest.StartSink(t, nil)
	g := newGW(t, "")
	tmpfs.Mount(t, filepath.Join(g.dir, "queue"), "4m")
	g.writeConfig(fmt.Sprintf("protected_domains: [{name: example.com, route: %q}]\nlimits: {max_message_size: 3MB}\n", sink.Addr))
	g.start()
	defer g.shutdown()
	filler := filepath.Join(g.dir, "queue", "filler")
	if err := os.WriteFile(filler, make([]byte, 3500<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	body := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 998)+"\r\n", 1000) // 1 MB
	c := smtptest.Dial(t, g.addr())
	c.Envelope("a@sender.test", "b@example.com")
	c.Cmd("DATA", "354 ")
	l := c.Cmd(body+".", "452 4.3.1 Insufficient system storage")
	if strings.Contains(l, "/") {
		t.Errorf("reply shows a path: %q", l)
	}
	for _, sub := range []string{"tmp", "msg"} {
		if ents, _ := os.ReadDir(filepath.Join(g.dir, "queue", sub)); len(ents) != 0 {
			t.Errorf("queue/%s holds %d files after the failure", sub, len(ents))
		}
	}
	os.Remove(filler)
	c.Cmd("MAIL FROM:<a@sender.test>", "250 ")
	c.Cmd("RCPT TO:<b@example.com>", "250 ")
	c.Cmd("DATA", "354 ")
	c.Cmd(body+".", "250 2.0.0 OK: queued")
	waitFor(t, 20*time.Second, "delivery", func() bool { return len(sink.Txns()) == 1 })
}

// Issue 11.8, sd_notify(3): a reload says RELOADING=1 with one
// MONOTONIC_USEC=<µs> field, then READY=1.
func TestHostileReloadNotification(t *testing.T) {
	t.Parallel()
	sink := smtptest.StartSink(t, nil)
	g := hostileGW(t, sink, "")
	g.signal(syscall.SIGHUP)
	re := regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=[0-9]+\n?$`)
	buf := make([]byte, 4096)
	if err := g.notify.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := g.notify.Read(buf)
	if err != nil || !re.Match(buf[:n]) {
		t.Fatalf("reload notification %q (%v), want %v", buf[:n], err, re)
	}
	if !g.waitNotify("READY=1", 10*time.Second) {
		t.Fatal("no READY=1 after the reload")
	}
}

// Issue 11.9: junk commands are limited (limits.junk_command_limit, like
// Postfix's smtpd_junk_command_limit): of 10,000 NOOPs, 100 are answered.
// Connection resets and port probes are no WARN in the important log.
func TestHostileJunkAndNoise(t *testing.T) {
	t.Parallel()
	sink := smtptest.StartSink(t, nil)
	g := hostileGW(t, sink, "")
	c := smtptest.Dial(t, g.addr())
	c.Cmd("EHLO c", "250 ")
	c.Send(strings.Repeat("NOOP\r\n", 10000))
	n := 0
	for {
		l, err := c.BR.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d NOOP replies: %v", n, err)
		}
		if strings.HasPrefix(l, "421 4.7.0") {
			break
		}
		n++
	}
	if n != 99 { // the EHLO reply was the first
		t.Errorf("%d NOOPs answered, want 99", n)
	}
	for i := 0; i < 5; i++ {
		if p, err := net.Dial("tcp", g.addr()); err == nil {
			p.Close() // a probe
		}
		r := smtptest.Dial(t, g.addr())
		r.Send("EHLO c\r\nMAIL FROM:<a@s")
		r.Expect("250 ")
		if err := r.C.(*net.TCPConn).SetLinger(0); err != nil {
			t.Fatal(err)
		}
		r.C.Close() // a reset
	}
	time.Sleep(500 * time.Millisecond)
	imp := g.read("log/ksmg-important")
	if i := strings.Index(imp, "ksmg-gatewayd started"); i >= 0 {
		imp = imp[i:]
	}
	if strings.Contains(imp, "WARN") || strings.Contains(imp, "connection reset") || strings.Contains(imp, "error handling") {
		t.Errorf("the important log records client noise:\n%s", imp)
	}
}
