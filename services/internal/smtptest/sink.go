// Package smtptest holds the raw SMTP pieces the gateway's tests share.
//
// Sink is a next hop that keeps the raw bytes: a small SMTP server that
// answers like a strict MTA (lines end at CRLF, the data at CRLF.CRLF) and
// records every byte it received, every command line and every message
// exactly as it came over the wire (still dot-stuffed). The tests of the
// relay and of the daemon check on it what a lax next hop would see. A
// go-smtp server cannot serve here: it parses the stream and hides exactly
// the bytes these tests are about.
//
// Client is the other end: a scripted client that sends raw bytes
// (hostile ones too) and reads replies line by line.
package smtptest

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"sync"
	"testing"
)

// Txn is one mail transaction as received.
type Txn struct {
	Mail  string   // the MAIL command line, without CRLF
	Rcpts []string // the accepted RCPT command lines
	Data  []byte   // from after 354 up to (not including) CRLF.CRLF, as sent
}

// Sink is a listening recording next hop.
type Sink struct {
	Addr string

	mu     sync.Mutex
	raw    bytes.Buffer
	txns   []Txn
	reply  func(rcpt string) string // nil or "": 250
	ln     net.Listener
	closed bool
}

// HangUp, returned by a reply function, closes the connection instead.
const HangUp = "hang up"

// StartSink listens on a free loopback port until the test ends. reply, when
// set, gives the reply line for a RCPT command line (e.g. "550 5.1.1 No
// such user"), "" for 250, or HangUp.
func StartSink(t testing.TB, reply func(rcptLine string) string) *Sink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Sink{Addr: ln.Addr().String(), ln: ln, reply: reply}
	go s.accept()
	t.Cleanup(s.Close)
	return s
}

// Close stops listening.
func (s *Sink) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.ln.Close()
}

// Raw is every byte received so far, over all connections.
func (s *Sink) Raw() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.raw.Bytes())
}

// Txns are the transactions completed with a 250 after the data.
func (s *Sink) Txns() []Txn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Txn(nil), s.txns...)
}

func (s *Sink) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.serve(c)
	}
}

type recorder struct {
	s *Sink
	c net.Conn
}

func (r recorder) Read(p []byte) (int, error) {
	n, err := r.c.Read(p)
	r.s.mu.Lock()
	r.s.raw.Write(p[:n])
	r.s.mu.Unlock()
	return n, err
}

func (s *Sink) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(recorder{s, c})
	w := func(line string) { _, _ = c.Write([]byte(line + "\r\n")) } // a gone client shows at the next read
	w("220 sink.test ESMTP")
	var cur Txn
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\r\n")
		verb := strings.ToUpper(line)
		if len(verb) > 4 {
			verb = verb[:4]
		}
		switch verb {
		case "EHLO", "HELO":
			w("250-sink.test\r\n250 PIPELINING")
		case "MAIL":
			cur = Txn{Mail: line}
			w("250 2.1.0 Ok")
		case "RCPT":
			rep := ""
			if s.reply != nil {
				rep = s.reply(line)
			}
			if rep == HangUp {
				return
			}
			if rep == "" {
				cur.Rcpts = append(cur.Rcpts, line)
				rep = "250 2.1.5 Ok"
			}
			w(rep)
		case "DATA":
			if len(cur.Rcpts) == 0 {
				w("554 5.5.1 No valid recipients")
				continue
			}
			w("354 End data with <CR><LF>.<CR><LF>")
			var data []byte
			for !bytes.HasSuffix(data, []byte("\r\n.\r\n")) && !bytes.Equal(data, []byte(".\r\n")) {
				b, err := br.ReadByte()
				if err != nil {
					return
				}
				data = append(data, b)
			}
			cur.Data = bytes.TrimSuffix(data, []byte(".\r\n"))
			s.mu.Lock()
			s.txns = append(s.txns, cur)
			s.mu.Unlock()
			cur = Txn{}
			w("250 2.0.0 Ok: queued")
		case "RSET":
			cur = Txn{}
			w("250 2.0.0 Ok")
		case "NOOP":
			w("250 2.0.0 Ok")
		case "QUIT":
			w("221 2.0.0 Bye")
			return
		default:
			w("502 5.5.2 Error: command not recognized")
		}
	}
}

// BareLineEnds reports the offsets of every CR not followed by LF and every
// LF not preceded by CR in b: the bytes that a next hop ending lines at a
// bare CR or a bare LF would read differently from a strict one.
func BareLineEnds(b []byte) []int {
	var out []int
	for i, c := range b {
		switch {
		case c == '\r' && (i+1 >= len(b) || b[i+1] != '\n'):
			out = append(out, i)
		case c == '\n' && (i == 0 || b[i-1] != '\r'):
			out = append(out, i)
		}
	}
	return out
}
