package boottest

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// notifyWriter tells when what was written contains want.
type notifyWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func (n *notifyWriter) Write(p []byte) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.buf.Write(p)
	if strings.Contains(n.buf.String(), n.want) {
		n.once.Do(func() { close(n.seen) })
	}
	return len(p), nil
}

// TestCopySerialPassesPromptWithoutNewline: a wizard's prompt ends without a
// newline and then waits; the serial writer must get it while the guest is
// still waiting, not when the next line comes.
func TestCopySerialPassesPromptWithoutNewline(t *testing.T) {
	r, w := io.Pipe()
	out := &notifyWriter{want: "Enter a number: ", seen: make(chan struct{})}
	var lines []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		copySerial(r, out, func(l string) { lines = append(lines, l) })
	}()
	go func() { _, _ = io.WriteString(w, "[  OK  ] Started x.\r\nLanguage\r\nEnter a number: ") }()
	select {
	case <-out.seen:
	case <-time.After(10 * time.Second):
		t.Fatalf("the prompt did not reach the serial writer while the guest waited; it has %q", out.buf.String())
	}
	_, _ = io.WriteString(w, "\r\nlast")
	_ = w.Close()
	<-done
	if got, want := out.buf.String(), "[  OK  ] Started x.\nLanguage\nEnter a number: \nlast"; got != want {
		t.Errorf("serial writer got %q, want %q (carriage returns dropped, nothing else)", got, want)
	}
	if got, want := strings.Join(lines, "|"), "[  OK  ] Started x.|Language|Enter a number: |last"; got != want {
		t.Errorf("lines %q, want %q", got, want)
	}
}

// TestCopySerialNilWriter: lines are still seen without a writer.
func TestCopySerialNilWriter(t *testing.T) {
	var lines []string
	copySerial(strings.NewReader("a\r\nb\n"), nil, func(l string) { lines = append(lines, l) })
	if got := strings.Join(lines, "|"); got != "a|b" {
		t.Errorf("lines %q, want a|b", got)
	}
}
