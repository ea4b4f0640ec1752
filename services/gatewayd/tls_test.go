//go:build unix

package gatewayd_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCert makes a self-signed certificate for 127.0.0.1 and writes its PEM
// to dir/ca.pem (usable as SSL_CERT_FILE).
func testCert(t *testing.T, dir string) (*tls.Config, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, p
}

// TestNextHopTLS: opportunistic encrypts when offered and falls back to
// plain text when not; required refuses a next hop without STARTTLS or
// with an untrusted certificate (the mail stays queued) and delivers when
// the certificate verifies against the configured CA (SSL_CERT_FILE).
func TestNextHopTLS(t *testing.T) {
	dir := t.TempDir()
	tlsCfg, ca := testCert(t, dir)
	withTLS := &sink{refuse: map[string]bool{}, tls: tlsCfg}
	withTLS.start(t, "")
	plain := newSink(t, "")
	required := &sink{refuse: map[string]bool{}, tls: tlsCfg}
	required.start(t, "")
	reqPlain := newSink(t, "")

	cfg := fmt.Sprintf(`
protected_domains:
  - {name: opp-tls.test, route: %q, tls: opportunistic}
  - {name: opp-plain.test, route: %q, tls: opportunistic}
  - {name: req-tls.test, route: %q, tls: required}
  - {name: req-plain.test, route: %q, tls: required}
relay: {retry_initial: 300ms, retry_max: 600ms}
`, withTLS.addr, plain.addr, required.addr, reqPlain.addr)

	// First run: the CA is not trusted.
	g := newGW(t, cfg)
	g.start()
	for _, d := range []string{"opp-tls.test", "opp-plain.test", "req-tls.test", "req-plain.test"} {
		if err := trySend(g.addr(), "a@s.test", "x@"+d); err != nil {
			t.Fatalf("send to %s: %v", d, err)
		}
	}
	waitFor(t, 20*time.Second, "opportunistic deliveries", func() bool {
		return len(withTLS.messages()) == 1 && len(plain.messages()) == 1
	})
	if !withTLS.messages()[0].TLS || plain.messages()[0].TLS {
		t.Errorf("opportunistic: TLS used %v (offered) and %v (not offered); want true, false", withTLS.messages()[0].TLS, plain.messages()[0].TLS)
	}
	waitFor(t, 20*time.Second, "two deferrals per required route", func() bool {
		ev := g.read("log/ksmg-messages")
		return strings.Count(ev, `"route":"`+required.addr+`"`) >= 2 && strings.Count(ev, `"route":"`+reqPlain.addr+`"`) >= 2
	})
	if len(required.messages())+len(reqPlain.messages()) != 0 {
		t.Fatal("required TLS: delivered without a verified TLS session")
	}
	ev := g.read("log/ksmg-messages")
	if !strings.Contains(ev, "does not offer STARTTLS and the route requires TLS") || !strings.Contains(ev, "certificate") {
		t.Errorf("deferral reasons not logged:\n%s", ev)
	}
	if err := g.stop(); err != nil {
		t.Fatal(err)
	}

	// Restart trusting the CA: the queued message to req-tls.test goes out
	// encrypted; req-plain.test stays queued.
	g.env = []string{"SSL_CERT_FILE=" + ca}
	g.start()
	defer g.shutdown()
	waitFor(t, 20*time.Second, "the required-TLS delivery", func() bool { return len(required.messages()) == 1 })
	if !required.messages()[0].TLS {
		t.Error("required route delivered without TLS")
	}
	time.Sleep(time.Second)
	if len(reqPlain.messages()) != 0 || queued(t, g) != 1 {
		t.Errorf("plain next hop with tls: required got %d messages; queue holds %d (want 0, 1)", len(reqPlain.messages()), queued(t, g))
	}
}
