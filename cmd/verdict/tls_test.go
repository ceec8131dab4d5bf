package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// selfSigned writes a certificate for 127.0.0.1 named cn and its key.
func selfSigned(t *testing.T, dir, cn string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	cert, _ = x509.ParseCertificate(der)
	return certFile, keyFile, cert
}

// TestTLS serves both listeners over TLS, refuses TLS 1.1, and picks up a
// new certificate on SIGHUP.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, first := selfSigned(t, dir, "first")
	p := execSelf(t, nil, "serve --demo --addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --tls-cert "+certFile+" --tls-key "+keyFile)
	served := func(cfg *tls.Config, url string) (*x509.Certificate, error) {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}
		defer client.CloseIdleConnections()
		resp, err := client.Get(strings.Replace(url, "http://", "https://", 1) + "/healthz")
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0], nil
	}
	insecure := &tls.Config{InsecureSkipVerify: true} // #nosec G402 -- the test checks which certificate is served
	for _, url := range []string{p.base, p.admin} {
		got, err := served(insecure, url)
		if err != nil || !got.Equal(first) {
			t.Fatalf("GET %s over TLS: %v (certificate %v), want the first certificate", url, err, got)
		}
	}
	old := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11} // #nosec G402 -- probing that TLS 1.1 is refused
	if _, err := served(old, p.base); err == nil {
		t.Errorf("a TLS 1.1 client was served, want the handshake refused")
	}

	_, _, second := selfSigned(t, dir, "second") // overwrites cert.pem and key.pem
	if err := p.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	until(t, "the new certificate is served", 10*time.Second, func() bool {
		got, err := served(insecure, p.base)
		return err == nil && got.Equal(second)
	})
	p.stop(t)
}

// TestSlowlorisCutOff opens a connection and sends a request's headers
// never finished: the server closes it after its header timeout (5 s)
// instead of holding it open.
func TestSlowlorisCutOff(t *testing.T) {
	t.Parallel()
	base, _, stop := startServe(t)
	defer stop()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("POST /decide HTTP/1.1\r\nHost: verdict\r\nX-Slow: ")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	buf := make([]byte, 512)
	_, err = conn.Read(buf) // the server answers 408 and closes, or just closes
	for err == nil {
		_, err = conn.Read(buf)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the connection was still open after 15 s: no header timeout")
	}
	if took := time.Since(start); took < readHeaderTimeout-time.Second || took > readHeaderTimeout+3*time.Second {
		t.Errorf("the connection closed after %v, want about the %v header timeout", took, readHeaderTimeout)
	}
}
