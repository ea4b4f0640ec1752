package smtptest

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// Client is a raw SMTP client; its connection and reader are open to
// tests that go below the reply level (TLS, resets).
type Client struct {
	T  testing.TB
	C  net.Conn
	BR *bufio.Reader
}

// Dial connects and reads the greeting; the connection closes with the test.
func Dial(t testing.TB, addr string) *Client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(60 * time.Second)); err != nil {
		t.Fatal(err)
	}
	cl := &Client{T: t, C: c, BR: bufio.NewReader(c)}
	cl.Expect("220 ")
	return cl
}

// Send writes raw bytes.
func (cl *Client) Send(s string) {
	cl.T.Helper()
	if _, err := io.WriteString(cl.C, s); err != nil {
		cl.T.Fatalf("send %q: %v", s, err)
	}
}

// Expect reads one reply (all its lines) and checks its last line's prefix.
func (cl *Client) Expect(prefix string) string {
	cl.T.Helper()
	return ExpectFrom(cl.T, cl.BR, prefix)
}

// ExpectFrom is Expect on any reader (a TLS connection's, say).
func ExpectFrom(t testing.TB, br *bufio.Reader, prefix string) string {
	t.Helper()
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("waiting for %q: %v (got %q)", prefix, err, l)
		}
		if len(l) > 3 && l[3] == '-' {
			continue
		}
		if !strings.HasPrefix(l, prefix) {
			t.Fatalf("reply %q, want %q", l, prefix)
		}
		return l
	}
}

// Cmd sends a command line and expects a reply.
func (cl *Client) Cmd(line, prefix string) string {
	cl.T.Helper()
	cl.Send(line + "\r\n")
	return cl.Expect(prefix)
}

// Rest reads until the server closes the connection and returns what came.
func (cl *Client) Rest() string {
	cl.T.Helper()
	b, err := io.ReadAll(cl.BR)
	if err != nil {
		cl.T.Fatalf("connection not closed cleanly: %v (got %q)", err, b)
	}
	return string(b)
}

// Envelope sends EHLO, MAIL FROM and RCPT TO and expects 250 to each.
func (cl *Client) Envelope(from, to string) {
	cl.T.Helper()
	cl.Cmd("EHLO c", "250 ")
	cl.Cmd("MAIL FROM:<"+from+">", "250 ")
	cl.Cmd("RCPT TO:<"+to+">", "250 ")
}
