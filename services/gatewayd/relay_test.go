//go:build unix

package gatewayd_test

import (
	"fmt"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func send(t *testing.T, addr, from string, to []string, body string) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMail(from, to, strings.NewReader(body)); err != nil {
		t.Fatalf("send from %s to %v: %v", from, to, err)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}
}

func queued(t *testing.T, g *gw) int {
	ents, err := os.ReadDir(filepath.Join(g.dir, "queue", "msg"))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestOutageThenDelivery: mail queues while the next hop is down, survives a
// restart of the daemon, and is delivered when the next hop comes back.
func TestOutageThenDelivery(t *testing.T) {
	port := freePort(t) // nothing listens here yet
	route := fmt.Sprintf("127.0.0.1:%d", port)
	g := newGW(t, fmt.Sprintf(`
protected_domains: [{name: example.com, route: "%s"}]
relay: {retry_initial: 300ms, retry_max: 1s}
`, route))
	g.start()
	send(t, g.addr(), "alice@sender.test", []string{"bob@example.com"}, "Message-ID: <outage-1@test>\r\nSubject: outage\r\n\r\nqueued while down\r\n")
	waitFor(t, 20*time.Second, "a deferred event", func() bool { return g.countEvents("deferred") > 0 })
	if n := queued(t, g); n != 1 {
		t.Fatalf("%d messages in the queue during the outage, want 1", n)
	}
	// Queued mail survives a restart.
	if err := g.stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, g.stderrText())
	}
	if n := queued(t, g); n != 1 {
		t.Fatalf("%d messages in the queue after stop, want 1", n)
	}
	g.start()
	defer g.shutdown()

	down := newSink(t, route)
	waitFor(t, 30*time.Second, "delivery after the outage", func() bool { return len(down.messages()) == 1 })
	m := down.messages()[0]
	if messageID(m.Data) != "<outage-1@test>" || m.From != "alice@sender.test" || len(m.To) != 1 || m.To[0] != "bob@example.com" {
		t.Fatalf("delivered %q from %s to %v", messageID(m.Data), m.From, m.To)
	}
	waitFor(t, 10*time.Second, "the queue to empty", func() bool { return queued(t, g) == 0 })
}

// TestPermanentFailureDSN: a 5xx from the next hop for one recipient makes
// an RFC 3464 report to the sender; the other recipient is delivered.
func TestPermanentFailureDSN(t *testing.T) {
	down := newSink(t, "")
	down.refuse["nobody@example.com"] = true
	g := newGW(t, fmt.Sprintf(`
protected_domains: [{name: example.com, route: "%s"}]
relay: {retry_initial: 300ms, retry_max: 1s}
`, down.addr))
	g.start()
	defer g.shutdown()
	send(t, g.addr(), "alice@example.com", []string{"bob@example.com", "nobody@example.com"},
		"Message-ID: <dsn-1@test>\r\nFrom: alice@example.com\r\nSubject: will partly bounce\r\n\r\nsecret body text\r\n")

	var dsn *sunk
	waitFor(t, 30*time.Second, "the original and the DSN downstream", func() bool {
		msgs := down.messages()
		for i := range msgs {
			if msgs[i].From == "" {
				dsn = &msgs[i]
			}
		}
		return len(msgs) == 2 && dsn != nil
	})
	for _, m := range down.messages() {
		if m.From != "" && (len(m.To) != 1 || m.To[0] != "bob@example.com") {
			t.Errorf("original delivered to %v, want only bob", m.To)
		}
	}
	if len(dsn.To) != 1 || dsn.To[0] != "alice@example.com" {
		t.Fatalf("DSN sent to %v, want the sender", dsn.To)
	}
	msg, err := mail.ReadMessage(strings.NewReader(string(dsn.Data)))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN content type %q %v (%v)", mt, params, err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var parts []string
	var status string
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		parts = append(parts, p.Header.Get("Content-Type"))
		b := new(strings.Builder)
		fmt.Fprint(b, readAll(p))
		if p.Header.Get("Content-Type") == "message/delivery-status" {
			status = b.String()
		}
		if strings.Contains(b.String(), "secret body text") {
			t.Error("DSN returns the message body")
		}
	}
	if len(parts) != 3 || !strings.HasPrefix(parts[0], "text/plain") || parts[2] != "text/rfc822-headers" {
		t.Errorf("DSN parts %v", parts)
	}
	for _, want := range []string{"Reporting-MTA: dns; gw.test", "Final-Recipient: rfc822; nobody@example.com", "Action: failed", "Status: 5.1.1", "Diagnostic-Code: smtp; 550 5.1.1 No such user here"} {
		if !strings.Contains(status, want) {
			t.Errorf("delivery-status part lacks %q:\n%s", want, status)
		}
	}
	if strings.Contains(status, "bob@example.com") {
		t.Error("DSN lists the delivered recipient")
	}
	waitFor(t, 10*time.Second, "the queue to empty", func() bool { return queued(t, g) == 0 })
	if g.countEvents("bounced") != 1 || g.countEvents("dsn") != 1 {
		t.Errorf("events: bounced %d dsn %d, want 1 and 1", g.countEvents("bounced"), g.countEvents("dsn"))
	}
}

// TestExpiryDSN: a message that cannot be delivered within
// max_queue_lifetime bounces with status 4.4.7; a null-sender message never
// produces a DSN.
func TestExpiryDSN(t *testing.T) {
	down := newSink(t, "")
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	g := newGW(t, fmt.Sprintf(`
protected_domains:
  - {name: example.com, route: "%s"}
  - {name: unreachable.test, route: "%s"}
relay: {retry_initial: 200ms, retry_max: 400ms, max_queue_lifetime: 2s}
`, down.addr, dead))
	g.start()
	defer g.shutdown()
	send(t, g.addr(), "alice@example.com", []string{"x@unreachable.test"}, "Subject: expires\r\n\r\nbody\r\n")
	send(t, g.addr(), "", []string{"y@unreachable.test"}, "Subject: bounce of a bounce\r\n\r\nbody\r\n")
	waitFor(t, 30*time.Second, "the expiry DSN", func() bool { return len(down.messages()) == 1 })
	waitFor(t, 10*time.Second, "the queue to empty", func() bool { return queued(t, g) == 0 })
	time.Sleep(500 * time.Millisecond)
	msgs := down.messages()
	if len(msgs) != 1 || msgs[0].From != "" || msgs[0].To[0] != "alice@example.com" {
		t.Fatalf("downstream got %d messages (%+v); want one DSN to alice", len(msgs), msgs)
	}
	for _, want := range []string{"Final-Recipient: rfc822; x@unreachable.test", "Status: 4.4.7", "Action: failed"} {
		if !strings.Contains(string(msgs[0].Data), want) {
			t.Errorf("expiry DSN lacks %q", want)
		}
	}
	if g.countEvents("expired") != 2 {
		t.Errorf("%d expired events, want 2", g.countEvents("expired"))
	}
}

func readAll(p *multipart.Part) string {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := p.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}
