// Package signtest makes throwaway OpenPGP signing keys for tests.
package signtest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Key writes a fresh Ed25519 key pair into a test directory: the armoured
// secret key (protected by passphrase when it is not empty, mode 0600) and
// the binary public key (gpgv reads it as a keyring). It returns their
// paths.
func Key(t testing.TB, passphrase string) (secret, public string) {
	t.Helper()
	e, err := openpgp.NewEntity("ksmg test signer", "throwaway", "signer@ksmg.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	if err := e.Serialize(&pub); err != nil {
		t.Fatal(err)
	}
	if passphrase != "" {
		if err := e.EncryptPrivateKeys([]byte(passphrase), nil); err != nil {
			t.Fatal(err)
		}
	}
	var sec bytes.Buffer
	w, err := armor.Encode(&sec, openpgp.PrivateKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SerializePrivateWithoutSigning(w, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	secret, public = filepath.Join(dir, "signer.asc"), filepath.Join(dir, "signer.pub.gpg")
	if err := os.WriteFile(secret, sec.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(public, pub.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return secret, public
}
