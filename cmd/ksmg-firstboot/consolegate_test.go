package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// recorder notes, at each wait, what had reached the console by then.
type recorder struct {
	out    bytes.Buffer
	waited []string
}

func TestConsoleGate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string
		ready  bool // the wizard asks for the console first
		waited []string
	}{
		{"ASCII only", []string{"Applying settings...\n", "\x1b[2J  Host name: gw1\n"}, false, nil},
		{"Czech waits before it is written", []string{"ok\n", "Nastavení se používá...\n", "více\n"}, false, []string{"ok\n"}},
		{"Russian in the first write", []string{"Применение настроек...\n"}, false, []string{""}},
		{"wizard", []string{"\x1b[H", "│ Language │"}, true, []string{""}},
		{"nothing written", nil, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r recorder
			g := &consoleGate{w: &r.out, wait: func() { r.waited = append(r.waited, r.out.String()) }}
			if tc.ready {
				g.ready()
			}
			for _, w := range tc.writes {
				n, err := g.Write([]byte(w))
				if err != nil || n != len(w) {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if got, want := r.out.String(), strings.Join(tc.writes, ""); got != want {
				t.Errorf("console got %q, want %q", got, want)
			}
			if strings.Join(r.waited, "|") != strings.Join(tc.waited, "|") || len(r.waited) != len(tc.waited) {
				t.Errorf("waited %d times with %q on the console, want %d with %q", len(r.waited), r.waited, len(tc.waited), tc.waited)
			}
		})
	}
}

func TestVirtualConsolePath(t *testing.T) {
	for path, want := range map[string]bool{
		"/dev/tty1": true, "/dev/tty63": true,
		"/dev/ttyS0": false, "/dev/tty": false, "/dev/hvc0": false, "/dev/pts/0": false, "/dev/ttyAMA0": false, "": false,
	} {
		if got := virtualConsolePath.MatchString(path); got != want {
			t.Errorf("%q: virtual console %v, want %v", path, got, want)
		}
	}
}

// What is not a virtual console (a plain file here; a serial port is
// matched by TestVirtualConsolePath), or no units: no gate.
func TestGateConsoleOnlyOnVirtualConsoles(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "notatty")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	if w, g := gateConsole(t.Context(), newLogger(true), []string{"console-setup.service"}, f, &out); g != nil || w != &out {
		t.Errorf("a plain file got a console gate")
	}
	if w, g := gateConsole(t.Context(), newLogger(true), nil, f, &out); g != nil || w != &out {
		t.Errorf("no units, yet a console gate")
	}
	var none *consoleGate
	none.ready() // no virtual console: nothing to wait for, no panic
}
