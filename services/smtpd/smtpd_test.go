package smtpd

import (
	"bufio"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/internal/testsync"
	"github.com/ksmg-appliance/ksmg/services/address"
	"github.com/ksmg-appliance/ksmg/services/config"
	"github.com/ksmg-appliance/ksmg/services/eventlog"
	"github.com/ksmg-appliance/ksmg/services/spool"
)

type memQueue struct {
	mu   sync.Mutex
	msgs []*spool.Message
}

func (q *memQueue) Enqueue(m *spool.Message) { q.mu.Lock(); q.msgs = append(q.msgs, m); q.mu.Unlock() }

type memEvents struct {
	mu sync.Mutex
	ev []eventlog.Event
}

func (e *memEvents) Event(ev eventlog.Event) { e.mu.Lock(); e.ev = append(e.ev, ev); e.mu.Unlock() }

type harness struct {
	addr  string
	queue *memQueue
	sp    *spool.Spool
	imp   *testsync.Buffer // the important log
	diag  *testsync.Buffer // the journal at debug level
}

// start serves on loopback. The loopback client is NOT trusted here, so the
// relay rule applies to it.
func start(t testing.TB, yaml string, opts ...spool.Option) *harness {
	t.Helper()
	return startWith(t, yaml, nil, opts...)
}

// startTLS offers STARTTLS with a self-signed certificate.
func startTLS(t testing.TB, yaml string) *harness {
	t.Helper()
	dir := t.TempDir()
	cert, _, err := LoadOrCreateCert(dir+"/c.crt", dir+"/c.key", "gw.test", true)
	if err != nil {
		t.Fatal(err)
	}
	return startWith(t, yaml, &tls.Config{Certificates: []tls.Certificate{cert}})
}

