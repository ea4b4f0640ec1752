package relay

import (
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/services/config"
	"github.com/ksmg-appliance/ksmg/services/spool"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse("", []byte("relay: {retry_initial: 1m, retry_max: 1h}"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		attempts int
		max      time.Duration
	}{{1, time.Minute}, {2, 2 * time.Minute}, {3, 4 * time.Minute}, {6, 32 * time.Minute}, {7, time.Hour}, {50, time.Hour}} {
		seen := map[time.Duration]bool{}
		for i := 0; i < 200; i++ {
			d := backoff(cfg, tc.attempts)
			if d < tc.max/2 || d > tc.max {
				t.Fatalf("attempt %d: backoff %v outside [%v, %v]", tc.attempts, d, tc.max/2, tc.max)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("attempt %d: only %d distinct delays in 200 draws: no jitter", tc.attempts, len(seen))
		}
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		code int
		text string
	}{
		{&textproto.Error{Code: 550, Msg: "5.1.1 No such user"}, 550, "5.1.1 No such user"},
		{&textproto.Error{Code: 452, Msg: "mailbox full"}, 452, "4.0.0 mailbox full"},
		{&textproto.Error{Code: 554, Msg: "line1\nline2"}, 554, "5.0.0 line1 line2"},
		{errTLS, 451, "4.4.2 STARTTLS failed"},
	} {
		code, text := classify(tc.err)
		if code != tc.code || text != tc.text {
			t.Errorf("classify(%v) = %d %q, want %d %q", tc.err, code, text, tc.code, tc.text)
		}
	}
}

func TestBuildDSN(t *testing.T) {
	t.Parallel()
	m := &spool.Message{Env: spool.Envelope{ID: "00000000000000AB", From: "a@x.test", To: []string{"b@y.test", "c@y.test"}, Received: time.Unix(0, 0)}}
	m.State = spool.NewState(&m.Env)
	m.State.Rcpts[1] = spool.Rcpt{Addr: "c@y.test", Failed: true, Code: 550, Text: "5.1.1 No such user\r\nInjected: header"}
	out := string(buildDSN("gw.test", m, []int{1}, []byte("Subject: hi\r\n"), time.Unix(100, 0)))
	for _, want := range []string{
		"To: <a@x.test>\r\n", "report-type=delivery-status", "Final-Recipient: rfc822; c@y.test\r\n", "Status: 5.1.1\r\n",
		"Diagnostic-Code: smtp; 550 5.1.1 No such user  Injected: header\r\n", "Content-Type: text/rfc822-headers\r\n\r\nSubject: hi\r\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("DSN lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "b@y.test") {
		t.Error("DSN names the delivered recipient")
	}
	q := buildDSN("gw.test", &spool.Message{Env: spool.Envelope{ID: "00000000000000AC", From: "x y@x.test", To: []string{"john doe@y.test"}},
		State: spool.State{Rcpts: []spool.Rcpt{{Addr: "john doe@y.test", Failed: true, Code: 550, Text: "5.1.1 no"}}}}, []int{0}, nil, time.Unix(100, 0))
	for _, want := range []string{"To: <\"x y\"@x.test>\r\n", "Final-Recipient: rfc822; \"john doe\"@y.test\r\n"} {
		if !strings.Contains(string(q), want) {
			t.Errorf("DSN lacks %q (RFC 5321 quoting):\n%s", want, q)
		}
	}
	if strings.Contains(out, "\r\nInjected: header") {
		t.Error("a reply text could inject a header line")
	}
}

// crlfWriter gives the same output however the input is cut into writes
// (a CR at the end of one write, its LF at the start of the next).
func TestCRLFWriter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\nb\n", "a\r\nb\r\n"},
		{"a\rb\r", "a\r\nb\r\n"},
		{"\r.\r\n", "\r\n.\r\n"},
		{"\n.\n", "\r\n.\r\n"},
		{"\r\r\n\n", "\r\n\r\n\r\n"},
		{"", ""},
	} {
		for _, chunk := range []int{1, 2, 3, 1000} {
			var out strings.Builder
			w := &crlfWriter{w: &out}
			for i := 0; i < len(tc.in); i += chunk {
				if _, err := w.Write([]byte(tc.in[i:min(i+chunk, len(tc.in))])); err != nil {
					t.Fatal(err)
				}
			}
			w.flush()
			if out.String() != tc.want {
				t.Errorf("%q in writes of %d: %q, want %q", tc.in, chunk, out.String(), tc.want)
			}
		}
	}
}
