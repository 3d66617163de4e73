package desk

import (
	"context"
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

	"wormsink/internal/testutil"
	"wormsink/store/storetest"
)

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestNoticeOverTLS: STARTTLS and SMTPS to aiosmtpd, the server's
// certificate checked.
func TestNoticeOverTLS(t *testing.T) {
	bin := testutil.Need(t, "aiosmtpd")
	dir := t.TempDir()
	cert, key, pool := selfSigned(t, dir)
	for _, mode := range []struct{ scheme, certFlag, keyFlag string }{
		{"smtp", "--tlscert", "--tlskey"},
		{"smtps", "--smtpscert", "--smtpskey"},
	} {
		t.Run(mode.scheme, func(t *testing.T) {
			maildir := filepath.Join(t.TempDir(), "maildir")
			srv := testutil.Daemon{Name: "aiosmtpd",
				Command: func(port int) (string, []string, error) {
					return bin, []string{"-n", "-l", fmt.Sprintf("127.0.0.1:%d", port), mode.certFlag, cert, mode.keyFlag, key,
						"-c", "aiosmtpd.handlers.Mailbox", maildir}, nil
				},
				Ready: func(addr string) error {
					c, err := net.Dial("tcp", addr)
					if err == nil {
						c.Close()
					}
					return err
				},
			}.StartT(t)
			db := storetest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "d.db"))
			st, err := Open(context.Background(), db)
			if err != nil {
				t.Fatal(err)
			}
			contacts, _ := ParseContacts(strings.NewReader("192.0.2.0/24 noc@example.net\n"), "contacts")
			n, err := NewNotifier(NotifierConfig{Store: st, SMTP: mode.scheme + "://" + srv.Addr, Contacts: contacts,
				TLS: &tls.Config{RootCAs: pool}, Backoff: 100 * time.Millisecond, Attempts: 3})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go n.Serve(ctx)
			st.Ingest(ctx, []Line{{"s", "l", 0, evLine(time.Now(), "192.0.2.5", "blaster", "strong", "tcp", "s", "")}})
			c, _ := st.Get(ctx, 1)
			if err := n.Queue(ctx, c); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, 30*time.Second, "delivery over TLS", func() bool {
				c, _ = st.Get(ctx, 1)
				return strings.HasPrefix(c.Notice, "delivered") || strings.HasPrefix(c.Notice, "failed")
			})
			if !strings.HasPrefix(c.Notice, "delivered") {
				t.Fatalf("notice: %s", c.Notice)
			}
			files, _ := filepath.Glob(filepath.Join(maildir, "new", "*"))
			if len(files) != 1 {
				t.Fatalf("%d messages", len(files))
			}
		})
	}
}
