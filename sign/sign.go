// Package sign signs and verifies the build's artifacts: SHA256SUMS (the
// format of sha256sum, over every artifact in the output directory) and a
// detached, ASCII-armoured OpenPGP signature of it, SHA256SUMS.asc.
//
// OpenPGP rather than an SSH signature: it is what Debian and most vendors
// publish image checksums with (`gpgv --keyring KEY SHA256SUMS.asc
// SHA256SUMS` checks ours too), keys may carry a passphrase and an expiry,
// and github.com/ProtonMail/go-crypto, the maintained fork of the
// deprecated golang.org/x/crypto/openpgp, was already in our module graph
// (through nfpm). The tests check our signatures with GnuPG's gpgv and
// GnuPG's signatures with our verifier.
//
// The signing key is read from a file (armoured or binary transferable
// secret key); a passphrase, when the key has one, is passed in by the
// caller (an environment variable or a file, never a command-line flag).
package sign

import (
	"bufio"
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/ksmg-appliance/ksmg/internal/atomicfile"
)

// File names in the output directory.
const (
	SumsName      = "SHA256SUMS"
	SignatureName = "SHA256SUMS.asc"
)

// Signer holds an unlocked signing key.
type Signer struct {
	entity *openpgp.Entity
}

// ErrPassphraseNeeded: the key is protected and no passphrase was given.
var ErrPassphraseNeeded = errors.New("the key is protected by a passphrase and none was given")

// LoadSigner reads a secret key from path and unlocks it with passphrase
// (nil for a key without one). Like ssh, it refuses a key file that group
// or others may read or write.
func LoadSigner(path string, passphrase []byte) (*Signer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	keys, err := readKeys(data)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	if len(keys) != 1 {
		return nil, fmt.Errorf("signing key %s: holds %d keys, want exactly one", path, len(keys))
	}
	e := keys[0]
	if e.PrivateKey == nil {
		return nil, fmt.Errorf("signing key %s: a public key; the secret key is needed to sign", path)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s: mode %04o lets others read it; chmod 600 it", path, st.Mode().Perm())
	}
	if e.PrivateKey.Encrypted || anySubkeyEncrypted(e) {
		if len(passphrase) == 0 {
			return nil, fmt.Errorf("signing key %s: %w", path, ErrPassphraseNeeded)
		}
		if err := e.DecryptPrivateKeys(passphrase); err != nil {
			return nil, fmt.Errorf("signing key %s: wrong passphrase or damaged key: %w", path, err)
		}
	}
	k, ok := e.SigningKey(time.Now())
	if !ok || k.PrivateKey == nil {
		return nil, fmt.Errorf("signing key %s: no usable signing key (expired, revoked or not signing-capable)", path)
	}
	return &Signer{entity: e}, nil
}

func anySubkeyEncrypted(e *openpgp.Entity) bool {
	for _, s := range e.Subkeys {
		if s.PrivateKey != nil && s.PrivateKey.Encrypted {
			return true
		}
	}
	return false
}

// Fingerprint of the signer's primary key, upper-case hex as gpg prints it.
func (s *Signer) Fingerprint() string { return fingerprint(s.entity) }

func fingerprint(e *openpgp.Entity) string {
	return strings.ToUpper(fmt.Sprintf("%x", e.PrimaryKey.Fingerprint))
}

// Sign writes an armoured detached signature of message (SHA-512).
func (s *Signer) Sign(w io.Writer, message io.Reader) error {
	return openpgp.ArmoredDetachSign(w, s.entity, message, &packet.Config{DefaultHash: crypto.SHA512})
}

// KeyRing holds the public keys a verification accepts.
type KeyRing struct {
	keys openpgp.EntityList
}

// LoadKeyRing reads one or more public keys (armoured or binary; a secret
// key file works too, only its public part is used).
func LoadKeyRing(path string) (*KeyRing, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("verification key: %w", err)
	}
	keys, err := readKeys(data)
	if err != nil {
		return nil, fmt.Errorf("verification key %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("verification key %s: no key in the file", path)
	}
	return &KeyRing{keys: keys}, nil
}

