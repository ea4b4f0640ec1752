package main

import (
	"bytes"
	"io"
	"os"
	"sync"

	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
)

// terminalUTF8 decides whether the line prompts may print UTF-8. A serial
// console's far end may be anything from a modern terminal to a legacy
// one with an 8-bit character set, and the locale of this side says
// nothing about it, so "auto" asks the terminal itself (probeUTF8); one
// that does not answer, or TERM=dumb, gets transliterated ASCII, which
// every terminal shows.
func terminalUTF8(mode string, in *os.File, out io.Writer) bool {
	switch mode {
	case "utf-8", "utf8", "UTF-8":
		return true
	case "ascii":
		return false
	}
	if t := os.Getenv("TERM"); t == "" || t == "dumb" {
		return false
	}
	utf8, known := probeUTF8(in, out)
	return known && utf8
}

// heldOutput is a line-prompt console's writer while the terminal is asked
// about UTF-8 in the background. The question costs up to a second when
// nothing answers (the serial port of a VM nobody watches), and unattended
// setup must not wait for it on the way to the gateway's start. Writes are
// held until the answer and then go out as UTF-8 or transliterated ASCII.
// Wait must return before anything else reads the terminal (the wizard):
// the question's answer is read from it.
type heldOutput struct {
	mu   sync.Mutex
	w    io.Writer // nil until decided
	held bytes.Buffer
	done chan struct{}
}

// holdOutput starts utf8 (which may ask the terminal) and returns the
// writer that holds out's output until utf8 returned.
func holdOutput(out io.Writer, utf8 func() bool) *heldOutput {
	h := &heldOutput{done: make(chan struct{})}
	go func() {
		defer close(h.done)
		w := out
		if !utf8() {
			w = i18n.ASCIIWriter(out)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		h.w = w
		// A console write that fails has nobody to be reported to; the
		// journal has every message already.
		_, _ = w.Write(h.held.Bytes())
		h.held.Reset()
	}()
	return h
}

func (h *heldOutput) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.w == nil {
		return h.held.Write(p)
	}
	return h.w.Write(p)
}

// Wait returns once the terminal's answer is in and the held output written.
func (h *heldOutput) Wait() { <-h.done }
