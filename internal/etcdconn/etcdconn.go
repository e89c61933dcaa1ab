// Package etcdconn turns an operator's etcd connection settings into a
// working client. The settings travel through workflow history, so they hold
// only endpoints and file paths on the worker, never key material.
package etcdconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"

	"github.com/kopsdr/kopsdr/internal/inputerr"
)

// DefaultDialTimeout bounds how long New waits for the first endpoint to answer.
const DefaultDialTimeout = 5 * time.Second

// Config says how to reach one etcd cluster (kops: main on :4001, events on :4002).
type Config struct {
	// Endpoints are client URLs, e.g. https://10.0.1.10:4001.
	Endpoints []string `json:"endpoints"`
	// CACert, Cert and Key are PEM file paths on the worker. Paths, not
	// contents, so no credentials end up in workflow history.
	CACert string `json:"cacert,omitempty"`
	Cert   string `json:"cert,omitempty"`
	Key    string `json:"key,omitempty"`
	// DialTimeout bounds connecting; 0 means DefaultDialTimeout.
	DialTimeout time.Duration `json:"-"`
}

// Validate checks the settings without contacting etcd, reading the TLS files
// so that a wrong path or a swapped cert/key is reported as bad input (which
// no retry fixes) rather than as a connection failure.
func (c Config) Validate() error {
	_, err := c.tlsConfig()
	return err
}

// tlsConfig validates c and builds the TLS settings; nil means plain http.
func (c Config) tlsConfig() (*tls.Config, error) {
	if len(c.Endpoints) == 0 {
		return nil, inputerr.New("endpoints", "",
			"give at least one etcd client URL, e.g. https://10.0.1.10:4001 (kops: 4001 for main, 4002 for events)")
	}
	anyTLS := false
	for _, ep := range c.Endpoints {
		secure, err := checkEndpoint(ep)
		if err != nil {
			return nil, err
		}
		anyTLS = anyTLS || secure
	}
	if c.Cert != "" && c.Key == "" {
		return nil, inputerr.New("key", "", "a client cert needs its private key: set key to the PEM key file that belongs to cert "+c.Cert)
	}
	if c.Key != "" && c.Cert == "" {
		return nil, inputerr.New("cert", "", "a client key needs its certificate: set cert to the PEM cert file that belongs to key "+c.Key)
	}
	if !anyTLS && c.CACert == "" && c.Cert == "" {
		return nil, nil
	}

	// MinVersion 1.2 matches what etcd servers accept by default.
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CACert != "" {
		pool, err := loadCAPool(c.CACert)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool // nil RootCAs would mean the system roots
	}
	if c.Cert != "" {
		pair, err := loadKeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// checkEndpoint accepts http(s)://host:port and reports whether it uses TLS.
// The port is required because etcd has no default one and kops uses two.
func checkEndpoint(ep string) (secure bool, err error) {
	fix := "use a client URL like https://10.0.1.10:4001 (scheme http or https, host and port, no path)"
	u, perr := url.Parse(ep)
	if perr != nil {
		return false, inputerr.Wrap(perr, "endpoints", ep, fix)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return false, inputerr.Wrap(fmt.Errorf("scheme %q is not http or https", u.Scheme), "endpoints", ep, fix)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return false, inputerr.Wrap(errors.New("host and port are required"), "endpoints", ep, fix)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return false, inputerr.Wrap(errors.New("unexpected path, query or user info"), "endpoints", ep, fix)
	}
	return u.Scheme == "https", nil
}

func loadCAPool(path string) (*x509.CertPool, error) {
	data, err := readFile("cacert", path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, inputerr.Wrap(errors.New("no PEM certificate found"), "cacert", path,
			"point cacert at the PEM CA certificate that signed the etcd server certs (kops: /etc/kubernetes/pki/kube-apiserver/etcd-ca.crt)")
	}
	return pool, nil
}

// loadKeyPair reads cert and key separately first so the error names the
// file that is actually wrong.
func loadKeyPair(certPath, keyPath string) (tls.Certificate, error) {
	certPEM, err := readFile("cert", certPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	if !hasBlock(certPEM, "CERTIFICATE") {
		return tls.Certificate{}, inputerr.Wrap(errors.New("no PEM certificate found"), "cert", certPath,
			"point cert at the PEM client certificate (a file with BEGIN CERTIFICATE)")
	}
	keyPEM, err := readFile("key", keyPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, inputerr.Wrap(err, "key", keyPath,
			"point key at the PEM private key that belongs to cert "+certPath)
	}
	return pair, nil
}

func readFile(field, path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, inputerr.Wrap(err, field, path, "give the path of a readable PEM file on the worker host")
	}
	return data, nil
}

func hasBlock(data []byte, typ string) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if b.Type == typ {
			return true
		}
	}
}

