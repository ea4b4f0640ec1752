package smtpd

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/ksmg-appliance/ksmg/services/config"
)

// guardConn is the connection as go-smtp sees it; it holds the session to
// the limits go-smtp has no option for.
//
// Timeouts (RFC 5321 §4.5.3.2). A write (a reply) must complete within
// idle_timeout as well. go-smtp sets one read deadline per command
// line and none inside DATA or BDAT, so idle_timeout capped a whole
// message, and when a deadline hit it ran the partial line already read as
// a command and (in DATA) went on reading the rest of the body as commands.
// Here every read gets its own deadline. Between messages the next command
// must be complete within idle_timeout of the last reply written (the
// server's wait for a command, §4.5.3.2.7), however the client spreads its
// bytes; a per-read timeout alone let a client trickle a command line for
// max_line_length × idle_timeout. While a message is being received, each
// read (a block of data, §4.5.3.2.5) gets idle_timeout from now, but no
// later than the message deadline. When one
// passes, guardConn itself answers 421 4.4.2 and closes the connection
// before go-smtp sees the error, so nothing read so far is acted upon and
// the session checks closed() before it queues anything. The same holds
// when the client closes or resets the connection in the middle of a line.
//
// Junk commands. A reply that is written while no mail transaction moves
// on (an accepted MAIL or RCPT, message data) counts; past
// junk_command_limit the next read answers 421 4.7.0 and closes, like
// Postfix's smtpd_junk_command_limit. Counting written replies is the one
// way that also works under STARTTLS, where commands pass through go-smtp's
// own TLS connection and never through here in clear.
//
// Under STARTTLS the farewell reply is written through go-smtp's
// *tls.Conn (found from the session's *smtp.Conn); during the handshake
// itself none can be written and the connection is only closed.
type guardConn struct {
	net.Conn
	hostname string
	idle     time.Duration
	junkMax  int
	diag     *slog.Logger

	sc         atomic.Pointer[smtp.Conn] // set by the first session
	dead       atomic.Bool
	msgDead    atomic.Int64 // unix nanoseconds; 0: no message in progress
	msgEnded   atomic.Int64 // the msgDead whose handler returned: lifted at the next write
	replied    atomic.Int64 // unix nanoseconds of the last write; 0: none yet
	greetings  int          // "220 " replies seen in clear: the second starts TLS
	tlsStarted bool
	junk       int
	mu         sync.Mutex // junk, greetings, tlsStarted (writes and reads run in go-smtp's goroutine; Data may not)

	release   func() // the listener's slot
	closeOnce sync.Once
}

// Close closes once and gives the listener's slot back.
func (g *guardConn) Close() error {
	err := net.ErrClosed
	g.closeOnce.Do(func() {
		err = g.Conn.Close()
		if g.release != nil {
			g.release()
		}
	})
	return err
}

// errGuardClosed wraps net.ErrClosed: go-smtp then ends the session
// quietly, without a reply or a log line of its own.
var errGuardClosed = fmt.Errorf("smtpd: connection closed by the gateway: %w", net.ErrClosed)

const farewellTimeout = 10 * time.Second

func (g *guardConn) closed() bool { return g.dead.Load() }

// beginMessage sets the deadline for the message now being received and
// returns what endMessage needs.
func (g *guardConn) beginMessage(d time.Time) int64 {
	n := d.UnixNano()
	g.msgDead.Store(n)
	return n
}

// endMessage says that the handler of the message whose beginMessage
// returned n is done. The deadline stays until the next reply: go-smtp
// still reads (and drops) the rest of a refused message, which must arrive
// under the same rules. It is then lifted unless a later message has set
// its own: a BDAT transaction's handler runs in its own goroutine and,
// after a RSET or a refused chunk, may end only when the next transaction
// has begun.
func (g *guardConn) endMessage(n int64) { g.msgEnded.Store(n) }

// progress: the mail transaction moved on.
func (g *guardConn) progress() {
	g.mu.Lock()
	g.junk = 0
	g.mu.Unlock()
}

