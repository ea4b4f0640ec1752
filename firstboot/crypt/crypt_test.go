package crypt

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// Hashes may also come in as ksmg.admin.password_hash in SHA-512 crypt:
// Verify must honour them. Vectors from the specification ("Unix crypt
// using SHA-256 and SHA-512", U. Drepper), SHA-512 section.
func TestSpecVectors(t *testing.T) {
	tests := []struct{ setting, pw, want string }{
		{"$6$saltstring", "Hello world!",
			"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
		{"$6$rounds=10000$saltstringsaltstring", "Hello world!",
			"$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
		{"$6$rounds=5000$toolongsaltstring", "This is just a test",
			"$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"},
		{"$6$rounds=1400$anotherlongsaltstring", "a very much longer text to encrypt.  This one even stretches over morethan one line.",
			"$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1"},
		{"$6$rounds=77777$short", "we have a short salt string but not a short password",
			"$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0"},
		{"$6$rounds=123456$asaltof16chars..", "a short string",
			"$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1"},
		// The spec's rounds=10 vector is left out: libxcrypt refuses rounds
		// below 1000 instead of raising them.
	}
	for _, tc := range tests {
		got, err := Crypt(tc.pw, tc.setting)
		if err != nil || got != tc.want {
			t.Errorf("Crypt(%q, %q) = %q, %v; want %q", tc.pw, tc.setting, got, err, tc.want)
		}
	}
}

// TestOpenSSLPeer compares against OpenSSL's independent implementation.
func TestOpenSSLPeer(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("openssl is needed as the reference implementation: %v", err)
	}
	for _, tc := range []struct{ pw, salt string }{
		{"Correct-Horse-9", "abcdefgh"},
		{strings.Repeat("long password ", 10), "0123456789ABCDEF"},
		{"ěščřžýáíé Ünïcødé", "./x"},
		{"p", "s"},
	} {
		out, err := exec.Command("openssl", "passwd", "-6", "-salt", tc.salt, tc.pw).Output()
		if err != nil {
			t.Fatalf("openssl passwd: %v", err)
		}
		want := strings.TrimSpace(string(out))
		got, err := Crypt(tc.pw, "$6$"+tc.salt)
		if err != nil || got != want {
			t.Errorf("Crypt(%q) = %q, openssl = %q", tc.salt, got, want)
		}
	}
}

func TestHashVerify(t *testing.T) {
	h, err := Hash("Correct-Horse-9")
	if err != nil {
		t.Fatal(err)
	}
	// $y$, libxcrypt's default parameters (j9T: N=4096, r=32: 16 MiB),
	// 22 characters of salt (16 random bytes), 43 of hash.
	if !regexp.MustCompile(`^\$y\$j9T\$[./0-9A-Za-z]{22}\$[./0-9A-Za-z]{43}$`).MatchString(h) {
		t.Fatalf("unexpected hash shape %q", h)
	}
	if !Verify("Correct-Horse-9", h) || Verify("correct-horse-9", h) || Verify("Correct-Horse-9", h[:len(h)-1]+"x") {
		t.Fatal("Verify does not tell right from wrong")
	}
	h2, _ := Hash("Correct-Horse-9")
	if h == h2 {
		t.Fatal("two hashes share a salt")
	}
	if _, err := Crypt("x", "$0$nonsense"); err == nil {
		t.Fatal("an unknown method was accepted")
	}
	if _, err := Hash("a\x00b"); err == nil {
		t.Fatal("a password with NUL was hashed (C would cut it short)")
	}
}

// TestPerlPeer: Perl's crypt(), another caller of the same crypt(3),
// computes the same yescrypt hash from our setting, for passwords with
// non-ASCII bytes too (the cgo path must pass them unchanged).
func TestPerlPeer(t *testing.T) {
	if _, err := exec.LookPath("perl"); err != nil {
		t.Fatalf("perl is needed as the peer: %v", err)
	}
	for _, pw := range []string{"Correct-Horse-9", "ěščřžýáíé Ünïcødé", strings.Repeat("x", 256)} {
		h, err := Hash(pw)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("perl", "-e", `chomp(my $pw = <STDIN>); print crypt($pw, $ARGV[0])`, h)
		cmd.Stdin = strings.NewReader(pw + "\n")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("perl: %v", err)
		}
		if string(out) != h {
			t.Errorf("perl crypt = %q, Hash = %q", out, h)
		}
	}
}
