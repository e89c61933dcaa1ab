package etcdtest_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kopsdr/kopsdr/test/etcdtest"
)

func TestThreeMembersTLS(t *testing.T) {
	c := etcdtest.Start(t, 3)
	require.Len(t, c.Endpoints, 3)
	require.Len(t, c.Members, 3)
	for _, ep := range c.Endpoints {
		assert.Regexp(t, `^https://127\.0\.0\.1:\d+$`, ep)
	}
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	members, err := cli.MemberList(ctx)
	require.NoError(t, err)
	assert.Len(t, members.Members, 3)

	etcdtest.Fill(t, cli, "/registry/configmaps/", 250, 1000)
	got, err := cli.Get(ctx, "/registry/configmaps/", clientv3.WithPrefix())
	require.NoError(t, err)
	require.Len(t, got.Kvs, 250)
	for i, kv := range got.Kvs {
		assert.Equal(t, etcdtest.Key("/registry/configmaps/", i), string(kv.Key))
		assert.Equal(t, string(etcdtest.Value("/registry/configmaps/", i, 1000)), string(kv.Value))
	}

	// With one member down the other two keep a quorum; the member comes
	// back with its data.
	c.StopMember(2)
	_, err = cli.Put(ctx, "/while-down", "x")
	require.NoError(t, err)
	c.RestartMember(t, 2)
	one := c.Members[2].ClientURL
	st, err := cli.Status(ctx, one)
	require.NoError(t, err)
	assert.Positive(t, st.Header.Revision)
}

func TestWithoutTLS(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.WithoutTLS(), etcdtest.WithQuotaBytes(64<<20))
	assert.Regexp(t, `^http://`, c.Endpoints[0])
	assert.Empty(t, c.ConnConfig().CACert)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := cli.Put(ctx, "/k", "v")
	require.NoError(t, err)
}

// Two clusters with one PKI, like kops' main and events: one client
// config reaches both.
func TestWithCerts(t *testing.T) {
	certs, err := etcdtest.GenerateCerts(t.TempDir())
	require.NoError(t, err)
	main := etcdtest.Start(t, 1, etcdtest.WithCerts(certs))
	events := etcdtest.Start(t, 1, etcdtest.WithCerts(certs))
	assert.Equal(t, certs, main.Certs)
	assert.Equal(t, main.ConnConfig().Cert, events.ConnConfig().Cert)
	main.Client(t)
	events.Client(t)
}

func TestGenerateCerts(t *testing.T) {
	certs, err := etcdtest.GenerateCerts(t.TempDir(), "10.0.0.5", "etcd-a.internal")
	require.NoError(t, err)
	caPEM, err := os.ReadFile(certs.CACert)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM))

	server, err := tls.LoadX509KeyPair(certs.ServerCert, certs.ServerKey)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(server.Certificate[0])
	require.NoError(t, err)
	for _, host := range []string{"10.0.0.5", "etcd-a.internal"} {
		_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		assert.NoError(t, err, host)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1"})
	assert.Error(t, err, "only the hosts asked for are in the SANs")

	client, err := tls.LoadX509KeyPair(certs.ClientCert, certs.ClientKey)
	require.NoError(t, err)
	leaf, err = x509.ParseCertificate(client.Certificate[0])
	require.NoError(t, err)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	assert.NoError(t, err)

	info, err := os.Stat(certs.ClientKey)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())
}

func TestValueIsDeterministicAndSized(t *testing.T) {
	for _, size := range []int{0, 10, 300, 4096} {
		v := etcdtest.Value("/p/", 7, size)
		assert.Len(t, v, size)
		assert.Equal(t, v, etcdtest.Value("/p/", 7, size))
	}
	assert.NotEqual(t, etcdtest.Value("/p/", 7, 500), etcdtest.Value("/p/", 8, 500))
	assert.NotEqual(t, etcdtest.Value("/p/", 7, 500), etcdtest.Value("/q/", 7, 500))
}
