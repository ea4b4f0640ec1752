// Package eventlog writes the gateway's logs as the data contract requires:
//
//   - one JSON line per message-processing event to logging.messages_file
//     (/var/log/ksmg-messages, rotated by logrotate) and to the event log in
//     logging.events_dir, whose files (one per hour, split when large) the
//     daemon itself prunes by age (events_retention) and total size
//     (events_max_size), oldest first;
//   - important application events to logging.important_file;
//   - traces (including the SMTP dialogue, which carries message bodies) to
//     logging.trace_dir only while logging.trace is on, capped per stream.
//
// Every file is reopened by Reopen (SIGUSR1), created 0640 in 0750 dirs.
// Message bodies are never written outside the trace.
//
// lumberjack-style rotating writers were considered; they rotate by size only
// and rename files under logrotate's feet, so the small pieces are here.
package eventlog

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Event is one message-processing event.
type Event struct {
	Time       time.Time `json:"time"`
	QueueID    string    `json:"queue_id,omitempty"`
	ClientIP   string    `json:"client_ip,omitempty"`
	Sender     *string   `json:"sender,omitempty"` // nil = not known yet; "" = <>
	Recipients []string  `json:"recipients,omitempty"`
	Size       int64     `json:"size,omitempty"`
	Action     string    `json:"action"` // received, rejected, delivered, deferred, bounced, expired, dsn, backup
	Result     string    `json:"result"` // reply code and text, or error
	Route      string    `json:"route,omitempty"`
}

// Recorder receives message-processing events; *Log is one, tests keep
// them in memory.
type Recorder interface {
	Event(e Event)
}

// Options configure a Log.
type Options struct {
	MessagesFile    string
	ImportantFile   string
	TraceDir        string
	Trace           bool
	EventsDir       string
	EventsRetention time.Duration
	EventsMaxSize   int64
	TraceMaxSize    int64        // per trace stream; 0 = 150 MB
	Stderr          slog.Handler // the daemon's journal log; important events go there too
	Now             func() time.Time
}

// Log is the set of gateway logs.
type Log struct {
	mu        sync.Mutex
	opt       Options
	messages  *os.File
	important *os.File
	trace     *os.File
	traceSize int64
	traceOn   atomic.Bool

	complained time.Time // last complainLocked, to say it once a minute

	events     *os.File
	eventsName string
	eventsSize int64 // bytes in the current events file
	eventsAll  int64 // bytes in events_dir, as of the last scan plus writes
	seq        int
}

const traceName = "ksmg-gatewayd.trace"

// Open opens (creating) every log file.
func Open(opt Options) (*Log, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.TraceMaxSize <= 0 {
		opt.TraceMaxSize = 150 << 20
	}
	l := &Log{opt: opt}
	l.traceOn.Store(opt.Trace)
	if err := os.MkdirAll(opt.EventsDir, 0o750); err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.reopenLocked(); err != nil {
		return nil, err
	}
	l.pruneLocked()
	return l, nil
}

func openAppend(p string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	return f, nil
}

func (l *Log) reopenLocked() error {
	m, err := openAppend(l.opt.MessagesFile)
	if err != nil {
		return err
	}
	imp, err := openAppend(l.opt.ImportantFile)
	if err != nil {
		m.Close()
		return err
	}
	for _, f := range []*os.File{l.messages, l.important, l.trace} {
		if f != nil {
			f.Close()
		}
	}
	l.messages, l.important, l.trace = m, imp, nil
	if l.traceOn.Load() {
		if err := l.openTraceLocked(); err != nil {
			return err
		}
	}
	return nil
}

func (l *Log) openTraceLocked() error {
	f, err := openAppend(filepath.Join(l.opt.TraceDir, traceName))
	if err != nil {
		return err
	}
	fi, _ := f.Stat()
	l.trace, l.traceSize = f, fi.Size()
	return nil
}

// Reopen reopens the text logs (after logrotate moved them) and the trace.
func (l *Log) Reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reopenLocked()
}

// SetTrace turns tracing on or off (config reload).
func (l *Log) SetTrace(on bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.traceOn.Swap(on) == on {
		return nil
	}
	if !on {
		if l.trace != nil {
			l.trace.Close()
			l.trace = nil
		}
		return nil
	}
	return l.openTraceLocked()
}

// SetRetention changes the event-log caps (config reload).
func (l *Log) SetRetention(age time.Duration, max int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.opt.EventsRetention, l.opt.EventsMaxSize = age, max
	l.pruneLocked()
}

// Close closes every file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range []*os.File{l.messages, l.important, l.trace, l.events} {
		if f != nil {
			f.Close()
		}
	}
	l.messages, l.important, l.trace, l.events = nil, nil, nil, nil
	return nil
}

// complainLocked reports a failing log file on the journal, at most once a
// minute (the next lines would fail the same way).
func (l *Log) complainLocked(msg, file string, err error) {
	now := time.Now()
	if l.opt.Stderr == nil || now.Sub(l.complained) < time.Minute {
		return
	}
	l.complained = now
	slog.New(l.opt.Stderr).Error(msg, "file", file, "err", err)
}

