// Package relay forwards queued mail to the next hop: the route of the
// recipient's protected domain or relay.default_route (also the smarthost
// for mail from trusted networks to other domains). It keeps per-recipient
// state in the spool, retries temporary failures with exponential backoff
// and jitter until relay.max_queue_lifetime, and sends a delivery status
// notification (RFC 3464) to the sender for recipients that failed
// permanently or expired — never to the null sender and never for a DSN.
//
// Recipients are independent: whatever happens to one (its address cannot
// be written, the next hop refuses it, the connection breaks) ends as a
// temporary failure (retried) or a permanent one (reported) for that
// recipient alone. A permanent failure is reported at the end of the
// attempt that found it, while the message's other recipients go on being
// retried (as Postfix does).
//
// What goes on the wire is clean whatever the queue holds: addresses in
// RFC 5321 form (a quoted local part stays quoted), and a body with only
// CRLF line ends (a bare CR or LF becomes CRLF), so that no next hop, even
// one that ends lines at a bare CR or LF, can read an end of data before
// the real one (SMTP smuggling, CVE-2023-51764 class).
//
// The client side uses the standard library's net/smtp: unlike go-smtp's
// client (used by the tests' sinks) it can say EHLO with our name before
// STARTTLS, which some internal servers insist on. Idle connections are
// pooled per route and reused with the next transaction.
package relay

import (
	"container/heap"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/smtp"
	"net/textproto"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/ksmg-appliance/ksmg/services/address"
	"github.com/ksmg-appliance/ksmg/services/backup"
	"github.com/ksmg-appliance/ksmg/services/config"
	"github.com/ksmg-appliance/ksmg/services/eventlog"
	"github.com/ksmg-appliance/ksmg/services/routing"
	"github.com/ksmg-appliance/ksmg/services/spool"
)

// Options wire a Relay.
type Options struct {
	Config func() *config.Config
	Spool  *spool.Spool
	Backup *backup.Store // nil: no copies
	Events eventlog.Recorder
	Log    *slog.Logger // important events
	Now    func() time.Time
}

// Relay is the delivery side of the queue.
type Relay struct {
	opt  Options
	host string

	mu    sync.Mutex
	queue msgHeap
	wake  chan struct{}

	pool *pool
	wg   sync.WaitGroup
}

type item struct {
	m     *spool.Message
	due   time.Time
	index int
}

type msgHeap []*item

func (h msgHeap) Len() int { return len(h) }
func (h msgHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].m.Env.ID < h[j].m.Env.ID
}
func (h msgHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *msgHeap) Push(x any)   { it := x.(*item); it.index = len(*h); *h = append(*h, it) }
func (h *msgHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// New creates a relay; Start runs it.
func New(opt Options) *Relay {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return &Relay{opt: opt, host: routing.Hostname(opt.Config()), wake: make(chan struct{}, 1), pool: newPool()}
}

// Enqueue schedules a message (new, or recovered at start) for delivery.
func (r *Relay) Enqueue(m *spool.Message) {
	due := m.State.NextAttempt
	r.mu.Lock()
	heap.Push(&r.queue, &item{m: m, due: due})
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Len is the number of queued messages not being delivered right now.
func (r *Relay) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}

// Start runs relay.workers delivery workers until ctx ends; then Wait
// returns once in-flight deliveries finished. Queued mail stays queued.
func (r *Relay) Start(ctx context.Context) {
	n := r.opt.Config().Relay.Workers
	jobs := make(chan *item)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(jobs)
		r.dispatch(ctx, jobs)
	}()
	for i := 0; i < n; i++ {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for it := range jobs {
				r.deliver(ctx, it.m)
			}
		}()
	}
}

// Wait waits for the workers after ctx given to Start ended, and closes
// pooled connections.
func (r *Relay) Wait() {
	r.wg.Wait()
	r.pool.closeAll()
}

