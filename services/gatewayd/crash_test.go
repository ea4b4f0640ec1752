//go:build unix

package gatewayd_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TestNoLossUnderCrashes: concurrent senders while the daemon (a real
// subprocess) is SIGKILLed at random moments five times and restarted.
// Every message that got 250 must reach the downstream server; duplicates
// are allowed (a crash between delivery and the state update), loss is not.
func TestNoLossUnderCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test takes ~30 s; skipped with -short")
	}
	down := newSink(t, "")
	g := newGW(t, fmt.Sprintf(`
protected_domains: [{name: example.com, route: "%s", tls: none}]
relay: {retry_initial: 200ms, retry_max: 1s, workers: 8}
`, down.addr))
	g.start()

	var (
		mu       sync.Mutex
		accepted = map[string]bool{}
		stop     atomic.Bool
		attempts atomic.Int64
		wg       sync.WaitGroup
	)
	const senders = 16
	for w := 0; w < senders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *smtp.Client
			for n := 0; !stop.Load(); n++ {
				if c == nil {
					var err error
					if c, err = smtp.Dial(g.addr()); err != nil {
						time.Sleep(50 * time.Millisecond)
						continue
					}
				}
				id := fmt.Sprintf("<crash-%d-%d@sender.test>", w, n)
				attempts.Add(1)
				if err := sendOne(c, id); err != nil {
					if n < 2 {
						t.Logf("send: %v", err)
					}
					c.Close()
					c = nil
					continue
				}
				mu.Lock()
				accepted[id] = true
				mu.Unlock()
			}
			if c != nil {
				_ = c.Quit() // the connection is done either way
			}
		}()
	}

	for k := 0; k < 5; k++ {
		time.Sleep(time.Duration(300+rand.IntN(1200)) * time.Millisecond)
		g.kill()
		g.start()
	}
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	mu.Lock()
	n := len(accepted)
	mu.Unlock()
	if n == 0 {
		t.Fatal("no message was accepted")
	}
	delivered := func() (map[string]int, int) {
		got := map[string]int{}
		for _, m := range down.messages() {
			got[messageID(m.Data)]++
		}
		lost := 0
		for id := range accepted {
			if got[id] == 0 {
				lost++
			}
		}
		return got, lost
	}
	deadline := time.Now().Add(45 * time.Second)
	got, lost := delivered()
	for lost > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		got, lost = delivered()
	}
	dups := 0
	for _, c := range got {
		if c > 1 {
			dups += c - 1
		}
	}
	t.Logf("attempted %d, accepted (250) %d, delivered %d distinct, duplicates %d, lost %d",
		attempts.Load(), n, len(got), dups, lost)
	if lost > 0 {
		var missing []string
		for id := range accepted {
			if got[id] == 0 && len(missing) < 10 {
				missing = append(missing, id)
			}
		}
		t.Fatalf("%d acknowledged messages lost, e.g. %s\nimportant log:\n%s", lost, strings.Join(missing, " "), g.read("log/ksmg-important"))
	}
	if err := g.stop(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, g.stderrText())
	}
}

func sendOne(c *smtp.Client, id string) error {
	if err := c.Mail("sender@sender.test", nil); err != nil {
		return err
	}
	if err := c.Rcpt("rcpt@example.com", nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Message-ID: %s\r\nSubject: crash test\r\n\r\n%s\r\n", id, strings.Repeat("payload payload payload payload payload payload\r\n", 100))
	return w.Close()
}
