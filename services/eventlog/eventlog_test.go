package eventlog

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func opts(dir string, now *time.Time) Options {
	return Options{
		MessagesFile:    filepath.Join(dir, "log", "ksmg-messages"),
		ImportantFile:   filepath.Join(dir, "log", "ksmg-important"),
		TraceDir:        filepath.Join(dir, "log", "kaspersky"),
		EventsDir:       filepath.Join(dir, "events"),
		EventsRetention: 72 * time.Hour,
		EventsMaxSize:   1 << 20,
		Now:             func() time.Time { return *now },
	}
}

func TestEventLineAndModes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l, err := Open(opts(dir, &now))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	from := "a@x.test"
	l.Event(Event{QueueID: "0000000000000001", ClientIP: "192.0.2.7", Sender: &from, Recipients: []string{"b@y.test"}, Size: 1234, Action: "received", Result: "250 2.0.0 queued"})
	l.Important().Info("spool recovered", "corrupt", 0)
	b, _ := os.ReadFile(filepath.Join(dir, "log", "ksmg-messages"))
	var e map[string]any
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("messages line %q: %v", b, err)
	}
	for k, want := range map[string]any{"time": "2026-01-02T03:04:05Z", "queue_id": "0000000000000001", "client_ip": "192.0.2.7", "sender": "a@x.test", "size": 1234.0, "action": "received", "result": "250 2.0.0 queued"} {
		if e[k] != want {
			t.Errorf("%s = %v, want %v", k, e[k], want)
		}
	}
	ev, _ := os.ReadFile(filepath.Join(dir, "events", "events-2026010203-0000.jsonl"))
	if string(ev) != string(b) {
		t.Errorf("events file %q, want the same line as messages %q", ev, b)
	}
	imp, _ := os.ReadFile(filepath.Join(dir, "log", "ksmg-important"))
	if !strings.Contains(string(imp), `msg="spool recovered" corrupt=0`) {
		t.Errorf("important = %q", imp)
	}
	for _, p := range []string{"log/ksmg-messages", "log/ksmg-important", "events/events-2026010203-0000.jsonl"} {
		if fi, _ := os.Stat(filepath.Join(dir, p)); fi.Mode().Perm() != 0o640 {
			t.Errorf("%s mode %v, want 0640", p, fi.Mode().Perm())
		}
	}
	for _, p := range []string{"log", "events"} {
		if fi, _ := os.Stat(filepath.Join(dir, p)); fi.Mode().Perm() != 0o750 {
			t.Errorf("%s mode %v, want 0750", p, fi.Mode().Perm())
		}
	}
	// Trace is off: nothing is created, bodies go nowhere.
	if _, err := l.TraceWriter().Write([]byte("DATA secret body\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "log", "kaspersky")); !os.IsNotExist(err) {
		t.Errorf("trace dir exists with trace off: %v", err)
	}
	if err := l.SetTrace(true); err != nil {
		t.Fatal(err)
	}
	if _, err := l.TraceWriter().Write([]byte("DATA traced body\r\n")); err != nil {
		t.Fatal(err)
	}
	tr, _ := os.ReadFile(filepath.Join(dir, "log", "kaspersky", traceName))
	if string(tr) != "DATA traced body\r\n" {
		t.Errorf("trace = %q", tr)
	}
}

// Reopen after a logrotate-style rename continues in a new file at the
// configured path, and nothing is lost.
func TestReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Now()
	l, err := Open(opts(dir, &now))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := filepath.Join(dir, "log", "ksmg-messages")
	l.Event(Event{QueueID: "1", Action: "received", Result: "250"})
	if err := os.Rename(p, p+".1"); err != nil {
		t.Fatal(err)
	}
	l.Event(Event{QueueID: "2", Action: "received", Result: "250"}) // still goes to the renamed file
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Event(Event{QueueID: "3", Action: "received", Result: "250"})
	old, _ := os.ReadFile(p + ".1")
	cur, _ := os.ReadFile(p)
	if strings.Count(string(old), "\n") != 2 || !strings.Contains(string(cur), `"queue_id":"3"`) || strings.Count(string(cur), "\n") != 1 {
		t.Fatalf("rotated %q\ncurrent %q", old, cur)
	}
}

func TestRetentionAgeAndSize(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	o := opts(dir, &now)
	o.EventsMaxSize = 20_000
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// One event per hour over 5 days.
	for h := 0; h < 5*24; h++ {
		now = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC).Add(time.Duration(h) * time.Hour)
		l.Event(Event{QueueID: fmt.Sprint(h), Action: "delivered", Result: "250"})
	}
	files := list(t, o.EventsDir)
	oldest := now.Add(-72*time.Hour - time.Hour)
	for _, f := range files {
		h, _ := time.Parse("2006010215", f[len("events-"):len("events-2006010215")])
		if h.Before(oldest) {
			t.Errorf("%s is older than the 72h retention (now %s)", f, now)
		}
	}
	if len(files) < 70 || len(files) > 74 {
		t.Errorf("%d hourly files kept, want ~72", len(files))
	}
	// Now by size: a burst far above the cap within one hour.
	big := strings.Repeat("r", 500)
	for i := 0; i < 200; i++ {
		l.Event(Event{QueueID: fmt.Sprint(i), Action: "rejected", Result: big})
	}
	var total int64
	for _, f := range list(t, o.EventsDir) {
		fi, _ := os.Stat(filepath.Join(o.EventsDir, f))
		total += fi.Size()
	}
	if total > o.EventsMaxSize {
		t.Fatalf("events dir holds %d bytes, cap %d", total, o.EventsMaxSize)
	}
	// The newest events are the ones kept.
	last := list(t, o.EventsDir)
	f, _ := os.Open(filepath.Join(o.EventsDir, last[len(last)-1]))
	defer f.Close()
	var lastLine string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		lastLine = sc.Text()
	}
	if !strings.Contains(lastLine, `"queue_id":"199"`) {
		t.Errorf("newest event missing; last line %.80s", lastLine)
	}
}

func list(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
