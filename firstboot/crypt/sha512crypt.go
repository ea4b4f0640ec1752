// Package crypt computes SHA-512 crypt ($6$) password hashes for
// /etc/shadow, per Ulrich Drepper's published "Unix crypt using SHA-256
// and SHA-512" specification.
//
// Why SHA-512 crypt and not yescrypt (Debian 13's default): Debian's
// libxcrypt and pam_unix verify both, but there is no maintained pure-Go
// yescrypt crypt(3) encoder (golang.org/x/crypto has neither; GehirnInc/crypt
// would be a new dependency for ~100 lines), while SHA-512 crypt is short,
// fully specified and has published test vectors; we raise the rounds far
// above the default 5000 to make up for the weaker KDF. The tests check the
// spec's vectors and compare against `openssl passwd -6` as a real peer.
package crypt

import (
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

const (
	// DefaultRounds is what Hash uses: ~0.2-0.4 s on one core, tolerable
	// for a console/SSH login and far costlier to brute force than 5000.
	DefaultRounds = 500000
	minRounds     = 1000
	maxRounds     = 999999999
	specRounds    = 5000 // the spec's default, implied when rounds= is absent
	maxSalt       = 16
	alphabet      = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// Hash returns a $6$ hash of password with a random 16-character salt.
func Hash(password string) (string, error) {
	b := make([]byte, maxSalt)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return Crypt(password, "$6$rounds="+strconv.Itoa(DefaultRounds)+"$"+string(b))
}

// Verify reports whether password matches the $6$ hash.
func Verify(password, hash string) bool {
	got, err := Crypt(password, hash)
	return err == nil && got == hash
}

// Crypt computes crypt(3) for a "$6$[rounds=N$]salt[$...]" setting.
func Crypt(password, setting string) (string, error) {
	if !strings.HasPrefix(setting, "$6$") {
		return "", errors.New("setting must start with $6$")
	}
	rest := setting[3:]
	rounds, custom := specRounds, false
	if strings.HasPrefix(rest, "rounds=") {
		end := strings.IndexByte(rest, '$')
		if end < 0 {
			return "", errors.New("rounds= not followed by $")
		}
		n, err := strconv.ParseUint(rest[len("rounds="):end], 10, 64)
		if err != nil {
			return "", fmt.Errorf("rounds: %w", err)
		}
		rounds, custom = int(min(max(n, minRounds), maxRounds)), true
		rest = rest[end+1:]
	}
	salt := rest
	if i := strings.IndexByte(salt, '$'); i >= 0 {
		salt = salt[:i]
	}
	if len(salt) > maxSalt {
		salt = salt[:maxSalt]
	}
	sum := digest([]byte(password), []byte(salt), rounds)
	var out strings.Builder
	out.WriteString("$6$")
	if custom {
		fmt.Fprintf(&out, "rounds=%d$", rounds)
	}
	out.WriteString(salt)
	out.WriteByte('$')
	out.WriteString(encode(sum))
	return out.String(), nil
}

func digest(pw, salt []byte, rounds int) []byte {
	// Steps refer to the specification's numbered algorithm.
	h := sha512.New()
	h.Write(pw)
	h.Write(salt)
	h.Write(pw)
	b := h.Sum(nil) // digest B

	h.Reset()
	h.Write(pw)
	h.Write(salt)
	n := len(pw)
	for ; n > 64; n -= 64 {
		h.Write(b)
	}
	h.Write(b[:n])
	for n = len(pw); n > 0; n >>= 1 {
		if n&1 != 0 {
			h.Write(b)
		} else {
			h.Write(pw)
		}
	}
	a := h.Sum(nil) // digest A

	h.Reset()
	for range len(pw) {
		h.Write(pw)
	}
	p := repeat(h.Sum(nil), len(pw)) // byte sequence P

	h.Reset()
	for range 16 + int(a[0]) {
		h.Write(salt)
	}
	s := repeat(h.Sum(nil), len(salt)) // byte sequence S

	c := a
	for i := range rounds {
		h.Reset()
		if i&1 != 0 {
			h.Write(p)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(s)
		}
		if i%7 != 0 {
			h.Write(p)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(p)
		}
		c = h.Sum(c[:0])
	}
	return c
}

func repeat(d []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, d[:min(len(d), n-len(out))]...)
	}
	return out
}

// encode is the spec's b64_from_24bit over the SHA-512 byte permutation.
func encode(c []byte) string {
	var sb strings.Builder
	put := func(b2, b1, b0 byte, n int) {
		w := uint(b2)<<16 | uint(b1)<<8 | uint(b0)
		for range n {
			sb.WriteByte(alphabet[w&0x3f])
			w >>= 6
		}
	}
	for i := range 21 {
		// triplets (0,21,42), (22,43,1), (44,2,23), then repeating.
		x, y, z := i, i+21, i+42
		switch i % 3 {
		case 1:
			x, y, z = i+21, i+42, i
		case 2:
			x, y, z = i+42, i, i+21
		}
		put(c[x], c[y], c[z], 4)
	}
	put(0, 0, c[63], 2)
	return sb.String()
}
