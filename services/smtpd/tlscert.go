package smtpd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/ksmg-appliance/ksmg/internal/atomicfile"
)

// LoadOrCreateCert loads the STARTTLS key pair; when both files are missing
// and generate is set it first makes a self-signed ECDSA P-256 pair for
// hostname (10 years). The key is written 0600, the certificate 0640, each
// durably with internal/atomicfile (key first: a certificate never exists
// without its key). generated reports whether it did.
func LoadOrCreateCert(certFile, keyFile, hostname string, generate bool) (cert tls.Certificate, generated bool, err error) {
	_, cerr := os.Stat(certFile)
	_, kerr := os.Stat(keyFile)
	if errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist) {
		if !generate {
			return cert, false, fmt.Errorf("tls: %s and %s are missing and tls.generate is false", certFile, keyFile)
		}
		if err := createSelfSigned(certFile, keyFile, hostname); err != nil {
			return cert, false, err
		}
		generated = true
	}
	cert, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return cert, generated, fmt.Errorf("tls: load %s / %s: %w", certFile, keyFile, err)
	}
	return cert, generated, nil
}

func createSelfSigned(certFile, keyFile, hostname string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("tls: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("tls: serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hostname, Organization: []string{"ksmg-gatewayd self-signed"}},
		DNSNames:              []string{hostname},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("tls: create certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("tls: encode key: %w", err)
	}
	if err := writeAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return writeAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o640)
}

// writeAtomic creates the directory if needed and writes the file durably
// (temporary name, fsync, mode, rename, directory fsync).
func writeAtomic(p string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	if err := atomicfile.WriteFile(p, data, mode); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	return nil
}
