package address

import (
	"strings"
	"testing"
)

// Wire keeps the quoting RFC 5321 §4.1.2 requires: a local part that is
// not a Dot-string is sent as a Quoted-string, with '"' and '\' escaped.
func TestWire(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"john.doe@example.com", "john.doe@example.com"},
		{"a+tag!#$%&'*/=?^_`{|}~-@example.com", "a+tag!#$%&'*/=?^_`{|}~-@example.com"},
		{"john doe@example.com", `"john doe"@example.com`},
		{"victim@other.net@example.com", `"victim@other.net"@example.com`},
		{`a"b@example.com`, `"a\"b"@example.com`},
		{`a\b@example.com`, `"a\\b"@example.com`},
		{".lead@example.com", `".lead"@example.com`},
		{"trail.@example.com", `"trail."@example.com`},
		{"two..dots@example.com", `"two..dots"@example.com`},
		{"(comment)@example.com", `"(comment)"@example.com`},
		{"postmaster", "postmaster"},
	} {
		if got := Wire(tc.in); got != tc.want {
			t.Errorf("Wire(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, err string // err: "" = writable, else a part of the error
	}{
		{"a@example.com", ""},
		{"john doe@example.com", ""},
		{"victim@other.net@example.com", ""},
		{"a@[192.0.2.1]", ""},
		{"a@[IPv6:2001:db8::1]", ""},
		{"a@mail_relay.example.com", ""},
		{"x\rRSET@example.com", "0x0d"},
		{"x\nRSET@example.com", "0x0a"},
		{"x\x00@example.com", "0x00"},
		{"caf\xc3\xa9@example.com", "0xc3"},
		{"a@b@c", ""}, // local "a@b", domain "c": as go-smtp never hands it
		{"postmaster", "no domain"},
		{"@example.com", "empty local part"},
		{"a@", "empty domain"},
		{"a@ex ample.com", "not allowed"},
		{"a@example.com.", "empty or over-long label"},
		{"a@-x.example.com", "not allowed"},
		{"a@exa\rmple.com", "not allowed"},
		{"a@[300.1.1.1]", "not an IPv4"},
		{"a@[192.0.2.1", "no closing"},
		{"a@" + strings.Repeat("x", 64) + ".com", "over-long label"},
	} {
		err := Check(tc.in)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("Check(%q) = %v, want %q", tc.in, err, tc.err)
		}
	}
}

func TestSplit(t *testing.T) {
	t.Parallel()
	if l, d := Split("victim@other.net@Example.COM"); l != "victim@other.net" || d != "Example.COM" {
		t.Errorf("Split = %q %q", l, d)
	}
	if d := Domain("a@Example.COM"); d != "example.com" {
		t.Errorf("Domain = %q", d)
	}
}