// Event records one message-processing event.
func (l *Log) Event(e Event) {
	if e.Time.IsZero() {
		e.Time = l.opt.Now()
	}
	e.Time = e.Time.UTC()
	b, err := json.Marshal(e)
	if err != nil {
		return // plain data; cannot fail
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.messages != nil {
		if _, err := l.messages.Write(b); err != nil {
			l.complainLocked("cannot write the message log", l.opt.MessagesFile, err)
		}
	}
	if err := l.rollLocked(e.Time, int64(len(b))); err == nil {
		n, _ := l.events.Write(b)
		l.eventsSize += int64(n)
		l.eventsAll += int64(n)
	}
	if l.eventsAll > l.opt.EventsMaxSize {
		l.pruneLocked()
	}
}

// rollLocked makes l.events the file for t: one per hour, split into parts
// of at most a tenth of the cap so that pruning by size stays fine-grained.
func (l *Log) rollLocked(t time.Time, n int64) error {
	hour := t.Format("2006010215")
	part := l.opt.EventsMaxSize / 10
	if l.events != nil && strings.HasPrefix(l.eventsName, "events-"+hour) && l.eventsSize+n <= part {
		return nil
	}
	if l.events != nil && !strings.HasPrefix(l.eventsName, "events-"+hour) {
		l.seq = 0
	}
	if l.events != nil {
		l.events.Close()
		l.events = nil
		if strings.HasPrefix(l.eventsName, "events-"+hour) {
			l.seq++
		}
	}
	for {
		name := fmt.Sprintf("events-%s-%04d.jsonl", hour, l.seq)
		p := filepath.Join(l.opt.EventsDir, name)
		fi, err := os.Stat(p)
		if err == nil && fi.Size()+n > part && fi.Size() > 0 {
			l.seq++ // a part written before a restart is full
			continue
		}
		f, err := openAppend(p)
		if err != nil {
			return err
		}
		l.events, l.eventsName, l.eventsSize = f, name, 0
		if fi != nil {
			l.eventsSize = fi.Size()
		}
		break
	}
	l.pruneLocked()
	return nil
}

// Prune applies retention now (also called from a periodic maintenance tick).
func (l *Log) Prune() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pruneLocked()
}

// pruneLocked deletes event files older than the retention and then the
// oldest ones while the total is above the cap. The file being written is
// kept; it is at most a tenth of the cap.
func (l *Log) pruneLocked() {
	ents, err := os.ReadDir(l.opt.EventsDir)
	if err != nil {
		return
	}
	type file struct {
		name string
		size int64
		hour time.Time
	}
	var files []file
	var total int64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, "events-") || !strings.HasSuffix(name, ".jsonl") || len(name) < len("events-2006010215") {
			continue
		}
		hour, err := time.Parse("2006010215", name[len("events-"):len("events-2006010215")])
		if err != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		files = append(files, file{name, fi.Size(), hour})
		total += fi.Size()
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	cutoff := l.opt.Now().Add(-l.opt.EventsRetention)
	for _, f := range files {
		if f.name == l.eventsName {
			continue
		}
		// The file holds events up to the end of its hour.
		old := f.hour.Add(time.Hour).Before(cutoff)
		if old || total > l.opt.EventsMaxSize {
			if os.Remove(filepath.Join(l.opt.EventsDir, f.name)) == nil {
				total -= f.size
			}
		}
	}
	l.eventsAll = total
}

// Important returns a logger for important application events: they go to
// logging.important_file and to the daemon's stderr handler.
func (l *Log) Important() *slog.Logger {
	h := slog.NewTextHandler(writerFunc(l.writeImportant), &slog.HandlerOptions{Level: slog.LevelInfo})
	if l.opt.Stderr == nil {
		return slog.New(h)
	}
	return slog.New(fanout{h, l.opt.Stderr})
}

func (l *Log) writeImportant(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.important == nil {
		return len(b), nil
	}
	return l.important.Write(b)
}

// TraceWriter receives raw trace output (e.g. the SMTP dialogue); it
// discards everything while tracing is off.
func (l *Log) TraceWriter() io.Writer { return writerFunc(l.writeTrace) }

// Tracing reports whether tracing is on.
func (l *Log) Tracing() bool { return l.traceOn.Load() }

func (l *Log) writeTrace(b []byte) (int, error) {
	if !l.traceOn.Load() {
		return len(b), nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.trace == nil {
		return len(b), nil
	}
	if l.traceSize+int64(len(b)) > l.opt.TraceMaxSize/2 {
		// One previous generation is kept, so each half gets half the cap
		// and the stream stays within it; the oldest half is dropped.
		p := filepath.Join(l.opt.TraceDir, traceName)
		l.trace.Close()
		if err := os.Rename(p, p+".1"); err != nil {
			l.complainLocked("cannot rotate the trace", p, err)
		}
		if err := l.openTraceLocked(); err != nil {
			return 0, err
		}
	}
	n, err := l.trace.Write(b)
	l.traceSize += int64(n)
	return n, err
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(b []byte) (int, error) { return w(b) }

type fanout []slog.Handler

func (f fanout) Enabled(ctx context.Context, lv slog.Level) bool {
	for _, h := range f {
		if h.Enabled(ctx, lv) {
			return true
		}
	}
	return false
}

func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	var first error
	for _, h := range f {
		if h.Enabled(ctx, r.Level) {
			if err := h.Handle(ctx, r.Clone()); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

func (f fanout) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(as)
	}
	return out
}

func (f fanout) WithGroup(name string) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(name)
	}
	return out
}