func (g *guardConn) Read(p []byte) (int, error) {
	if g.dead.Load() {
		return 0, errGuardClosed
	}
	g.mu.Lock()
	junk := g.junkMax > 0 && g.junk > g.junkMax
	g.mu.Unlock()
	if junk {
		g.closeWith(421, "4.7.0", junkText)
		return 0, errGuardClosed
	}
	d := time.Now().Add(g.idle)
	if md := g.msgDead.Load(); md != 0 {
		if md < d.UnixNano() {
			d = time.Unix(0, md)
		}
	} else if r := g.replied.Load(); r != 0 {
		d = time.Unix(0, r).Add(g.idle) // the whole next command within idle_timeout
	}
	if err := g.SetReadDeadline(d); err != nil {
		g.dead.Store(true) // closed under us (a shutdown): act on nothing more
		return 0, errGuardClosed
	}
	n, err := g.Conn.Read(p)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			g.closeWith(421, "4.4.2", "Error: timeout exceeded, closing connection")
			return 0, errGuardClosed
		}
		// The client closed or reset the connection. bufio hands a
		// partial last line to go-smtp as if it were complete; closed()
		// keeps the session from acting on it, and no reply is written.
		if !errors.Is(err, io.EOF) {
			g.diag.Debug("SMTP client connection failed", "client", g.RemoteAddr().String(), "err", err)
		}
		g.dead.Store(true)
		g.Close()
		return 0, errGuardClosed
	}
	return n, err
}

func (g *guardConn) Write(p []byte) (int, error) {
	if g.dead.Load() {
		return 0, errGuardClosed
	}
	g.mu.Lock()
	clear, count, endTLS := !g.tlsStarted, false, false
	switch {
	case clear:
		// In clear every write is one reply line; the last line of a
		// reply counts. go-smtp writes 220 for the greeting and for
		// STARTTLS only: after the second, the stream is TLS.
		count = len(p) > 3 && p[3] == ' '
		if bytes.HasPrefix(p, []byte("220 ")) {
			g.greetings++
			count = g.greetings > 1 // the greeting answers no command
			g.tlsStarted = g.greetings > 1
		}
	case g.tlsConn() != nil:
		count = true // one TLS record per reply line: each line counts
	default:
		// Handshake records are not counted. go-smtp answers a failed
		// handshake in clear and would go on in clear with whatever the
		// client sent as TLS: the session ends there instead.
		endTLS = bytes.HasPrefix(p, []byte("550 "))
	}
	if count {
		g.junk++
	}
	over := count && g.junkMax > 0 && g.junk > g.junkMax
	g.mu.Unlock()
	if over && clear {
		// Exact in clear: this reply becomes the 421. Under TLS the next
		// read says it (after at most one buffer of pipelined commands).
		g.closeWith(421, "4.7.0", junkText)
		return 0, errGuardClosed
	}
	if err := g.SetWriteDeadline(time.Now().Add(g.idle)); err != nil {
		return 0, err // closed
	}
	n, err := g.Conn.Write(p)
	g.replied.Store(time.Now().UnixNano())
	if e := g.msgEnded.Swap(0); e != 0 {
		g.msgDead.CompareAndSwap(e, 0)
	}
	if endTLS {
		g.dead.Store(true)
		g.lingerClose()
	}
	return n, err
}

const junkText = "Error: too many commands without a mail transaction, closing connection"

// tlsConn is go-smtp's TLS connection once its handshake is complete.
func (g *guardConn) tlsConn() *tls.Conn {
	if sc := g.sc.Load(); sc != nil {
		if tc, ok := sc.Conn().(*tls.Conn); ok {
			return tc
		}
	}
	return nil
}

