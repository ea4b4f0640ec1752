//go:build unix

package gatewayd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/services/config"
)

// TestReloadRightAfterReady runs the daemon in this process with a Notify
// hook that sends SIGHUP the moment READY=1 is sent, as systemd may do with
// a reload queued during start-up. The handlers must already be in place
// (else the signal's default action ends the process: this test binary),
// and the reload notification must follow sd_notify(3): "RELOADING=1" and
// one "MONOTONIC_USEC=<µs>" field.
func TestReloadRightAfterReady(t *testing.T) {
	notes := make(chan string, 16)
	ready := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := runInProcess(ctx, t, []string{"127.0.0.1:0"}, func(state string) {
		notes <- state
		if state == "READY=1" {
			if ready++; ready == 1 {
				if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
					t.Error(err)
				}
			}
		}
	})
	want := []*regexp.Regexp{regexp.MustCompile(`^READY=1$`), regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=[0-9]+\n?$`), regexp.MustCompile(`^READY=1$`)}
	for _, re := range want {
		select {
		case n := <-notes:
			if !re.MatchString(n) {
				t.Fatalf("notification %q, want %v", n, re)
			}
		case err := <-done:
			t.Fatalf("Run returned %v before %v", err, re)
		case <-time.After(30 * time.Second):
			t.Fatalf("no notification matching %v", re)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after the context ended")
	}
	if n := <-notes; n != "STOPPING=1" {
		t.Errorf("last notification %q, want STOPPING=1", n)
	}
}

// TestStopRightAfterReady: a stop that comes the moment READY=1 is sent
// (systemd stopping a unit it has just started) may come before the accept
// goroutines have run; the drain must still end at once, not wait for
// systemd's SIGKILL. Repeated, since the goroutines' start is the scheduler's.
func TestStopRightAfterReady(t *testing.T) {
	for i := range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		done := runInProcess(ctx, t, []string{"127.0.0.1:0", "127.0.0.1:0"}, func(state string) {
			if state == "READY=1" {
				cancel()
			}
		})
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d: Run = %v", i, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("run %d: Run did not return within 30 s of a stop right after READY=1", i)
		}
		cancel()
	}
}

// runInProcess runs the daemon in this test process, listening on listen,
// with notify as its sd_notify hook; Run's result arrives on the channel.
func runInProcess(ctx context.Context, t *testing.T, listen []string, notify func(state string)) <-chan error {
	t.Helper()
	dir := t.TempDir()
	quoted := make([]string, len(listen))
	for i, a := range listen {
		quoted[i] = strconv.Quote(a)
	}
	yaml := fmt.Sprintf(`hostname: gw.test
listen: [%s]
spool_dir: %[2]s/queue
tls: {cert_file: %[2]s/tls/gw.crt, key_file: %[2]s/tls/gw.key, generate: true}
backup: {dir: %[2]s/backup, max_size: 10MB}
logging: {messages_file: %[2]s/log/m, important_file: %[2]s/log/i, trace_dir: %[2]s/log/t, events_dir: %[2]s/events}
`, strings.Join(quoted, ", "), dir)
	path := filepath.Join(dir, "gw.yaml") // a reload reads it again
	if err := os.WriteFile(path, []byte(yaml), 0o640); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(path, []byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{ConfigPath: path, Config: cfg, Stderr: slog.New(slog.NewTextHandler(io.Discard, nil)),
			DrainTimeout: 2 * time.Second, Notify: notify})
	}()
	return done
}
