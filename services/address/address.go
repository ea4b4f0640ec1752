// Package address checks and renders SMTP envelope addresses (RFC 5321
// §4.1.2) as the gateway stores them: the mailbox as go-smtp hands it over,
// with a quoted local part already unquoted ("john doe@example.com" for
// <"john doe"@example.com>). The domain never contains '@' (Check refuses
// it), so the last '@' separates the two parts unambiguously.
//
// Hand-written: net/mail parses RFC 5322 header addresses (comments,
// folding, obsolete forms) and renders them for headers, not the RFC 5321
// Mailbox grammar the envelope uses.
package address

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Split returns the local part and the domain of a mailbox.
func Split(a string) (local, domain string) {
	i := strings.LastIndexByte(a, '@')
	if i < 0 {
		return a, ""
	}
	return a[:i], a[i+1:]
}

// Domain is the lower-cased domain of a mailbox.
func Domain(a string) string {
	_, d := Split(a)
	return strings.ToLower(d)
}

// Check reports why a mailbox cannot be written on the wire as RFC 5321
// requires, or nil. The local part may hold any printable US-ASCII
// character (the quoted-string form carries spaces, '@', '"' and '\');
// control characters (a bare CR or LF would end the command line early),
// 8-bit bytes (SMTPUTF8 is not offered) and an empty local part cannot be
// written. The domain must be a host name (letters, digits, '-', and '_'
// which real host names carry) or an address literal.
func Check(a string) error {
	local, domain := Split(a)
	if !strings.Contains(a, "@") {
		return errors.New("no domain")
	}
	if local == "" {
		return errors.New("empty local part")
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("local part holds the byte %#02x, which cannot be sent in SMTP", c)
		}
	}
	return checkDomain(domain)
}

func checkDomain(d string) error {
	if d == "" {
		return errors.New("empty domain")
	}
	if strings.HasPrefix(d, "[") {
		return checkLiteral(d)
	}
	if len(d) > 255 {
		return errors.New("domain longer than 255 octets")
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("domain %q: empty or over-long label", d)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
				(c == '-' || c == '_') && i > 0 && i < len(label)-1
			if !ok {
				return fmt.Errorf("domain %q: %q is not allowed there", d, c)
			}
		}
	}
	return nil
}

// checkLiteral accepts [IPv4] and [IPv6:...] (RFC 5321 §4.1.3).
func checkLiteral(d string) error {
	if !strings.HasSuffix(d, "]") {
		return fmt.Errorf("address literal %q: no closing ']'", d)
	}
	in := d[1 : len(d)-1]
	if v6, ok := strings.CutPrefix(in, "IPv6:"); ok {
		if a, err := netip.ParseAddr(v6); err == nil && a.Is6() {
			return nil
		}
	} else if a, err := netip.ParseAddr(in); err == nil && a.Is4() {
		return nil
	}
	return fmt.Errorf("address literal %q: not an IPv4 or IPv6 address", d)
}

// Wire renders a mailbox (that passed Check) for MAIL FROM, RCPT TO and
// headers: the local part as a Dot-string where it is one, else as a
// Quoted-string with '"' and '\' escaped (RFC 5321 §4.1.2). "" (the null
// sender) stays "".
func Wire(a string) string {
	if a == "" {
		return ""
	}
	local, domain := Split(a)
	if !strings.Contains(a, "@") || dotString(local) {
		return a
	}
	var b strings.Builder
	b.Grow(len(a) + 4)
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if c := local[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteString(`"@`)
	b.WriteString(domain)
	return b.String()
}

// dotString: Atom *("." Atom), Atom = 1*atext.
func dotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '.' && !atext(c) {
			return false
		}
	}
	return true
}

func atext(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}
