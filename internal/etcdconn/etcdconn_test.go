package etcdconn_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/loopback"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	certs, err := etcdtest.GenerateCerts(filepath.Join(dir, "a"))
	require.NoError(t, err)
	other, err := etcdtest.GenerateCerts(filepath.Join(dir, "b"))
	require.NoError(t, err)
	garbage := filepath.Join(dir, "garbage.pem")
	require.NoError(t, os.WriteFile(garbage, []byte("not a pem file\n"), 0o600))
	missing := filepath.Join(dir, "missing.crt")
	ep := []string{"https://10.0.1.10:4001"}

	good := etcdconn.Config{Endpoints: ep, CACert: certs.CACert, Cert: certs.ClientCert, Key: certs.ClientKey}
	require.NoError(t, good.Validate())
	require.NoError(t, etcdconn.Config{Endpoints: []string{"http://127.0.0.1:2379"}}.Validate())
	// https without cacert trusts the system roots.
	require.NoError(t, etcdconn.Config{Endpoints: ep}.Validate())

	with := func(f func(*etcdconn.Config)) etcdconn.Config {
		c := good
		f(&c)
		return c
	}
	cases := []struct {
		name         string
		cfg          etcdconn.Config
		field, value string
	}{
		{"no endpoints", with(func(c *etcdconn.Config) { c.Endpoints = nil }), "endpoints", ""},
		{"no scheme", with(func(c *etcdconn.Config) { c.Endpoints = []string{"10.0.1.10:4001"} }), "endpoints", "10.0.1.10:4001"},
		{"wrong scheme", with(func(c *etcdconn.Config) { c.Endpoints = []string{"ftp://10.0.1.10:4001"} }), "endpoints", "ftp://10.0.1.10:4001"},
		{"no port", with(func(c *etcdconn.Config) { c.Endpoints = append(ep, "https://10.0.1.11") }), "endpoints", "https://10.0.1.11"},
		{"path", with(func(c *etcdconn.Config) { c.Endpoints = []string{"https://10.0.1.10:4001/v3"} }), "endpoints", "https://10.0.1.10:4001/v3"},
		{"missing cacert", with(func(c *etcdconn.Config) { c.CACert = missing }), "cacert", missing},
		{"cacert not PEM", with(func(c *etcdconn.Config) { c.CACert = garbage }), "cacert", garbage},
		{"cert without key", with(func(c *etcdconn.Config) { c.Key = "" }), "key", ""},
		{"key without cert", with(func(c *etcdconn.Config) { c.Cert = "" }), "cert", ""},
		{"missing cert", with(func(c *etcdconn.Config) { c.Cert = missing }), "cert", missing},
		{"cert is a key", with(func(c *etcdconn.Config) { c.Cert = certs.ClientKey }), "cert", certs.ClientKey},
		{"missing key", with(func(c *etcdconn.Config) { c.Key = missing }), "key", missing},
		{"key of another cert", with(func(c *etcdconn.Config) { c.Key = other.ClientKey }), "key", other.ClientKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			ie, ok := inputerr.As(err)
			require.True(t, ok, "want *inputerr.Error, got %v", err)
			assert.Equal(t, tc.field, ie.Field)
			assert.Equal(t, tc.value, ie.Value)
			assert.NotEmpty(t, ie.Fix)

			// New refuses the same input before touching the network.
			_, err = etcdconn.New(context.Background(), tc.cfg)
			_, ok = inputerr.As(err)
			assert.True(t, ok, "New: want *inputerr.Error, got %v", err)
		})
	}
}

