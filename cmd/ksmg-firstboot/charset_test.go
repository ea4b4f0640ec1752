package main

import (
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/internal/testsync"
)

// TestHeldOutput: writes made while the terminal is being asked return at
// once (unattended setup goes on) and reach the terminal only after the
// answer, in the character set it allows; later writes go straight out.
func TestHeldOutput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		utf8 bool
		want string
	}{
		{true, "Použití...\nHotovo\n"},
		{false, "Pouziti...\nHotovo\n"},
	} {
		var out testsync.Buffer
		answer := make(chan bool)
		h := holdOutput(&out, func() bool { return <-answer })
		wrote := make(chan struct{})
		go func() {
			_, _ = h.Write([]byte("Použití...\n"))
			close(wrote)
		}()
		select {
		case <-wrote:
		case <-time.After(10 * time.Second):
			t.Fatal("a write waited for the terminal's answer")
		}
		if got := out.String(); got != "" {
			t.Fatalf("written before the terminal answered: %q", got)
		}
		answer <- tc.utf8
		h.Wait()
		if _, err := h.Write([]byte("Hotovo\n")); err != nil {
			t.Fatal(err)
		}
		if got := out.String(); got != tc.want {
			t.Errorf("utf8=%v: terminal got %q, want %q", tc.utf8, got, tc.want)
		}
	}
}
