package main

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// deployProgress shows what deploys are doing: on a terminal one line per
// active node, redrawn in place (uploads by percent, waits by elapsed
// time); otherwise log lines (uploads every 25%, waits every 30 seconds),
// in the one log format of the run.
type deployProgress struct {
	w   io.Writer
	log *slog.Logger // nil on a terminal

	mu       sync.Mutex
	lines    map[string]string
	order    []string
	drawn    int
	lastPct  map[string]int
	lastWait map[string]time.Time
}

func (a *app) newProgress(w io.Writer) *deployProgress {
	p := &deployProgress{w: w, lines: map[string]string{}, lastPct: map[string]int{}, lastWait: map[string]time.Time{}}
	if !a.interactive() {
		p.log = a.logger()
	}
	return p
}

// progress reports bytes of an upload or copy of node.
func (p *deployProgress) progress(node, stage string, done, total int64) {
	if total <= 0 {
		return
	}
	pct := int(done * 100 / total)
	p.mu.Lock()
	defer p.mu.Unlock()
	step := 5
	if p.log != nil {
		step = 25
	}
	last, seen := p.lastPct[node+stage]
	if seen && pct/step == last/step && pct != 100 || seen && pct == last {
		return
	}
	p.lastPct[node+stage] = pct
	if p.log != nil {
		p.log.Info(stage, "node", node, "percent", pct, "bytes", done, "total", total)
		return
	}
	p.set(node, fmt.Sprintf("%s: %s %3d%% (%d of %d MiB)", node, stage, pct, done>>20, total>>20))
}

// waiting reports what node waits for and for how long.
func (p *deployProgress) waiting(node, what string, elapsed time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.log != nil {
		if time.Since(p.lastWait[node]) < 30*time.Second {
			return
		}
		p.lastWait[node] = time.Now()
		p.log.Info("waiting", "node", node, "for", what, "elapsed", elapsed.Round(time.Second).String())
		return
	}
	p.set(node, fmt.Sprintf("%s: waiting for %s (%s)", node, what, elapsed.Round(time.Second)))
}

// done drops node's line.
func (p *deployProgress) done(node string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.lines[node]; !ok {
		return
	}
	delete(p.lines, node)
	p.order = slices.DeleteFunc(p.order, func(s string) bool { return s == node })
	p.draw()
}

// set replaces node's line and redraws (p.mu held).
func (p *deployProgress) set(node, line string) {
	if _, ok := p.lines[node]; !ok {
		p.order = append(p.order, node)
	}
	p.lines[node] = line
	p.draw()
}

// draw redraws the lines in place: up over what was drawn, each line
// cleared and written again.
func (p *deployProgress) draw() {
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
	}
	for _, n := range p.order {
		b.WriteString("\r\x1b[K" + p.lines[n] + "\n")
	}
	for i := len(p.order); i < p.drawn; i++ {
		b.WriteString("\r\x1b[K\n")
	}
	if extra := p.drawn - len(p.order); extra > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", extra)
	}
	p.drawn = len(p.order)
	_, _ = io.WriteString(p.w, b.String())
}
