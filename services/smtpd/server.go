// Package smtpd is the gateway's receiving side: an SMTP server built on
// github.com/emersion/go-smtp that enforces the limits, the relay rule
// (mail only for protected domains, or from trusted networks) and the allow
// and deny lists before DATA, and answers 250 to DATA only after the spool
// has made the message durable. go-smtp is the patched copy in
// third_party/go-smtp (KSMG-PATCHES.md): its DATA reader must end the data
// exactly where RFC 5321 does and pass every bare CR on to bodyReader.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/ksmg-appliance/ksmg/services/address"
	"github.com/ksmg-appliance/ksmg/services/config"
	"github.com/ksmg-appliance/ksmg/services/eventlog"
	"github.com/ksmg-appliance/ksmg/services/routing"
	"github.com/ksmg-appliance/ksmg/services/spool"
)

// Queue receives every message once it is durable in the spool.
type Queue interface {
	Enqueue(m *spool.Message)
}

// Options wire a Server.
type Options struct {
	Config func() *config.Config // the current configuration (reloads)
	Spool  *spool.Spool
	Queue  Queue
	Events eventlog.Recorder
	Log    *slog.Logger // important events
	Diag   *slog.Logger // the journal: connection diagnostics at debug level (nil: none)
	TLS    *tls.Config  // nil: no STARTTLS
	Trace  io.Writer    // raw SMTP dialogue (carries bodies); nil: none
}

// Server is the SMTP listener side.
type Server struct {
	opt      Options
	diag     *slog.Logger
	srv      *smtp.Server
	hostname string
}

// New creates a server. Limits the go-smtp server enforces itself (line
// length, the advertised SIZE) are taken from the configuration at start;
// the timeouts and the junk limit (guardConn) apply to connections accepted
// after a reload, the per-session checks follow reloads at once.
func New(opt Options) *Server {
	cfg := opt.Config()
	s := &Server{opt: opt, hostname: routing.Hostname(cfg)}
	srv := smtp.NewServer(s)
	srv.Domain = s.hostname
	srv.MaxMessageBytes = cfg.Limits.MaxMessageSize
	srv.MaxLineLength = cfg.Limits.MaxLineLength
	srv.ReadTimeout = 0 // guardConn sets every deadline
	srv.WriteTimeout = 0
	srv.TLSConfig = opt.TLS
	diag := opt.Diag
	if diag == nil {
		diag = slog.New(slog.DiscardHandler)
	}
	srv.ErrorLog = errorLog{imp: opt.Log, diag: diag}
	s.diag = diag
	if opt.Trace != nil {
		srv.Debug = opt.Trace
	}
	s.srv = srv
	return s
}

// Serve accepts sessions on l (at most limits.max_sessions at once; more
// wait in the kernel backlog) until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	err := s.srv.Serve(newGuardListener(l, s, s.opt.Config().Limits.MaxSessions))
	if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, lets sessions finish until ctx ends, then
// closes the rest (their unacknowledged messages were never answered 250).
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if ctx.Err() != nil {
		s.srv.Close()
	}
	// A listener its owner closed first (the daemon's drain does) is closed.
	if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// NewSession implements smtp.Backend.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	g := guardOf(c.Conn())
	if g == nil {
		return nil, errors.New("smtpd: connection not accepted by Serve")
	}
	if g.closed() {
		return nil, errGuardClosed // a partial EHLO read at a timeout
	}
	g.sc.Store(c)
	sess := &session{s: s, conn: c, guard: g, helo: c.Hostname()}
	// go-smtp starts a new session after STARTTLS.
	_, sess.tls = c.TLSConnectionState()
	if ap, err := netip.ParseAddrPort(c.Conn().RemoteAddr().String()); err == nil {
		sess.ip = ap.Addr().Unmap()
		sess.ipStr = sess.ip.String()
	}
	return sess, nil
}

