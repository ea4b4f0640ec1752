package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/ksmg-appliance/ksmg/firstboot/apply"
	"golang.org/x/term"
)

// consoleGate holds what first boot writes to a virtual console until the
// console is set up (--console-units: console-setup's font, which has the
// wizard's Czech and Russian, and keyboard-setup's keymap), but only when it
// has to: text in ASCII, which the kernel's own font draws, goes straight
// through. An unattended first boot in English so no longer waits for the
// console's set-up, which took 8-14 s of wall time at the default CPU
// weight under TCG and was the last unit first boot waited for in 11 of 11
// timeline boots (images/HARDENING.md, "First boot"). The wizard waits for
// it before it starts (ready): it reads keys in the admin's layout.
type consoleGate struct {
	w    io.Writer
	once sync.Once
	wait func()
}

func (g *consoleGate) Write(p []byte) (int, error) {
	for _, b := range p {
		if b >= 0x80 {
			g.ready()
			break
		}
	}
	return g.w.Write(p)
}

// ready waits, once, for the console's set-up; a nil gate (no virtual
// console) has nothing to wait for.
func (g *consoleGate) ready() {
	if g != nil {
		g.once.Do(g.wait)
	}
}

// virtualConsolePath is a Linux virtual console (not a serial port, whose
// terminal has its own font and keyboard).
var virtualConsolePath = regexp.MustCompile(`^/dev/tty[0-9]+$`)

func virtualConsole(in *os.File) bool {
	return virtualConsolePath.MatchString(terminalPath(in))
}

// terminalPath is the device in is open on ("" if it cannot be told).
func terminalPath(in *os.File) string {
	tty, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", in.Fd()))
	return tty
}

// gateConsole returns out behind a consoleGate when in is a virtual
// console (a terminal) and units set it up, else out itself and nil.
func gateConsole(ctx context.Context, log *slog.Logger, units []string, in *os.File, out io.Writer) (io.Writer, *consoleGate) {
	if len(units) == 0 || !virtualConsole(in) || !term.IsTerminal(int(in.Fd())) {
		return out, nil
	}
	g := &consoleGate{w: out, wait: func() {
		start := time.Now()
		// Setup goes on without the font: a console that shows some
		// characters wrongly is better than an appliance nobody set up.
		if err := apply.WaitUnits(ctx, units...); err != nil {
			log.Warn("console set-up failed", "units", units, "err", err)
			return
		}
		log.Info("console set up", "units", units, "waited", time.Since(start).Round(time.Millisecond).String())
	}}
	return g, g
}
