package relay

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/services/config"
	"github.com/ksmg-appliance/ksmg/services/eventlog"
	"github.com/ksmg-appliance/ksmg/services/internal/smtptest"
	"github.com/ksmg-appliance/ksmg/services/spool"
)

type memEvents struct {
	mu sync.Mutex
	ev []eventlog.Event
}

func (m *memEvents) Event(e eventlog.Event) { m.mu.Lock(); m.ev = append(m.ev, e); m.mu.Unlock() }

func (m *memEvents) count(action, rcpt string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, e := range m.ev {
		if e.Action != action {
			continue
		}
		for _, r := range e.Recipients {
			if r == rcpt {
				n++
			}
		}
	}
	return n
}

type fixture struct {
	sp  *spool.Spool
	rl  *Relay
	ev  *memEvents
	dir string
}

// newRelay runs a relay on a fresh spool; routes: example.com and the
// default route (senders' domains, for DSNs) to sink, down.test nowhere.
func newRelay(t *testing.T, sink string, extra string) *fixture {
	t.Helper()
	dead := deadAddr(t)
	cfg, err := config.Parse("/t.yaml", []byte(fmt.Sprintf(`hostname: gw.test
protected_domains: [{name: example.com, route: %q, tls: none}, {name: down.test, route: %q, tls: none}]
relay: {default_route: %q, default_tls: none, retry_initial: 150ms, retry_max: 300ms, connect_timeout: 2s}
%s`, sink, dead, sink, extra)), nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ev: &memEvents{}, dir: t.TempDir()}
	f.sp, _, _, err = spool.Open(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	f.rl = New(Options{Config: func() *config.Config { return cfg }, Spool: f.sp, Events: f.ev, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	f.rl.Start(ctx)
	t.Cleanup(func() { cancel(); f.rl.Wait(); f.sp.Close() })
	return f
}

func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

// queue puts a message in the spool as it is (as a queue written by an
// earlier version may hold it) and hands it to the relay.
func (f *fixture) queue(t *testing.T, from string, to []string, body string) string {
	t.Helper()
	env := &spool.Envelope{From: from, To: to}
	n, err := f.sp.Write(env, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	f.rl.Enqueue(&spool.Message{Env: *env, State: spool.NewState(env), Size: n})
	return env.ID
}

func (f *fixture) queued(id string) bool {
	_, err := f.sp.Open(id)
	return err == nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dsnsTo are the transactions from the null sender to rcpt.
func dsnsTo(s *smtptest.Sink, rcpt string) []smtptest.Txn {
	var out []smtptest.Txn
	for _, tx := range s.Txns() {
		if tx.Mail == "MAIL FROM:<>" && len(tx.Rcpts) == 1 && tx.Rcpts[0] == "RCPT TO:<"+rcpt+">" {
			out = append(out, tx)
		}
	}
	return out
}

// Issue 11.1: one recipient's failure never affects another's delivery. A
// recipient that cannot be written on the wire (here a bare CR, in a queue
// entry from before the SMTP server refused them) fails permanently for
// itself (553 5.1.3, RFC 5321 §4.1.2) with a DSN; the next one is
// delivered in the same attempt, and no bare CR reaches the next hop.
func TestRecipientsIndependent(t *testing.T) {
	t.Parallel()
	sink := smtptest.StartSink(t, nil)
	f := newRelay(t, sink.Addr, "")
	id := f.queue(t, "a@sender.test", []string{"x\rRSET@example.com", "good@example.com"}, "Subject: s\r\n\r\nbody\r\n")
	waitFor(t, "delivery to good@ and the DSN for x\\rRSET@", func() bool {
		return f.ev.count("delivered", "good@example.com") == 1 && len(dsnsTo(sink, "a@sender.test")) == 1
	})
	waitFor(t, "the queue entry to go", func() bool { return !f.queued(id) })
	if f.ev.count("bounced", "x\rRSET@example.com") != 1 {
		t.Errorf("the unwritable recipient was not bounced once: %+v", f.ev.ev)
	}
	if !strings.Contains(string(dsnsTo(sink, "a@sender.test")[0].Data), "553 5.1.3") {
		t.Errorf("DSN does not carry 553 5.1.3:\n%s", dsnsTo(sink, "a@sender.test")[0].Data)
	}
	if n := smtptest.BareLineEnds(sink.Raw()); len(n) > 0 {
		t.Errorf("bare CR or LF on the wire at %v:\n%q", n, sink.Raw())
	}
}

// A sender that cannot be written fails every recipient permanently (553
// 5.1.7) and is not sent a DSN (it could not be addressed either).
func TestUnwritableSender(t *testing.T) {
	t.Parallel()
	sink := smtptest.StartSink(t, nil)
	f := newRelay(t, sink.Addr, "")
	id := f.queue(t, "a\rb@sender.test", []string{"one@example.com", "two@example.com"}, "Subject: s\r\n\r\nbody\r\n")
	waitFor(t, "the queue entry to go", func() bool { return !f.queued(id) })
	if n := f.ev.count("bounced", "one@example.com") + f.ev.count("bounced", "two@example.com"); n != 2 {
		t.Errorf("%d bounced events, want 2", n)
	}
	if len(sink.Txns()) != 0 || len(smtptest.BareLineEnds(sink.Raw())) > 0 {
		t.Errorf("sent %d transactions, raw %q", len(sink.Txns()), sink.Raw())
	}
}

// Issue 11.5: the envelope is relayed as RFC 5321 §4.1.2 requires, quoting
// kept where the local part needs it.
func TestEnvelopeQuoting(t *testing.T) {
	t.Parallel()
	sink := smtptest.StartSink(t, nil)
	f := newRelay(t, sink.Addr, "")
	f.queue(t, "x y@sender.test", []string{"john doe@example.com", "victim@other.net@example.com", `a"b@example.com`, `a\b@example.com`, "plain.one@example.com"}, "Subject: q\r\n\r\nx\r\n")
	waitFor(t, "one transaction", func() bool { return len(sink.Txns()) == 1 })
	tx := sink.Txns()[0]
	if tx.Mail != `MAIL FROM:<"x y"@sender.test>` {
		t.Errorf("MAIL line %q", tx.Mail)
	}
	want := []string{`RCPT TO:<"john doe"@example.com>`, `RCPT TO:<"victim@other.net"@example.com>`, `RCPT TO:<"a\"b"@example.com>`, `RCPT TO:<"a\\b"@example.com>`, `RCPT TO:<plain.one@example.com>`}
	if strings.Join(tx.Rcpts, "\n") != strings.Join(want, "\n") {
		t.Errorf("RCPT lines\n%s\nwant\n%s", strings.Join(tx.Rcpts, "\n"), strings.Join(want, "\n"))
	}
}

// Issue 11.2, outbound half: whatever a queue entry holds, the relay sends
// only CRLF line ends, so no next hop (lax on bare CR or bare LF) can find
// an end of data before the real one; every line-initial dot is stuffed.
func TestBodyLineEndsNormalised(t *testing.T) {
	t.Parallel()
	sink := smtptest.StartSink(t, nil)
	f := newRelay(t, sink.Addr, "")
	smuggle := "MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nsmuggled\r\n"
	variants := []string{"\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r", "\r.\r\n", "\r\n.\r"}
	for _, v := range variants {
		f.queue(t, "a@sender.test", []string{"b@example.com"}, "Subject: v\r\n\r\nbefore"+v+smuggle+"after\r")
	}
	waitFor(t, "every message", func() bool { return len(sink.Txns()) == len(variants) })
	for _, tx := range sink.Txns() {
		if n := smtptest.BareLineEnds(tx.Data); len(n) > 0 {
			t.Errorf("bare line ends at %v in %q", n, tx.Data)
		}
		if !strings.Contains(string(tx.Data), "\r\n..\r\nMAIL FROM:<evil@x.test>") {
			t.Errorf("the dot line is not stuffed: %q", tx.Data)
		}
	}
	if n := strings.Count(string(sink.Raw()), "\r\nMAIL FROM:<a@sender.test>"); n+1 < len(variants) { // the first may open the stream
		t.Errorf("%d MAIL commands from the relay, want %d", n, len(variants))
	}
}

// Issue 11.6: a permanent failure is reported at the end of the attempt
// that found it, while the message's other recipients keep being retried;
// and only once.
func TestPromptDSN(t *testing.T) {
	t.Parallel()
	sink := smtptest.StartSink(t, func(rcpt string) string {
		if strings.Contains(rcpt, "nobody@") {
			return "550 5.1.1 No such user"
		}
		return ""
	})
	f := newRelay(t, sink.Addr, "")
	id := f.queue(t, "alice@sender.test", []string{"nobody@example.com", "later@down.test"}, "Subject: p\r\n\r\nx\r\n")
	waitFor(t, "the DSN while later@down.test is still queued", func() bool { return len(dsnsTo(sink, "alice@sender.test")) == 1 })
	waitFor(t, "two more attempts for later@down.test", func() bool { return f.ev.count("deferred", "later@down.test") >= 3 })
	if !f.queued(id) {
		t.Fatal("the message left the queue with a recipient pending")
	}
	if n := len(dsnsTo(sink, "alice@sender.test")); n != 1 {
		t.Errorf("%d DSNs, want 1", n)
	}
	if d := string(dsnsTo(sink, "alice@sender.test")[0].Data); !strings.Contains(d, "nobody@example.com") || strings.Contains(d, "later@down.test") {
		t.Errorf("DSN names the wrong recipients:\n%s", d)
	}
}

// A connection that fails in the middle of the recipients defers every
// recipient not yet delivered (temporary, for each of them), and they are
// all delivered at a later attempt.
func TestConnectionLostAmongRecipients(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	hangups := 1
	sink := smtptest.StartSink(t, func(rcpt string) string {
		mu.Lock()
		defer mu.Unlock()
		if strings.Contains(rcpt, "two@") && hangups > 0 {
			hangups--
			return smtptest.HangUp
		}
		return ""
	})
	f := newRelay(t, sink.Addr, "")
	id := f.queue(t, "a@sender.test", []string{"one@example.com", "two@example.com", "three@example.com"}, "Subject: h\r\n\r\nx\r\n")
	waitFor(t, "the queue entry to go", func() bool { return !f.queued(id) })
	for _, r := range []string{"one@example.com", "two@example.com", "three@example.com"} {
		if f.ev.count("delivered", r) != 1 || f.ev.count("deferred", r) != 1 {
			t.Errorf("%s: delivered %d deferred %d, want 1 and 1", r, f.ev.count("delivered", r), f.ev.count("deferred", r))
		}
	}
}
