package smtpd

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/services/internal/smtptest"
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
		c := smtptest.Dial(t, h.addr)
		c.Cmd("EHLO c", "250 ") // the server now waits for a command
		c.Send("MAIL FROM:<a@s.te")
		time.Sleep(20 * time.Millisecond)
		if err := c.C.(*net.TCPConn).SetLinger(0); err != nil {
			t.Fatal(err)
		}
		c.C.Close()
	}
	time.Sleep(300 * time.Millisecond)
	if imp := h.imp.String(); imp != "" {
		t.Errorf("the important log records client noise:\n%s", imp)
	}
	if d := h.diag.String(); !strings.Contains(d, "level=DEBUG") || !strings.Contains(d, "connection reset") {
		t.Errorf("journal lacks the resets at debug level:\n%s", d)
	}
}
