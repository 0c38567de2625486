// TLS for the fake server: STARTTLS (RFC 3207) and implicit TLS on a second
// listener. TLS terminates below the connection guard, which goes on
// reading the dialogue in plaintext; the SMTP library never knows.

package fakesmtp

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
	"math/big"
	"net"
	"os"
	"time"
)

// tlsMaterial is the server's certificate and the PEM of the CA that
// signed it, for clients to trust.
type tlsMaterial struct {
	config *tls.Config
	caPEM  []byte
}

// loadTLS reads the certificate Options name, or makes a throwaway CA and
// a leaf it signs for the loopback names and the server's hostname.
func loadTLS(o *Options) (*tlsMaterial, error) {
	var cert tls.Certificate
	var caPEM []byte
	switch {
	case o.TLSCertFile != "" || o.TLSKeyFile != "":
		if o.TLSCertFile == "" || o.TLSKeyFile == "" {
			return nil, errors.New("TLSCertFile and TLSKeyFile go together: set both, or neither for a generated certificate")
		}
		var err error
		if cert, err = tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile); err != nil {
			return nil, fmt.Errorf("loading the TLS certificate %s and key %s: %w", o.TLSCertFile, o.TLSKeyFile, err)
		}
		// The last certificate of the chain is the nearest thing to a CA
		// the file holds (the certificate itself when self-signed).
		last := cert.Certificate[len(cert.Certificate)-1]
		caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: last})
	default:
		var err error
		if cert, caPEM, err = generateCert(o.Hostname, o.Addr, o.TLSAddr); err != nil {
			return nil, fmt.Errorf("generating a TLS certificate: %w", err)
		}
	}
	if o.TLSCAFile != "" {
		if err := os.WriteFile(o.TLSCAFile, caPEM, 0o644); err != nil {
			return nil, fmt.Errorf("writing the TLS CA to %s: %w (choose another TLSCAFile)", o.TLSCAFile, err)
		}
	}
	return &tlsMaterial{
		config: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		caPEM:  caPEM,
	}, nil
}

// generateCert makes a CA valid for a year and a leaf it signs for
// 127.0.0.1, ::1, localhost, hostname and the hosts of the listen
// addresses. The CA's key is thrown away: nothing else can be signed.
func generateCert(hostname string, addrs ...string) (tls.Certificate, []byte, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	ca := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "onecopy fakesmtp throwaway CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		return tls.Certificate{}, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hostname},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", hostname},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, a := range addrs {
		if h, _, err := net.SplitHostPort(a); err == nil {
			if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
				leaf.IPAddresses = append(leaf.IPAddresses, ip)
			} else if ip == nil && h != "" && h != "localhost" && h != hostname {
				leaf.DNSNames = append(leaf.DNSNames, h)
			}
		}
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	cert := tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: key}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}

// startTLS handles STARTTLS: 220, the handshake on the raw connection,
// and the session starts over as after the greeting (RFC 3207 4.2), the
// library's envelope reset with it.
func (s *session) startTLS(arg string) (bool, error) {
	switch {
	case s.srv.tls == nil || s.srv.opts.DisableSTARTTLS:
		return false, s.reply("502 5.5.1 Command not implemented")
	case arg != "":
		return false, s.reply("501 5.5.4 Syntax: STARTTLS takes no parameters")
	case s.tls:
		return false, s.reply("503 5.5.1 TLS already active")
	case s.rpos < s.rend:
		// Plaintext sent behind STARTTLS would run as if it came over TLS
		// (CVE-2011-0411 and its kin): refuse it loudly.
		s.srv.protocolError(s, "starttls_injection", "")
		return false, s.abort("554 5.5.1 Commands pipelined after STARTTLS (possible command injection), closing", EndProtocol, "starttls_injection")
	}
	if err := s.reply("220 2.0.0 Ready to start TLS"); err != nil {
		return false, err
	}
	if err := s.flush(); err != nil {
		return false, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false, closedError{"closed before STARTTLS"}
	}
	s.raw = tls.Server(s.raw, s.srv.tls.config)
	s.handshaking = true // from here stop must not write: see handshake
	s.mu.Unlock()
	s.tls = true
	if err := s.handshake(); err != nil {
		return false, err
	}
	s.resetTx()
	s.authed, s.user, s.forgive = false, "", 0
	s.setMoment(MomentGreeting)
	s.needReset = true
	return true, nil
}

// handshake runs the TLS handshake of s.raw (a *tls.Conn, set up with
// s.handshaking true) under the idle timeout. Until it is done stop closes
// the connection instead of writing its 421: a write would start a
// handshake of its own and wait for the client under the session's lock.
// A failure ends the session: nothing after it can be read.
func (s *session) handshake() error {
	tc := s.raw.(*tls.Conn)
	tc.SetDeadline(s.started.Add(s.elapsed() + s.srv.opts.IdleTimeout))
	err := tc.HandshakeContext(s.ctx)
	tc.SetDeadline(time.Time{})
	s.mu.Lock()
	s.handshaking = false
	s.rdl, s.wdl = 0, 0
	s.mu.Unlock()
	s.now = s.elapsed()
	if err != nil {
		s.srv.protocolError(s, "tls_handshake", err.Error())
		s.end(EndProtocol, "")
		s.closeRaw()
		return closedError{"TLS handshake failed: " + err.Error()}
	}
	return nil
}
