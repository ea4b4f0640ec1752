//go:build unix

package gatewayd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTornEntryReported: a torn queue file found at start is set aside in
// queue/corrupt and reported in the important log; the daemon still starts.
func TestTornEntryReported(t *testing.T) {
	g := newGW(t, "")
	msgDir := filepath.Join(g.dir, "queue", "msg")
	if err := os.MkdirAll(msgDir, 0o750); err != nil {
		t.Fatal(err)
	}
	torn := "00000000000000F1"
	if err := os.WriteFile(filepath.Join(msgDir, torn), []byte("KSMGQ001\x00\x00\x00\x10{\"id\":\"00000"), 0o640); err != nil {
		t.Fatal(err)
	}
	g.start()
	defer g.shutdown()
	imp := g.read("log/ksmg-important")
	if !strings.Contains(imp, "torn queue entry set aside") || !strings.Contains(imp, torn) {
		t.Fatalf("important log does not report the torn entry:\n%s", imp)
	}
	ents, _ := os.ReadDir(filepath.Join(g.dir, "queue", "corrupt"))
	if len(ents) != 1 || !strings.HasPrefix(ents[0].Name(), torn) {
		t.Fatalf("corrupt/ holds %v", ents)
	}
	if _, err := os.Stat(filepath.Join(msgDir, torn)); !os.IsNotExist(err) {
		t.Fatal("torn entry still in the queue")
	}
}