func TestNewTLSCluster(t *testing.T) {
	c := etcdtest.Start(t, 3)
	cfg := c.ConnConfig()
	// A member that is down does not stop New: one answering member is enough.
	cfg.Endpoints = append([]string{"https://" + loopback.Refused(t)}, cfg.Endpoints...)
	// New returns as soon as one member answers, so the refused one costs
	// nothing and the timeout only bounds a failure. It was 2 s; under the
	// race detector, with every other lane busy (load average 20), no
	// member had answered by then, twice.
	cfg.DialTimeout = 30 * time.Second

	cli, err := etcdconn.New(context.Background(), cfg)
	require.NoError(t, err)
	defer cli.Close()
	// A bound for a hung call, not a speed test: under the race detector,
	// with every other lane busy, a Status on a fresh TLS connection to a
	// member once took longer than the 10 s this was.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = cli.Put(ctx, "/k", "v")
	require.NoError(t, err)
	got, err := cli.Get(ctx, "/k")
	require.NoError(t, err)
	require.Len(t, got.Kvs, 1)
	assert.Equal(t, "v", string(got.Kvs[0].Value))

	st, err := etcdconn.Status(ctx, cli, c.Endpoints[2])
	require.NoError(t, err)
	assert.NotEmpty(t, st.Version)
	assert.Positive(t, st.Header.Revision)
}

func TestNewUnreachable(t *testing.T) {
	c := etcdtest.Start(t, 1) // only for its certs
	cfg := c.ConnConfig()
	a, b := "https://"+loopback.Refused(t), "https://"+loopback.Refused(t)
	cfg.Endpoints = []string{a, b}
	cfg.DialTimeout = 500 * time.Millisecond

	_, err := etcdconn.New(context.Background(), cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), a)
	assert.Contains(t, err.Error(), b)
	assert.True(t, etcdconn.Unreachable(err), "%v", err)
	_, isInput := inputerr.As(err)
	assert.False(t, isInput)
}

// TLS trust problems look like timeouts to gRPC; they must not be retried as
// if etcd were merely down.
func TestNewTLSProblems(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 1)
	other, err := etcdtest.GenerateCerts(t.TempDir())
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		edit func(*etcdconn.Config)
		want string
	}{
		{"wrong CA", func(cfg *etcdconn.Config) { cfg.CACert = other.CACert }, "x509: certificate signed by unknown authority"},
		{"no client cert", func(cfg *etcdconn.Config) { cfg.Cert, cfg.Key = "", "" }, "tls: certificate required"},
		{"foreign client cert", func(cfg *etcdconn.Config) { cfg.Cert, cfg.Key = other.ClientCert, other.ClientKey }, "tls: unknown certificate authority"},
		{"http to https port", func(cfg *etcdconn.Config) {
			cfg.Endpoints = []string{strings.Replace(cfg.Endpoints[0], "https", "http", 1)}
		}, "use https://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each waits out its dial timeout
			cfg := c.ConnConfig()
			tc.edit(&cfg)
			cfg.DialTimeout = time.Second
			_, err := etcdconn.New(context.Background(), cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), cfg.Endpoints[0])
			assert.Contains(t, err.Error(), tc.want)
			assert.False(t, etcdconn.Unreachable(err), "%v", err)
			if strings.HasPrefix(cfg.Endpoints[0], "http://") {
				ie, ok := inputerr.As(err)
				require.True(t, ok, "want *inputerr.Error, got %v", err)
				assert.Equal(t, "endpoints", ie.Field)
				assert.Equal(t, cfg.Endpoints[0], ie.Value)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	x509 := status.Error(codes.Unavailable, `connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"`)
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("boom"), false},
		{context.Canceled, false},
		{fmt.Errorf("get: %w", context.DeadlineExceeded), true},
		{fmt.Errorf("etcd endpoint x: %w", refused), true},
		{status.Error(codes.Unavailable, "etcdserver: no leader"), true},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), true},
		{status.Error(codes.InvalidArgument, "bad"), false},
		{x509, false},
		{inputerr.New("endpoints", "", "fix"), false},
		{fmt.Errorf("none: %w", errors.Join(refused, context.DeadlineExceeded)), true},
		{fmt.Errorf("none: %w", errors.Join(refused, x509)), false},
	} {
		assert.Equal(t, tc.want, etcdconn.Unreachable(tc.err), "%v", tc.err)
	}
}