// closeWith answers code and closes; it runs in go-smtp's goroutine (from
// Read), where writing through the TLS connection cannot deadlock.
func (g *guardConn) closeWith(code int, enh, text string) {
	if g.dead.Load() {
		return
	}
	line := []byte(fmt.Sprintf("%d %s %s %s\r\n", code, enh, g.hostname, text))
	g.mu.Lock()
	inTLS := g.tlsStarted
	g.mu.Unlock()
	// The farewell is best effort: the connection is closed either way.
	if tc := g.tlsConn(); tc != nil {
		_, _ = tc.Write(line) // through g.Write: not dead yet
	} else if !inTLS && g.SetWriteDeadline(time.Now().Add(farewellTimeout)) == nil {
		_, _ = g.Conn.Write(line)
	}
	g.dead.Store(true)
	g.lingerClose()
}

// lingerClose sends FIN after the farewell and reads what the client still
// sends for a moment before closing: closing with unread input would send
// an RST, and an RST can make the client's kernel drop the 421 unread.
func (g *guardConn) lingerClose() {
	if tc, ok := g.Conn.(interface{ CloseWrite() error }); ok && tc.CloseWrite() == nil &&
		g.SetReadDeadline(time.Now().Add(lingerTimeout)) == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(g.Conn, 1<<20)) // whatever it was, it is dropped
	}
	g.Close()
}

const lingerTimeout = time.Second

// guardOf finds the guard under go-smtp's connection (plain or TLS).
func guardOf(c net.Conn) *guardConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	g, _ := c.(*guardConn)
	return g
}

// guardListener wraps every accepted connection, with the limits the
// configuration has at that moment, and lets at most max connections be
// open at once (more wait in the kernel's backlog), and at most
// max_sessions_per_client from one client address: more are answered 421
// and closed here, before go-smtp sees them. golang.org/x/net's
// LimitListener did the first before, but its connection type hides
// CloseWrite, which lingerClose needs.
type guardListener struct {
	net.Listener
	s    *Server
	sem  chan struct{}
	done chan struct{}
	once sync.Once

	mu      sync.Mutex
	clients map[netip.Addr]int // open sessions per client address (IPv6: per /64)
}

func newGuardListener(l net.Listener, s *Server, max int) *guardListener {
	return &guardListener{Listener: l, s: s, sem: make(chan struct{}, max), done: make(chan struct{}), clients: map[netip.Addr]int{}}
}

func (l *guardListener) Accept() (net.Conn, error) {
	for {
		select {
		case l.sem <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.sem
			return nil, err
		}
		cfg := l.s.opt.Config()
		client, limited := clientKey(c, cfg)
		if limited && !l.enter(client, cfg.Limits.MaxSessionsPerClient) {
			<-l.sem
			l.s.diag.Debug("SMTP client over limits.max_sessions_per_client", "client", c.RemoteAddr().String())
			l.refuse(c)
			continue
		}
		release := func() {
			if limited {
				l.leave(client)
			}
			<-l.sem
		}
		return &guardConn{Conn: c, hostname: l.s.hostname, idle: cfg.Limits.IdleTimeout, junkMax: cfg.Limits.JunkCommands, diag: l.s.diag,
			release: release}, nil
	}
}

// clientKey is what sessions are counted by: the client's address, an
// IPv6 client's /64 (one host may hold all of it); limited is false for
// trusted networks and unknown addresses.
func clientKey(c net.Conn, cfg *config.Config) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}, false
	}
	ip := ap.Addr().Unmap()
	if matchNet(cfg.TrustedNetworks, ip) {
		return ip, false
	}
	if ip.Is6() {
		ip = netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return ip, true
}

func (l *guardListener) enter(client netip.Addr, max int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients[client] >= max {
		return false
	}
	l.clients[client]++
	return true
}

func (l *guardListener) leave(client netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients[client]--; l.clients[client] <= 0 {
		delete(l.clients, client)
	}
}

// refuse answers a connection over the per-client limit and closes it, in
// the accept loop: one short line fits the socket buffer, and no goroutine
// per refused connection lets a connection flood grow memory.
func (l *guardListener) refuse(c net.Conn) {
	if c.SetWriteDeadline(time.Now().Add(time.Second)) == nil {
		_, _ = fmt.Fprintf(c, "421 4.7.0 %s Error: too many connections from your address\r\n", l.s.hostname) // best effort: closed either way
	}
	_ = c.Close()
}

func (l *guardListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}