// New validates c, connects and checks that at least one endpoint answers
// within the dial timeout, so a wrong address fails here with the endpoint in
// the message rather than later inside some RPC. Members that are down do not
// fail New: a backup needs only one healthy member. ctx bounds the check;
// the caller closes the client.
func New(ctx context.Context, c Config) (*clientv3.Client, error) {
	tc, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	timeout := c.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.Endpoints,
		TLS:         tc,
		DialTimeout: timeout,
		// ctx bounds only the connection check below, not the client's
		// life: a client must outlive e.g. a short-deadline setup context.
		Logger: quietLogger(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd endpoints %s: %w", strings.Join(c.Endpoints, ","), err)
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if errs := probeAny(pctx, cli, c.Endpoints); errs != nil {
		cli.Close()
		diagnose(ctx, c.Endpoints, tc, errs)
		return nil, fmt.Errorf("no etcd endpoint answered: %w", errors.Join(errs...))
	}
	return cli, nil
}

// init gives gRPC's default buffer pool (the one its proto codec decodes
// every message with, settable only process-wide and only at init) a 64 KiB
// tier besides its own 256 B, 4, 16, 32 KiB and 1 MiB ones. etcd sends a
// snapshot in 32 KiB chunks, which with their few bytes of framing miss the
// 32 KiB tier, so each took and zeroed a 1 MiB buffer: 32 times the bytes
// cleared, a quarter of the CPU of reading a snapshot (profiled with
// `make bench`). Other messages are unaffected.
func init() {
	p, err := mem.NewBinaryTieredBufferPool(8, 12, 14, 15, 16, 20)
	if err != nil {
		panic(err) // the exponents are constants
	}
	experimental.SetDefaultBufferPool(p)
}

// quietLogger keeps the client's retry chatter out of worker logs; failures
// reach the caller as errors instead.
func quietLogger() *zap.Logger {
	return zap.NewNop()
}

// probeAny asks every endpoint for its status at once and returns nil as
// soon as one answers. When none does, errs[i] says why endpoints[i] failed.
func probeAny(ctx context.Context, cli *clientv3.Client, endpoints []string) (errs []error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(endpoints))
	for i, ep := range endpoints {
		go func() {
			_, err := Status(ctx, cli, ep)
			results <- result{i, err}
		}()
	}
	errs = make([]error, len(endpoints))
	for range endpoints {
		r := <-results
		if r.err == nil {
			return nil
		}
		errs[r.i] = r.err
	}
	return errs
}

// Status asks exactly one endpoint for its status. Unlike
// cli.Maintenance.Status it keeps gRPC's own error (e.g. a TLS handshake
// failure) instead of collapsing it into "context deadline exceeded", and the
// error names the endpoint. The caller's ctx bounds the wait.
func Status(ctx context.Context, cli *clientv3.Client, endpoint string) (*clientv3.StatusResponse, error) {
	conn, err := cli.Dial(endpoint)
	if err != nil {
		return nil, fmt.Errorf("etcd endpoint %s: %w", endpoint, err)
	}
	defer conn.Close()
	resp, err := pb.NewMaintenanceClient(conn).Status(ctx, &pb.StatusRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return nil, fmt.Errorf("etcd endpoint %s: %w", endpoint, err)
	}
	return (*clientv3.StatusResponse)(resp), nil
}