func (r *Relay) dispatch(ctx context.Context, jobs chan<- *item) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		r.mu.Lock()
		var top *item
		wait := time.Hour
		if len(r.queue) > 0 {
			top = r.queue[0]
			wait = top.due.Sub(r.opt.Now())
		}
		r.mu.Unlock()
		if top != nil && wait <= 0 {
			select {
			case jobs <- top:
				r.mu.Lock()
				if top.index >= 0 && top.index < len(r.queue) && r.queue[top.index] == top {
					heap.Remove(&r.queue, top.index)
				}
				top.index = -1
				r.mu.Unlock()
			case <-r.wake: // something earlier may have arrived
			case <-ctx.Done():
				return
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-r.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// group is the pending recipients of one message that share a next hop.
type group struct {
	route routing.Route
	idx   []int // into State.Rcpts
}

func (r *Relay) deliver(ctx context.Context, m *spool.Message) {
	cfg := r.opt.Config()
	now := r.opt.Now()
	if m.State.Attempts == 0 && r.opt.Backup != nil {
		r.backup(m)
	}
	groups := map[routing.Route]*group{}
	var order []*group
	for i, rc := range m.State.Rcpts {
		if rc.Final() {
			continue
		}
		dom := rc.Addr[strings.LastIndexByte(rc.Addr, '@')+1:]
		rt, _, ok := routing.For(cfg, dom)
		if !ok {
			m.State.Rcpts[i].Code, m.State.Rcpts[i].Text = 451, "4.4.4 no route to "+dom+" (relay.default_route is not set)"
			r.event(m, []int{i}, "deferred", "451 "+m.State.Rcpts[i].Text, "")
			continue
		}
		g := groups[rt]
		if g == nil {
			g = &group{route: rt}
			groups[rt] = g
			order = append(order, g)
		}
		g.idx = append(g.idx, i)
	}
	for _, g := range order {
		if ctx.Err() != nil {
			break
		}
		r.send(ctx, cfg, m, g)
	}
	m.State.Attempts++

	var pending, unreported []int
	for i, rc := range m.State.Rcpts {
		switch {
		case rc.Failed && !rc.Reported:
			unreported = append(unreported, i)
		case !rc.Final():
			pending = append(pending, i)
		}
	}
	if len(pending) > 0 && now.Sub(m.Env.Received) >= cfg.Relay.MaxQueueLifetime {
		for _, i := range pending {
			rc := &m.State.Rcpts[i]
			rc.Failed = true
			rc.Text = "4.4.7 message expired after " + cfg.Relay.MaxQueueLifetime.String() + " in the queue; last error: " + rc.Text
			unreported = append(unreported, i)
		}
		r.event(m, pending, "expired", "4.4.7 queue lifetime "+cfg.Relay.MaxQueueLifetime.String()+" exceeded", "")
		pending = nil
	}
	// Permanent failures are reported now, not when the last recipient is
	// done: that may be the whole queue lifetime later.
	reportFailed := len(unreported) > 0 && !r.report(m, unreported)
	if len(pending) == 0 && !reportFailed {
		if err := r.opt.Spool.Remove(m.Env.ID); err != nil {
			r.opt.Log.Error("cannot remove delivered message from the queue; it may be delivered again", "queue_id", m.Env.ID, "err", err)
		}
		return
	}
	switch {
	case ctx.Err() != nil && len(pending) > 0:
		// Shutting down: the attempt did not happen for every recipient;
		// keep the schedule as it was.
		m.State.Attempts--
	case len(pending) > 0:
		m.State.NextAttempt = now.Add(backoff(cfg, m.State.Attempts))
	default: // only the report is left to do: retried with the message
		m.State.NextAttempt = now.Add(cfg.Relay.RetryInitial)
	}
	if err := r.opt.Spool.SaveState(m.Env.ID, &m.State); err != nil {
		r.opt.Log.Error("cannot save delivery state; the recipients already delivered may get a duplicate", "queue_id", m.Env.ID, "err", err)
	}
	if ctx.Err() == nil {
		r.Enqueue(m)
	}
}

// report sends the sender a DSN for the failed recipients idx and marks
// them reported; false if the DSN could not be queued (tried again at the
// next attempt). A null sender, a DSN and a sender no DSN could be
// addressed to get none; that is logged.
func (r *Relay) report(m *spool.Message, idx []int) bool {
	switch {
	case m.Env.Bounce || m.Env.From == "":
		r.opt.Log.Warn("undeliverable message from the null sender or a notification discarded", "queue_id", m.Env.ID, "failed", len(idx))
	case address.Check(m.Env.From) != nil:
		r.opt.Log.Warn("undeliverable message discarded: its sender address cannot be written in SMTP, so no notification either", "queue_id", m.Env.ID, "failed", len(idx))
	default:
		if err := r.bounce(m, idx); err != nil {
			r.opt.Log.Error("cannot queue delivery status notification", "queue_id", m.Env.ID, "err", err)
			return false
		}
	}
	for _, i := range idx {
		m.State.Rcpts[i].Reported = true
	}
	return true
}

func (r *Relay) backup(m *spool.Message) {
	if err := r.opt.Backup.Add(m.Env.ID, r.opt.Spool.Path(m.Env.ID)); err != nil {
		r.opt.Log.Error("backup copy failed", "queue_id", m.Env.ID, "err", err)
	}
}

// backoff: retry_initial doubled per attempt up to retry_max, then a random
// part of the upper half, so that retries after an outage spread out.
func backoff(cfg *config.Config, attempts int) time.Duration {
	d := cfg.Relay.RetryInitial
	for i := 1; i < attempts && d < cfg.Relay.RetryMax; i++ {
		d *= 2
	}
	if d > cfg.Relay.RetryMax {
		d = cfg.Relay.RetryMax
	}
	half := d / 2
	return half + rand.N(half+1)
}

var enhRe = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}\b`)

// send runs one SMTP transaction for a group and records each recipient's
// outcome in m.State.
func (r *Relay) send(ctx context.Context, cfg *config.Config, m *spool.Message, g *group) {
	setAll := func(code int, text string) {
		for _, i := range g.idx {
			rc := &m.State.Rcpts[i]
			rc.Code, rc.Text = code, text
			if code >= 500 {
				rc.Failed = true
			}
		}
	}
	for attempt := 0; attempt < 2; attempt++ {
		c, reused, err := r.pool.get(ctx, cfg, r.host, g.route)
		if err != nil {
			setAll(451, "4.4.1 "+err.Error())
			r.event(m, g.idx, "deferred", "451 4.4.1 "+err.Error(), g.route.Addr)
			return
		}
		reusable, err := r.transaction(c, m, g)
		if err != nil {
			c.close()
			if reused && attempt == 0 {
				continue // a pooled connection had gone stale: once more, fresh
			}
			setAll(451, "4.4.2 "+err.Error())
			r.event(m, g.idx, "deferred", "451 4.4.2 "+err.Error(), g.route.Addr)
			return
		}
		if reusable {
			r.pool.put(g.route, c)
		} else {
			c.close()
		}
		return
	}
}

// transaction runs MAIL, RCPT and DATA for a group and records each
// recipient's outcome. It reports whether the connection can be reused;
// err is set (and nothing recorded) when the connection failed before the
// server answered MAIL FROM, so that send can try a fresh one.
func (r *Relay) transaction(c *conn, m *spool.Message, g *group) (reusable bool, err error) {
	// A deadline cannot be set only on a closed connection, which the
	// first command reports.
	_ = c.raw.SetDeadline(time.Now().Add(5*time.Minute + time.Duration(m.Size/10000)*time.Second))
	// record sets one outcome for the recipients idx.
	record := func(idx []int, code int, text, stage string) {
		for _, i := range idx {
			rc := &m.State.Rcpts[i]
			rc.Code, rc.Text, rc.Failed = code, text, code >= 500
		}
		act := "deferred"
		if code >= 500 {
			act = "bounced"
		}
		r.event(m, idx, act, fmt.Sprintf("%d %s (%s)", code, text, stage), g.route.Addr)
	}
	if m.Env.From != "" {
		if err := address.Check(m.Env.From); err != nil {
			record(g.idx, 553, "5.1.7 sender address cannot be written in SMTP: "+err.Error(), "MAIL FROM")
			return true, nil
		}
	}
	if err := c.Mail(address.Wire(m.Env.From)); err != nil {
		if !isReply(err) {
			return false, err
		}
		code, text := classify(err)
		record(g.idx, code, text, "MAIL FROM")
		return c.Reset() == nil, nil
	}
	var accepted []int
	for k, i := range g.idx {
		rc := &m.State.Rcpts[i]
		if err := address.Check(rc.Addr); err != nil {
			record([]int{i}, 553, "5.1.3 recipient address cannot be written in SMTP: "+err.Error(), "RCPT TO")
			continue
		}
		if err := c.Rcpt(address.Wire(rc.Addr)); err != nil {
			if !isReply(err) {
				// The connection broke: this recipient, the rest and those
				// accepted without data are deferred, each of them.
				code, text := classify(err)
				record(append(accepted, g.idx[k:]...), code, text, "RCPT TO")
				return false, nil
			}
			code, text := classify(err)
			record([]int{i}, code, text, "RCPT TO")
			continue
		}
		accepted = append(accepted, i)
	}
	if len(accepted) == 0 {
		return c.Reset() == nil, nil
	}
	body, err := r.opt.Spool.Open(m.Env.ID)
	if err != nil {
		r.opt.Log.Error("queued message unreadable", "queue_id", m.Env.ID, "err", err)
		record(accepted, 451, "4.3.0 queued message unreadable", "DATA")
		return c.Reset() == nil, nil
	}
	defer body.Close()
	w, err := c.Data()
	if err == nil {
		le := &crlfWriter{w: w}
		_, err = io.Copy(le, body)
		if err == nil {
			err = le.flush()
		}
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		code, text := classify(err)
		record(accepted, code, text, "DATA")
		return isReply(err), nil
	}
	for _, i := range accepted {
		rc := &m.State.Rcpts[i]
		rc.Done, rc.Code, rc.Text = true, 250, "2.0.0 delivered"
	}
	r.event(m, accepted, "delivered", "250 2.0.0 delivered", g.route.Addr)
	return true, nil
}

// isReply: the server answered (as opposed to a failed connection).
func isReply(err error) bool {
	var te *textproto.Error
	return errors.As(err, &te)
}

// crlfWriter turns every bare CR and bare LF into CRLF on the way to the
// DATA writer (which dot-stuffs): so the only end of data any next hop can
// read is the one the DATA writer appends.
type crlfWriter struct {
	w      io.Writer
	lastCR bool
}

func (c *crlfWriter) Write(p []byte) (int, error) {
	start := 0
	emit := func(end int, extra string) error {
		if _, err := c.w.Write(p[start:end]); err != nil {
			return err
		}
		if extra != "" {
			if _, err := io.WriteString(c.w, extra); err != nil {
				return err
			}
		}
		start = end
		return nil
	}
	for i, b := range p {
		switch {
		case c.lastCR && b != '\n':
			if err := emit(i, "\n"); err != nil { // CR<x> -> CRLF<x>
				return 0, err
			}
		case !c.lastCR && b == '\n':
			if err := emit(i, "\r"); err != nil { // <x>LF -> <x>CRLF
				return 0, err
			}
		}
		c.lastCR = b == '\r'
	}
	if err := emit(len(p), ""); err != nil {
		return 0, err
	}
	return len(p), nil
}

// flush ends a trailing bare CR.
func (c *crlfWriter) flush() error {
	if !c.lastCR {
		return nil
	}
	c.lastCR = false
	_, err := io.WriteString(c.w, "\n")
	return err
}

// classify maps an error to a reply code and enhanced text. Anything that
// is not an SMTP reply (network, TLS) is temporary.
func classify(err error) (int, string) {
	var te *textproto.Error
	if errors.As(err, &te) {
		msg := strings.ReplaceAll(te.Msg, "\n", " ")
		if !enhRe.MatchString(msg) {
			msg = fmt.Sprintf("%d.0.0 %s", te.Code/100, msg)
		}
		return te.Code, msg
	}
	return 451, "4.4.2 " + err.Error()
}

func (r *Relay) event(m *spool.Message, idx []int, action, result, route string) {
	rc := make([]string, len(idx))
	for k, i := range idx {
		rc[k] = m.State.Rcpts[i].Addr
	}
	from := m.Env.From
	r.opt.Events.Event(eventlog.Event{QueueID: m.Env.ID, ClientIP: m.Env.ClientIP, Sender: &from, Recipients: rc,
		Size: m.Size, Action: action, Result: result, Route: route})
}

// conn is a pooled client connection.
type conn struct {
	*smtp.Client
	raw  net.Conn
	idle time.Time
}

func (c *conn) close() {
	c.Close()
}

// pool keeps idle connections per route.
type pool struct {
	mu   sync.Mutex
	idle map[routing.Route][]*conn
}

func newPool() *pool { return &pool{idle: map[routing.Route][]*conn{}} }

const maxIdle = 30 * time.Second

func (p *pool) get(ctx context.Context, cfg *config.Config, host string, rt routing.Route) (*conn, bool, error) {
	p.mu.Lock()
	for list := p.idle[rt]; len(list) > 0; list = p.idle[rt] {
		c := list[len(list)-1]
		p.idle[rt] = list[:len(list)-1]
		if time.Since(c.idle) < maxIdle {
			p.mu.Unlock()
			return c, true, nil
		}
		c.close()
	}
	p.mu.Unlock()
	c, err := dial(ctx, cfg, host, rt)
	return c, false, err
}

func (p *pool) put(rt routing.Route, c *conn) {
	c.idle = time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle[rt]) >= 64 {
		_ = c.Quit() // polite; the connection is done either way
		return
	}
	p.idle[rt] = append(p.idle[rt], c)
}

func (p *pool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for rt, list := range p.idle {
		for _, c := range list {
			_ = c.raw.SetDeadline(time.Now().Add(2 * time.Second))
			_ = c.Quit() // polite; the connection is done either way
		}
		delete(p.idle, rt)
	}
}

// dial connects, greets and negotiates STARTTLS per the route's policy:
// none never tries; opportunistic tries without verifying the certificate
// (RFC 7435) and falls back to plain text on a fresh connection if the
// handshake fails; required verifies the certificate against the system
// roots (SSL_CERT_FILE/SSL_CERT_DIR) and the route's host name, or fails.
func dial(ctx context.Context, cfg *config.Config, host string, rt routing.Route) (*conn, error) {
	c, err := dialOnce(ctx, cfg, host, rt, rt.TLS != config.TLSNone)
	if err != nil && rt.TLS == config.TLSOpportunistic && errors.Is(err, errTLS) {
		return dialOnce(ctx, cfg, host, rt, false)
	}
	return c, err
}

var errTLS = errors.New("STARTTLS failed")

func dialOnce(ctx context.Context, cfg *config.Config, host string, rt routing.Route, tryTLS bool) (*conn, error) {
	d := net.Dialer{Timeout: cfg.Relay.ConnectTimeout}
	raw, err := d.DialContext(ctx, "tcp", rt.Addr)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", rt.Addr, err)
	}
	_ = raw.SetDeadline(time.Now().Add(cfg.Relay.ConnectTimeout + time.Minute)) // fails only when closed: the greeting says so
	rhost, _, _ := net.SplitHostPort(rt.Addr)
	cl, err := smtp.NewClient(raw, rhost)
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("greeting from %s: %w", rt.Addr, err)
	}
	if err := cl.Hello(host); err != nil {
		cl.Close()
		return nil, fmt.Errorf("EHLO to %s: %w", rt.Addr, err)
	}
	if tryTLS {
		ok, _ := cl.Extension("STARTTLS")
		switch {
		case ok:
			tc := &tls.Config{ServerName: rhost, MinVersion: tls.VersionTLS12}
			if rt.TLS == config.TLSOpportunistic {
				tc.InsecureSkipVerify = true // opportunistic: encrypt, don't authenticate
			}
			if err := cl.StartTLS(tc); err != nil {
				cl.Close()
				return nil, fmt.Errorf("%w with %s: %w", errTLS, rt.Addr, err)
			}
		case rt.TLS == config.TLSRequired:
			_ = cl.Quit() // polite; the connection is refused either way
			return nil, fmt.Errorf("%s does not offer STARTTLS and the route requires TLS", rt.Addr)
		}
	}
	return &conn{Client: cl, raw: raw}, nil
}
