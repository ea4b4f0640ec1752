package relay

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ksmg-appliance/ksmg/services/address"
	"github.com/ksmg-appliance/ksmg/services/eventlog"
	"github.com/ksmg-appliance/ksmg/services/spool"
)

// maxDSNHeaders bounds the returned header block (text/rfc822-headers);
// bodies are not returned, so a DSN never copies message content.
const maxDSNHeaders = 64 << 10

// bounce queues an RFC 3464 delivery status notification for the failed
// recipients of m to its sender, from the null sender, durably.
func (r *Relay) bounce(m *spool.Message, failed []int) error {
	var hdr []byte
	if b, err := r.opt.Spool.Open(m.Env.ID); err == nil {
		hdr = headerBlock(b)
		b.Close()
	}
	msg := buildDSN(r.host, m, failed, hdr, r.opt.Now())
	env := &spool.Envelope{From: "", To: []string{m.Env.From}, Bounce: true, Received: r.opt.Now().UTC()}
	size, err := r.opt.Spool.Write(env, bytes.NewReader(msg))
	if err != nil {
		return err
	}
	r.Enqueue(&spool.Message{Env: *env, State: spool.NewState(env), Size: size})
	rc := make([]string, len(failed))
	for k, i := range failed {
		rc[k] = m.State.Rcpts[i].Addr
	}
	empty := ""
	r.opt.Events.Event(eventlog.Event{QueueID: env.ID, Sender: &empty, Recipients: env.To, Size: size, Action: "dsn",
		Result: fmt.Sprintf("queued: failure notice for %s of %s", strings.Join(rc, ","), m.Env.ID)})
	return nil
}

// headerBlock reads the message header (up to the first empty line).
func headerBlock(r io.Reader) []byte {
	br := bufio.NewReader(io.LimitReader(r, maxDSNHeaders))
	var out bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		if strings.TrimRight(line, "\r\n") == "" {
			break
		}
		out.WriteString(strings.TrimRight(line, "\r\n") + "\r\n")
		if err != nil {
			break
		}
	}
	return out.Bytes()
}

// buildDSN renders multipart/report; report-type=delivery-status.
func buildDSN(host string, m *spool.Message, failed []int, hdr []byte, now time.Time) []byte {
	var rb [12]byte
	rand.Read(rb[:])
	boundary := "ksmg-dsn-" + hex.EncodeToString(rb[:])
	var b bytes.Buffer
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\r\n", a...) }
	w("From: Mail Delivery System <MAILER-DAEMON@%s>", host)
	w("To: <%s>", address.Wire(m.Env.From))
	w("Subject: Undelivered Mail Returned to Sender")
	w("Date: %s", now.Format(time.RFC1123Z))
	w("Message-ID: <%s.dsn@%s>", m.Env.ID, host)
	w("Auto-Submitted: auto-replied")
	w("MIME-Version: 1.0")
	w("Content-Type: multipart/report; report-type=delivery-status; boundary=\"%s\"", boundary)
	w("")
	w("--%s", boundary)
	w("Content-Type: text/plain; charset=utf-8")
	w("")
	w("This is the mail gateway at %s.", host)
	w("")
	w("Your message (queue id %s) could not be delivered to the following", m.Env.ID)
	w("recipients. The delivery was given up:")
	w("")
	for _, i := range failed {
		rc := m.State.Rcpts[i]
		w("  <%s>: %d %s", address.Wire(rc.Addr), rc.Code, oneLine(rc.Text))
	}
	w("")
	w("--%s", boundary)
	w("Content-Type: message/delivery-status")
	w("")
	w("Reporting-MTA: dns; %s", host)
	w("X-KSMG-Queue-ID: %s", m.Env.ID)
	w("Arrival-Date: %s", m.Env.Received.Format(time.RFC1123Z))
	for _, i := range failed {
		rc := m.State.Rcpts[i]
		w("")
		w("Final-Recipient: rfc822; %s", address.Wire(rc.Addr))
		w("Action: failed")
		w("Status: %s", statusOf(rc))
		if rc.Code > 0 {
			w("Diagnostic-Code: smtp; %d %s", rc.Code, oneLine(rc.Text))
		}
		w("Last-Attempt-Date: %s", now.Format(time.RFC1123Z))
	}
	w("")
	w("--%s", boundary)
	w("Content-Type: text/rfc822-headers")
	w("")
	b.Write(hdr)
	w("")
	w("--%s--", boundary)
	return b.Bytes()
}

// statusOf is the RFC 3463 status: the reply's enhanced code when there
// was one, else 5.0.0 / 4.4.7.
func statusOf(rc spool.Rcpt) string {
	if m := enhRe.FindString(rc.Text); m != "" {
		return m // 4.4.7 for an expired message: the failures were temporary
	}
	return "5.0.0"
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\r", " ")
	return strings.ReplaceAll(s, "\n", " ")
}