// Check verifies an armoured detached signature of message and returns the
// signer's fingerprint. Weak hashes (MD5, SHA-1, RIPEMD-160) are refused.
func (r *KeyRing) Check(message, signature io.Reader) (string, error) {
	block, err := armor.Decode(signature)
	if err != nil {
		return "", fmt.Errorf("not an armoured OpenPGP signature: %w", err)
	}
	if block.Type != openpgp.SignatureType {
		return "", fmt.Errorf("armour block is %q, want %q", block.Type, openpgp.SignatureType)
	}
	sig, signer, err := openpgp.VerifyDetachedSignatureAndHash(r.keys, message, block.Body,
		[]crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512, crypto.SHA3_256, crypto.SHA3_512}, nil)
	if err != nil {
		return "", err
	}
	if sig.SigType != packet.SigTypeBinary {
		return "", fmt.Errorf("signature type %d, want a binary-document signature", sig.SigType)
	}
	return fingerprint(signer), nil
}

// readKeys accepts armoured or binary keys.
func readKeys(data []byte) (openpgp.EntityList, error) {
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN PGP")) {
		return openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	}
	return openpgp.ReadKeyRing(bytes.NewReader(data))
}

// Sum is one line of SHA256SUMS.
type Sum struct {
	Name   string // a file name in the same directory
	SHA256 string // lower-case hex
}

// FormatSums writes sha256sum's text format, sorted by name.
func FormatSums(sums []Sum) []byte {
	s := append([]Sum(nil), sums...)
	sort.Slice(s, func(i, j int) bool { return s[i].Name < s[j].Name })
	var b bytes.Buffer
	for _, x := range s {
		fmt.Fprintf(&b, "%s  %s\n", x.SHA256, x.Name)
	}
	return b.Bytes()
}

// ParseSums reads sha256sum's format ("HEX  NAME" or "HEX *NAME"). Names
// must be plain file names (no directories), each listed once.
func ParseSums(data []byte) ([]Sum, error) {
	var out []Sum
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		hash, name, ok := strings.Cut(line, " ")
		if !ok || len(hash) != 64 || strings.Trim(strings.ToLower(hash), "0123456789abcdef") != "" || len(name) < 2 || (name[0] != ' ' && name[0] != '*') {
			return nil, fmt.Errorf("%s line %d: want \"<64 hex digits>  <file name>\"", SumsName, n)
		}
		name = name[1:]
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
			return nil, fmt.Errorf("%s line %d: %q is not a plain file name", SumsName, n, name)
		}
		if seen[name] {
			return nil, fmt.Errorf("%s line %d: %s listed twice", SumsName, n, name)
		}
		seen[name] = true
		out = append(out, Sum{Name: name, SHA256: strings.ToLower(hash)})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s lists no file", SumsName)
	}
	return out, nil
}

// PassphraseEnv is the environment variable a signing key's passphrase may
// come from (the other way is a file, see ReadPassphrase).
const PassphraseEnv = "KSMG_SIGN_PASSPHRASE"

// ReadPassphrase returns the passphrase from file when one is named (its
// first line), else from $KSMG_SIGN_PASSPHRASE; nil when neither is set.
func ReadPassphrase(file string) ([]byte, error) {
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("passphrase file: %w", err)
		}
		line, _, _ := bytes.Cut(data, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			return nil, fmt.Errorf("passphrase file %s: first line is empty", file)
		}
		return line, nil
	}
	if v := os.Getenv(PassphraseEnv); v != "" {
		return []byte(v), nil
	}
	return nil, nil
}

// WriteSums publishes sums in dir: with a signer, SHA256SUMS.asc first
// (signing the exact bytes of the SHA256SUMS to come), then SHA256SUMS,
// each written atomically; SHA256SUMS last, as the mark of a complete
// output directory. Without a signer a signature an earlier build left is
// removed, so it cannot stand next to checksums it did not sign.
func WriteSums(dir string, sums []Sum, s *Signer) error {
	data := FormatSums(sums)
	sigPath := filepath.Join(dir, SignatureName)
	if s != nil {
		var sig bytes.Buffer
		if err := s.Sign(&sig, bytes.NewReader(data)); err != nil {
			return fmt.Errorf("sign %s: %w", SumsName, err)
		}
		if err := atomicfile.WriteFile(sigPath, sig.Bytes(), 0o644); err != nil {
			return err
		}
	} else if err := os.Remove(sigPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove a stale %s: %w", SignatureName, err)
	}
	return atomicfile.WriteFile(filepath.Join(dir, SumsName), data, 0o644)
}