type session struct {
	s       *Server
	conn    *smtp.Conn
	guard   *guardConn
	ip      netip.Addr
	ipStr   string
	helo    string
	tls     bool
	hasFrom bool
	allowed bool // an allow list matched the client or the sender

	// mu guards what Data reads: go-smtp runs Data for BDAT in a goroutine
	// of its own, which may still be starting when the client has moved on
	// to the next transaction (RSET, MAIL, RCPT).
	mu    sync.Mutex
	cfg   *config.Config
	from  string
	rcpts []string
}

func reply(code int, enh smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

func (se *session) reject(err *smtp.SMTPError, rcpt string) error {
	e := eventlog.Event{ClientIP: se.ipStr, Action: "rejected",
		Result: fmt.Sprintf("%d %d.%d.%d %s", err.Code, err.EnhancedCode[0], err.EnhancedCode[1], err.EnhancedCode[2], err.Message)}
	if se.hasFrom {
		from := se.from
		e.Sender = &from
	}
	if rcpt != "" {
		e.Recipients = []string{rcpt}
	}
	se.s.opt.Events.Event(e)
	return err
}

// errClosing answers a command read (partly) before the gateway closed the
// connection: it is never written, and nothing is done.
var errClosing = reply(421, smtp.EnhancedCode{4, 4, 2}, "Closing connection")

func (se *session) Mail(from string, opts *smtp.MailOptions) error {
	if se.guard.closed() {
		return errClosing
	}
	if se.hasFrom {
		// RFC 5321 §4.1.4: MAIL begins a transaction, RSET ends one. go-smtp
		// passes a second MAIL on and, if it is refused, keeps the open
		// transaction: the refused sender must not replace its sender.
		return se.reject(reply(503, smtp.EnhancedCode{5, 5, 1}, "Error: nested MAIL command"), "")
	}
	cfg := se.s.opt.Config()
	se.mu.Lock()
	se.cfg, se.from, se.rcpts = cfg, from, nil
	se.mu.Unlock()
	se.hasFrom = true
	if from != "" {
		// RFC 5321 §4.1.2: refuse what the relay could not write again
		// (a bare CR or LF would end its MAIL command early).
		if err := address.Check(from); err != nil {
			se.hasFrom = false
			return se.reject(reply(553, smtp.EnhancedCode{5, 1, 7}, "Bad sender address syntax: "+err.Error()), "")
		}
	}
	se.allowed = matchNet(cfg.Lists.Allow.Networks, se.ip) || (from != "" && matchAddr(cfg.Lists.Allow.Senders, from))
	if !se.allowed && matchNet(cfg.Lists.Deny.Networks, se.ip) {
		se.hasFrom = false
		return se.reject(reply(554, smtp.EnhancedCode{5, 7, 1}, "Client address rejected: on the deny list"), "")
	}
	if !se.allowed && from != "" && matchAddr(cfg.Lists.Deny.Senders, from) {
		se.hasFrom = false
		return se.reject(reply(550, smtp.EnhancedCode{5, 7, 1}, "Sender address rejected: on the deny list"), "")
	}
	if opts != nil && opts.Size > cfg.Limits.MaxMessageSize {
		se.hasFrom = false
		return se.reject(smtp.ErrDataTooLarge, "")
	}
	se.guard.progress()
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if se.guard.closed() {
		return errClosing
	}
	if !se.hasFrom {
		return se.reject(reply(503, smtp.EnhancedCode{5, 5, 1}, "Error: need MAIL command"), to)
	}
	cfg := se.cfg
	if len(se.rcpts) >= cfg.Limits.MaxRecipients {
		return se.reject(reply(452, smtp.EnhancedCode{4, 5, 3}, fmt.Sprintf("Too many recipients (at most %d per message)", cfg.Limits.MaxRecipients)), to)
	}
	if strings.EqualFold(to, "postmaster") {
		// RFC 5321 §4.5.1: <postmaster> without a domain MUST be
		// accepted; it is the first protected domain's postmaster.
		if len(cfg.ProtectedDomains) == 0 {
			return se.reject(reply(550, smtp.EnhancedCode{5, 1, 1}, "No postmaster here: no protected domain is configured"), to)
		}
		to = "postmaster@" + cfg.ProtectedDomains[0].Name
	}
	if err := address.Check(to); err != nil {
		return se.reject(reply(553, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax: "+err.Error()), to)
	}
	_, dom := splitAddr(to)
	_, protected, routed := routing.For(cfg, dom)
	if !protected && !matchNet(cfg.TrustedNetworks, se.ip) {
		return se.reject(reply(550, smtp.EnhancedCode{5, 7, 1}, "Relaying denied"), to)
	}
	if !routed {
		return se.reject(reply(550, smtp.EnhancedCode{5, 4, 4}, "No route to "+dom+" (relay.default_route is not set)"), to)
	}
	if !se.allowed && !matchAddr(cfg.Lists.Allow.Recipients, to) && matchAddr(cfg.Lists.Deny.Recipients, to) {
		return se.reject(reply(550, smtp.EnhancedCode{5, 7, 1}, "Recipient address rejected: on the deny list"), to)
	}
	se.mu.Lock()
	se.rcpts = append(se.rcpts, to)
	se.mu.Unlock()
	se.guard.progress()
	return nil
}

// limitReader reports ErrDataTooLarge past n bytes (the reloadable limit;
// go-smtp enforces the one configured at start).
type limitReader struct {
	r io.Reader
	n int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		var one [1]byte
		if k, _ := l.r.Read(one[:]); k > 0 {
			return 0, smtp.ErrDataTooLarge
		}
		return l.r.Read(p)
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	k, err := l.r.Read(p)
	l.n -= int64(k)
	return k, err
}

// errBareLineEnd: the message has a CR not followed by LF or an LF not
// preceded by CR.
var errBareLineEnd = errors.New("bare CR or LF in the message")

// bodyReader holds the message as received to the line-end policy and
// tells the guard that the transaction is moving on.
//
// Policy (SMTP smuggling, CVE-2023-51764 class): RFC 5321 §2.3.8 allows CR
// and LF in the content only together, as CRLF. A message with a bare CR or
// a bare LF anywhere is refused (550 5.6.0), by DATA and by BDAT alike, as
// Postfix does with smtpd_forbid_bare_newline and KumoMTA by default. The
// data then never holds a sequence that a next hop ending lines at a bare
// CR or LF would read as the end of the data; go-smtp ends DATA at the
// first CRLF.CRLF, as RFC 5321 §4.1.1.4 does (also right after a bare CR,
// third_party/go-smtp), so what a client sent after a lax end (<LF>.<LF>,
// <CR>.<CR> and the like) is part of the refused message, never a command.
type bodyReader struct {
	r      io.Reader
	g      *guardConn
	lastCR bool
	err    error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.r.Read(p)
	if n > 0 {
		b.g.progress()
	}
	for _, c := range p[:n] {
		if b.lastCR != (c == '\n') {
			b.err = errBareLineEnd
			return 0, b.err
		}
		b.lastCR = c == '\r'
	}
	if err == io.EOF {
		switch {
		case b.lastCR:
			b.err = errBareLineEnd
		case b.g.closed():
			b.err = errGuardClosed // the end was read before a timeout closed the session
		}
		if b.err != nil {
			return 0, b.err
		}
	}
	return n, err
}

// messageDeadline: the whole message must arrive within idle_timeout +
// max_message_size / min_data_rate.
func messageDeadline(cfg *config.Config) time.Time {
	secs := min(float64(cfg.Limits.MaxMessageSize)/float64(cfg.Limits.MinDataRate), 1e6) // about 11 days at most
	return time.Now().Add(cfg.Limits.IdleTimeout + time.Duration(secs*float64(time.Second)))
}

func (se *session) Data(r io.Reader) error {
	if se.guard.closed() {
		return errClosing
	}
	se.mu.Lock()
	cfg, from, to := se.cfg, se.from, append([]string(nil), se.rcpts...)
	se.mu.Unlock()
	defer se.guard.endMessage(se.guard.beginMessage(messageDeadline(cfg)))
	env := &spool.Envelope{ID: se.s.opt.Spool.NewID(), From: from, To: to,
		ClientIP: se.ipStr, Helo: se.helo, Received: time.Now().UTC()}
	proto := "ESMTP"
	if se.tls {
		proto = "ESMTPS"
	}
	var for1 string
	if len(env.To) == 1 {
		for1 = "\r\n\tfor <" + address.Wire(env.To[0]) + ">"
	}
	received := fmt.Sprintf("Received: from %s ([%s])\r\n\tby %s (ksmg-gatewayd) with %s id %s%s;\r\n\t%s\r\n",
		sanitize(se.helo), se.ipStr, se.s.hostname, proto, env.ID, for1, env.Received.Format(time.RFC1123Z))
	body := &bodyReader{r: &limitReader{r, cfg.Limits.MaxMessageSize}, g: se.guard}
	size, err := se.s.opt.Spool.Write(env, io.MultiReader(strings.NewReader(received), body))
	if err != nil {
		var se2 *smtp.SMTPError
		switch {
		case errors.As(err, &se2):
			return se.rejectData(env, se2)
		case errors.Is(err, errBareLineEnd):
			return se.rejectData(env, reply(550, smtp.EnhancedCode{5, 6, 0}, "Message refused: bare CR or LF in the message; lines must end in CRLF (RFC 5321 section 2.3.8)"))
		case errors.Is(err, smtp.ErrTooLongLine):
			return se.rejectData(env, reply(500, smtp.EnhancedCode{5, 5, 2}, "Line too long"))
		case errors.Is(err, spool.ErrStorage):
			// Temporary, whatever the cause (full, I/O error), and without
			// the queue's paths: the client retries.
			se.s.opt.Log.Error("cannot queue message", "queue_id", env.ID, "err", err)
			return se.rejectData(env, reply(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage, try again later"))
		}
		// The client went away or the gateway closed the connection (a
		// timeout): there is no one to answer, and nothing internal is
		// put into a reply.
		return reply(421, smtp.EnhancedCode{4, 4, 2}, "Connection lost")
	}
	se.s.opt.Queue.Enqueue(&spool.Message{Env: *env, State: spool.NewState(env), Size: size})
	res := "250 2.0.0 OK: queued as " + env.ID
	se.s.opt.Events.Event(eventlog.Event{QueueID: env.ID, ClientIP: se.ipStr, Sender: &from, Recipients: env.To, Size: size, Action: "received", Result: res})
	se.guard.progress()
	return reply(250, smtp.EnhancedCode{2, 0, 0}, "OK: queued as "+env.ID)
}

func (se *session) rejectData(env *spool.Envelope, e *smtp.SMTPError) error {
	from := env.From
	se.s.opt.Events.Event(eventlog.Event{QueueID: env.ID, ClientIP: se.ipStr, Sender: &from, Recipients: env.To, Action: "rejected",
		Result: fmt.Sprintf("%d %d.%d.%d %s", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], e.Message)})
	return e
}

// sanitize keeps a client-supplied HELO name from breaking the header.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e || r == '(' || r == ')' {
			return '_'
		}
		return r
	}, s)
}

func (se *session) Reset() {
	se.mu.Lock()
	se.from, se.rcpts = "", nil
	se.mu.Unlock()
	se.hasFrom, se.allowed = false, false
}

func (se *session) Logout() error { return nil }

// errorLog sorts go-smtp's error log. A panic in a handler or a failing
// accept is for the administrator (the important log); a connection reset,
// a port probe or a failed TLS handshake is the internet's everyday noise
// and goes to the journal at debug level.
type errorLog struct{ imp, diag *slog.Logger }

func (e errorLog) Printf(format string, v ...any) { e.log(fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.log(fmt.Sprint(v...)) }

func (e errorLog) log(msg string) {
	switch {
	case strings.HasPrefix(msg, "panic"):
		e.imp.Error("SMTP session handler failed", "err", msg)
	case strings.HasPrefix(msg, "accept error"):
		e.imp.Warn("SMTP listener cannot accept", "err", msg)
	default:
		e.diag.Debug("SMTP connection failed", "err", msg)
	}
}
