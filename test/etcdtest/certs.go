package etcdtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CertFiles are the PEM files GenerateCerts writes, laid out like a small
// kops PKI: one CA, one server cert (also used between peers) and one client
// cert that etcd accepts because the same CA signed it.
type CertFiles struct {
	CACert, CAKey         string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
}

// GenerateCerts writes a fresh CA and a server and client certificate signed
// by it into dir. hosts become the server cert's SANs (IPs as IP SANs, the
// rest as DNS names); with none given it uses 127.0.0.1 and localhost.
// ECDSA P-256 keeps generation fast enough to do per test.
func GenerateCerts(dir string, hosts ...string) (CertFiles, error) {
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1", "localhost"}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return CertFiles{}, err
	}
	files := CertFiles{
		CACert: filepath.Join(dir, "ca.crt"), CAKey: filepath.Join(dir, "ca.key"),
		ServerCert: filepath.Join(dir, "server.crt"), ServerKey: filepath.Join(dir, "server.key"),
		ClientCert: filepath.Join(dir, "client.crt"), ClientKey: filepath.Join(dir, "client.key"),
	}
	notBefore := time.Now().Add(-time.Hour) // tolerate small clock skew with containers
	notAfter := notBefore.Add(5 * 365 * 24 * time.Hour)

	ca := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "etcdtest-ca"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caKey, caDER, err := issue(ca, nil, nil)
	if err != nil {
		return CertFiles{}, err
	}
	if err := writePair(files.CACert, files.CAKey, caDER, caKey); err != nil {
		return CertFiles{}, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return CertFiles{}, err
	}

	// The server cert also authenticates this member to its peers, so it
	// carries client auth too (as etcd-manager's peer certs do).
	server := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "etcdtest-server"},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			server.IPAddresses = append(server.IPAddresses, ip)
		} else {
			server.DNSNames = append(server.DNSNames, h)
		}
	}
	key, der, err := issue(server, caCert, caKey)
	if err != nil {
		return CertFiles{}, err
	}
	if err := writePair(files.ServerCert, files.ServerKey, der, key); err != nil {
		return CertFiles{}, err
	}

	client := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kopsdr"},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	key, der, err = issue(client, caCert, caKey)
	if err != nil {
		return CertFiles{}, err
	}
	if err := writePair(files.ClientCert, files.ClientKey, der, key); err != nil {
		return CertFiles{}, err
	}
	return files, nil
}

// issue creates a key for tmpl and signs it with parent (self-signed when
// parent is nil).
func issue(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign %s: %w", tmpl.Subject.CommonName, err)
	}
	return key, der, nil
}

func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
}
