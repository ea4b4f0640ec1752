package smtpd

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// Connection resets, port probes and failed TLS handshakes are the
// internet's everyday noise: they go to the journal at debug level, never
// to the important-events log an administrator reads.
func TestNoiseNotImportant(t *testing.T) {
	t.Parallel()
	h := start(t, fuzzConfig)
	for i := 0; i < 3; i++ {
		// A probe: connect, close.
		if c, err := net.Dial("tcp", h.addr); err == nil {
			c.Close()
		}
		// A reset in the middle of a command.
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte("EHLO c\r\n"))
		br := bufio.NewReader(c)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(l, "250 ") {
				break // the server now waits for a command
			}
		}
		c.Write([]byte("MAIL FROM:<a@s.te"))
		time.Sleep(20 * time.Millisecond)
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	time.Sleep(300 * time.Millisecond)
	if imp := h.imp.String(); imp != "" {
		t.Errorf("the important log records client noise:\n%s", imp)
	}
	if d := h.diag.String(); !strings.Contains(d, "level=DEBUG") || !strings.Contains(d, "connection reset") {
		t.Errorf("journal lacks the resets at debug level:\n%s", d)
	}
}