func startWith(t testing.TB, yaml string, tc *tls.Config, opts ...spool.Option) *harness {
	t.Helper()
	cfg, err := config.Parse("/test.yaml", []byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	sp, _, _, err := spool.Open(t.TempDir(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.Close)
	h := &harness{queue: &memQueue{}, sp: sp, imp: &testsync.Buffer{}, diag: &testsync.Buffer{}}
	srv := New(Options{Config: func() *config.Config { return cfg }, Spool: sp, Queue: h.queue, Events: &memEvents{},
		Log:  slog.New(slog.NewTextHandler(h.imp, nil)),
		Diag: slog.New(slog.NewTextHandler(h.diag, &slog.HandlerOptions{Level: slog.LevelDebug})), TLS: tc})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = l.Addr().String()
	go func() { _ = srv.Serve(l) }() // ends with Close at cleanup
	t.Cleanup(func() { srv.srv.Close() })
	return h
}

const fuzzConfig = `
hostname: gw.test
trusted_networks: ["192.0.2.0/24"]
protected_domains: [{name: example.com, route: "127.0.0.1:1"}]
limits: {max_message_size: 4096, max_recipients: 3, idle_timeout: 5s, max_line_length: 600}
lists: {deny: {senders: ["@spam.test"]}}
`

var replyRe = regexp.MustCompile(`^[2-5][0-9][0-9][ -]`)

// dialog writes raw client bytes, closes the write side and returns the
// server's reply lines.
func dialog(t testing.TB, addr string, input []byte) []string {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	go func() {
		// Either may fail once the server has closed: the replies tell.
		_, _ = c.Write(input)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	var lines []string
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

func TestPolicy(t *testing.T) {
	t.Parallel()
	h := start(t, fuzzConfig)
	for _, tc := range []struct {
		name, in string
		want     []string // in order, among the replies
	}{
		{"accept", "EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
			[]string{"220 ", "250-", "250 2.0.0", "250 2.0.0", "354 ", "250 2.0.0 OK: queued as ", "221 "}},
		{"open relay", "EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<b@other.test>\r\nQUIT\r\n",
			[]string{"550 5.7.1 Relaying denied"}},
		{"deny sender", "EHLO c\r\nMAIL FROM:<x@spam.test>\r\nQUIT\r\n", []string{"550 5.7.1 Sender address rejected"}},
		{"too many recipients", "EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<1@example.com>\r\nRCPT TO:<2@example.com>\r\nRCPT TO:<3@example.com>\r\nRCPT TO:<4@example.com>\r\nQUIT\r\n",
			[]string{"452 4.5.3 Too many recipients"}},
		{"declared size", "EHLO c\r\nMAIL FROM:<a@s.test> SIZE=999999\r\nQUIT\r\n", []string{"552 5.3.4"}},
		{"oversize data", "EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n" + strings.Repeat("0123456789\r\n", 500) + ".\r\nQUIT\r\n",
			[]string{"354 ", "552 5.3.4"}},
		{"long line", "EHLO " + strings.Repeat("x", 700) + "\r\n", []string{"500 5.4.0 Too long line"}},
		{"data before rcpt", "EHLO c\r\nDATA\r\nQUIT\r\n", []string{"502 5.5.1"}},
		// RFC 5321 §4.1.2: an address is refused when it cannot be written
		// on the wire again (a bare CR or LF would split the relay's command).
		{"bare CR in a quoted recipient", "EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<\"x\rRSET\"@example.com>\r\nRCPT TO:<good@example.com>\r\nQUIT\r\n",
			[]string{"553 5.1.3 Bad recipient address syntax", "250 2.0.0"}},
		{"bare CR in the sender", "EHLO c\r\nMAIL FROM:<\"a\rb\"@s.test>\r\nQUIT\r\n", []string{"553 5.1.7 Bad sender address syntax"}},
		{"8-bit recipient", "EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<caf\xc3\xa9@example.com>\r\nQUIT\r\n", []string{"553 5.1.3"}},
		{"bad domain", "EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<a@exa(mple.com>\r\nQUIT\r\n", []string{"553 5.1.3"}},
		// RFC 5321 §4.5.1: <postmaster> without a domain MUST be accepted.
		{"postmaster", "EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<PostMaster>\r\nQUIT\r\n", []string{"250 2.0.0 I'll make sure <PostMaster>"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := dialog(t, h.addr, []byte(tc.in))
			i := 0
			for _, l := range lines {
				if i < len(tc.want) && strings.HasPrefix(l, tc.want[i]) {
					i++
				}
			}
			if i != len(tc.want) {
				t.Fatalf("replies %q\nlack %q (in order)", lines, tc.want[i])
			}
		})
	}
	if len(h.queue.msgs) != 1 {
		t.Fatalf("%d messages queued, want 1", len(h.queue.msgs))
	}
	m := h.queue.msgs[0]
	if len(m.Env.To) != 1 || m.Env.To[0] != "b@example.com" {
		t.Fatalf("queued for %q", m.Env.To)
	}
	b, err := h.sp.Open(m.Env.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	data, _ := io.ReadAll(b)
	if !strings.HasPrefix(string(data), "Received: from c ([127.0.0.1])\r\n\tby gw.test (ksmg-gatewayd) with ESMTP id "+m.Env.ID) ||
		!strings.HasSuffix(string(data), "Subject: x\r\n\r\nhi\r\n") {
		t.Fatalf("queued body %q", data)
	}
}

// A MAIL inside a transaction is a bad sequence (RFC 5321 §4.1.4: a
// transaction is MAIL, RCPT..., DATA; 503 like Postfix's "nested MAIL
// command"), and a refused MAIL leaves the state as it was (§4.1.1.2). go-smtp
// lets a second MAIL through to the session and keeps the transaction open
// when the session refuses it; the session had by then taken the refused
// sender as the transaction's: a deny-listed sender or an address the relay
// cannot write went into the queue behind an accepted MAIL.
func TestNestedMail(t *testing.T) {
	t.Parallel()
	h := start(t, fuzzConfig)
	for _, second := range []string{"<x@spam.test>", "<\"a\rb\"@s.test>", "<a@s.test>"} {
		lines := dialog(t, h.addr, []byte("EHLO c\r\nMAIL FROM:<ok@s.test>\r\nMAIL FROM:"+second+"\r\n"+
			"RCPT TO:<b@example.com>\r\nDATA\r\nSubject: n\r\n\r\nx\r\n.\r\nQUIT\r\n"))
		if len(lines) < 5 || !strings.HasPrefix(lines[len(lines)-5], "503 5.5.1") {
			t.Errorf("%s: replies %q, want 503 5.5.1 to the second MAIL", second, lines)
		}
	}
	h.queue.mu.Lock()
	defer h.queue.mu.Unlock()
	for _, m := range h.queue.msgs {
		if m.Env.From != "ok@s.test" {
			t.Errorf("queued from %q", m.Env.From)
		}
	}
}

// Each recipient is stored as go-smtp unquoted it, <postmaster> as the
// first protected domain's postmaster, and the Received header's "for"
// clause quotes as RFC 5321 §4.1.2 requires.
func TestQueuedRecipients(t *testing.T) {
	t.Parallel()
	h := start(t, fuzzConfig)
	for _, tc := range []struct{ rcpt, stored, forClause string }{
		{`<"john doe"@example.com>`, "john doe@example.com", `for <"john doe"@example.com>`},
		{`<"victim@other.net"@example.com>`, "victim@other.net@example.com", `for <"victim@other.net"@example.com>`},
		{`<"a\"b"@example.com>`, `a"b@example.com`, `for <"a\"b"@example.com>`},
		{`<postmaster>`, "postmaster@example.com", "for <postmaster@example.com>"},
	} {
		before := len(h.queue.msgs)
		lines := dialog(t, h.addr, []byte("EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:"+tc.rcpt+"\r\nDATA\r\nSubject: q\r\n\r\nx\r\n.\r\nQUIT\r\n"))
		h.queue.mu.Lock()
		n := len(h.queue.msgs)
		var m *spool.Message
		if n == before+1 {
			m = h.queue.msgs[before]
		}
		h.queue.mu.Unlock()
		if m == nil {
			t.Errorf("%s: not queued; replies %q", tc.rcpt, lines)
			continue
		}
		if len(m.Env.To) != 1 || m.Env.To[0] != tc.stored {
			t.Errorf("%s: stored as %q, want %q", tc.rcpt, m.Env.To, tc.stored)
		}
		b, _ := h.sp.Open(m.Env.ID)
		data, _ := io.ReadAll(b)
		b.Close()
		if !strings.Contains(string(data), tc.forClause+";") {
			t.Errorf("%s: Received header lacks %q:\n%s", tc.rcpt, tc.forClause, data)
		}
	}
}

func TestMatchAddr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		list []string
		addr string
		want bool
	}{
		{[]string{"a@x.test"}, "A@X.test", true},
		{[]string{"a@x.test"}, "b@x.test", false},
		{[]string{"@x.test"}, "b@x.test", true},
		{[]string{"@x.test"}, "b@sub.x.test", false},
		{[]string{"x.test"}, "b@x.test", true},
		{[]string{"x.test"}, "b@xx.test", false},
		{nil, "b@x.test", false},
	} {
		if got := matchAddr(tc.list, tc.addr); got != tc.want {
			t.Errorf("matchAddr(%v, %q) = %v", tc.list, tc.addr, got)
		}
	}
}

// FuzzSession feeds raw client bytes into a real session. Invariants: no
// panic (a panic in a handler would show as a 421 reply), every reply line
// is a well-formed SMTP reply, the first is the 220 greeting, and nothing
// is ever queued for a domain that is not protected (never an open relay),
// from a denied sender, with an address the relay could not write, or with
// a bare CR or LF in it (no smuggling).
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@other.test>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n..dot\r\n.\r\n",
		"EHLO c\r\nMAIL FROM:<a@s.test> SIZE=10 BODY=8BITMIME\r\nRCPT TO:<b@example.com> NOTIFY=NEVER\r\nBDAT 5 LAST\r\nhello",
		"EHLO c\r\nSTARTTLS\r\n\x16\x03\x01garbage",
		"EHLO c\r\nRSET\r\nNOOP\r\nVRFY x\r\nMAIL FROM:<x@spam.test>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n.\r\n",
		"EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<\"q u\"@example.com>\r\nRCPT TO:<b@EXAMPLE.COM>\r\nDATA\r\n\r\n.\r\n",
		"MAIL FROM:<a@s.test>\r\n\r\n\x00\xff\r\nAUTH PLAIN AGFhAGI=\r\n",
		// Issue 11 (each also a file in testdata/fuzz/FuzzSession):
		"EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<\"x\rRSET\"@example.com>\r\nRCPT TO:<good@example.com>\r\nDATA\r\nx\r\n.\r\n",
		"EHLO c\r\nMAIL FROM:<\"a\rb\"@s.test>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n",
		"EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r.\rMAIL FROM:<e@s.test>\r\nRCPT TO:<v@example.com>\r\nDATA\r\ns\r\n.\r\n",
		"EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\n.\nMAIL FROM:<e@s.test>\r\nRCPT TO:<v@example.com>\r\nDATA\r\ns\r\n.\r\n",
		"EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\rMAIL FROM:<e@s.test>\r\n.\r\n",
		"EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<b@example.com>\r\nBDAT 30 LAST\r\nx\r.\r\nMAIL FROM:<e@s.test>\r\n.\r\n",
		"EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<b@example.com>\r\nBDAT 0 LAST",
		"EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<postmaster>\r\nRCPT TO:<\"john doe\"@example.com>\r\nRCPT TO:<\"v@o.net\"@example.com>\r\nDATA\r\nx\r\n.\r\n",
		"EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\r\n.\r\nMAIL FROM:<e@s.test>\r\nRCPT TO:<v@example.com>\r\nDATA\r\ns\r\n.\r\n",
		"EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\r\n.\r\nMAIL FROM:<e@s.test>\r\nRCPT TO:<v@example.com>\r\nDATA\r\ns\r\n.\r\n",
		"EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<b@example.com>\r\nBDAT 0\r\nRSET\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<c@example.com>\r\nBDAT 3 LAST\r\nx\r\n",
		"EHLO c\r\n" + strings.Repeat("NOOP\r\n", 300),
		"EHLO slow",
	} {
		f.Add([]byte(s))
	}
	h := start(f, fuzzConfig)
	f.Fuzz(func(t *testing.T, in []byte) {
		before := func() int { h.queue.mu.Lock(); defer h.queue.mu.Unlock(); return len(h.queue.msgs) }()
		lines := dialog(t, h.addr, in)
		if len(lines) == 0 || !strings.HasPrefix(lines[0], "220 ") {
			t.Fatalf("no greeting: %q", lines)
		}
		for _, l := range lines {
			if !replyRe.MatchString(l) {
				t.Fatalf("malformed reply line %q", l)
			}
			if strings.HasPrefix(l, "421 4.0.0 Internal server error") {
				t.Fatalf("handler panicked: %q", lines)
			}
		}
		h.queue.mu.Lock()
		defer h.queue.mu.Unlock()
		for _, m := range h.queue.msgs[before:] {
			if strings.HasSuffix(strings.ToLower(m.Env.From), "@spam.test") {
				t.Fatalf("queued from a denied sender: %+v", m.Env)
			}
			for _, r := range m.Env.To {
				if _, dom := splitAddr(r); dom != "example.com" {
					t.Fatalf("open relay: queued for %q", r)
				}
			}
			if len(m.Env.To) > 3 {
				t.Fatalf("queued with %d recipients, limit 3", len(m.Env.To))
			}
			for _, a := range append([]string{m.Env.From}, m.Env.To...) {
				if err := address.Check(a); a != "" && err != nil {
					t.Fatalf("queued an address the relay cannot write: %q: %v", a, err)
				}
			}
			b, err := h.sp.Open(m.Env.ID)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(b)
			b.Close()
			if i := rawsinkBare(data); i >= 0 {
				t.Fatalf("queued a bare CR or LF at %d: %q", i, data)
			}
		}
	})
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	h := start(t, strings.Replace(fuzzConfig, "idle_timeout: 5s", "idle_timeout: 1s", 1))
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	b, _ := io.ReadAll(c) // greeting, then silence until the server gives up
	if !strings.Contains(string(b), "421 4.4.2") || time.Since(t0) < 900*time.Millisecond {
		t.Fatalf("after %v got %q, want 421 4.4.2 after ~1s", time.Since(t0), b)
	}
}

// A denied client network is refused at MAIL, unless an allow entry
// (sender or network) overrides it; allow never opens the relay.
func TestDenyNetwork(t *testing.T) {
	t.Parallel()
	h2 := start(t, strings.Replace(fuzzConfig, `lists: {deny: {senders: ["@spam.test"]}}`,
		`lists: {deny: {networks: ["127.0.0.0/8"]}, allow: {senders: ["boss@s.test"]}}`, 1))
	for _, tc := range []struct{ in, want string }{
		{"EHLO c\r\nMAIL FROM:<a@s.test>\r\nQUIT\r\n", "554 5.7.1 Client address rejected"},
		{"EHLO c\r\nMAIL FROM:<boss@s.test>\r\nRCPT TO:<b@example.com>\r\nQUIT\r\n", "250 2.0.0 I'll make sure"},
		{"EHLO c\r\nMAIL FROM:<boss@s.test>\r\nRCPT TO:<b@other.test>\r\nQUIT\r\n", "550 5.7.1 Relaying denied"},
	} {
		lines := dialog(t, h2.addr, []byte(tc.in))
		if !strings.Contains(strings.Join(lines, "\n"), tc.want) {
			t.Errorf("%q: replies %q lack %q", tc.in, lines, tc.want)
		}
	}
}
