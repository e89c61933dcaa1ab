package backupstore_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/test/s3test"
)

// dialRecorder records every address the S3 client dials. A dial off
// loopback is recorded and refused at once, so a regression fails fast
// instead of waiting on a network that may not answer.
type dialRecorder struct {
	mu    sync.Mutex
	addrs []string
}

func (d *dialRecorder) install(t *testing.T) {
	t.Cleanup(backupstore.SetDialControl(func(network, addr string) error {
		d.mu.Lock()
		d.addrs = append(d.addrs, addr)
		d.mu.Unlock()
		host, _, _ := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("test: refusing to dial %s off loopback", addr)
		}
		return nil
	}))
}

func (d *dialRecorder) offLoopback() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var off []string
	for _, a := range d.addrs {
		host, _, _ := net.SplitHostPort(a)
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			off = append(off, a)
		}
	}
	return off
}

// bareAWSEnv clears every credential and endpoint source the SDK reads, as
// on a developer machine without AWS set up.
func bareAWSEnv(t *testing.T) {
	none := filepath.Join(t.TempDir(), "none")
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_EC2_METADATA_DISABLED", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION",
		"S3_ENDPOINT", "S3_REGION", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", backupstore.EnvLocalOnly,
		"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", none)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", none)
}

// TestNoConnectionLeavesLoopback: with a loopback S3 and no credentials the
// SDK's default chain would end at the instance metadata service; it must
// not, and nothing else may leave this machine either.
func TestNoConnectionLeavesLoopback(t *testing.T) {
	srv := s3test.StartGoFakeS3(t, bucket)
	ctx := context.Background()

	t.Run("no credentials, AWS_ENDPOINT_URL_S3 on loopback", func(t *testing.T) {
		bareAWSEnv(t)
		var rec dialRecorder
		rec.install(t)
		t.Setenv("AWS_ENDPOINT_URL_S3", srv.Endpoint)
		t.Setenv("AWS_REGION", srv.Region)
		s, err := backupstore.Open(ctx, "s3://"+bucket+"/c/backups/etcd/main", backupstore.Options{})
		require.NoError(t, err)
		_, err = s.List(ctx, "")
		require.Error(t, err, "there are no credentials")
		assert.Empty(t, rec.offLoopback(), "dialled off loopback (%s is the metadata service)", backupstore.IMDSAddr)
	})

	t.Run("static keys, S3_ENDPOINT on loopback", func(t *testing.T) {
		bareAWSEnv(t)
		var rec dialRecorder
		rec.install(t)
		srv.Setenv(t)
		s, err := backupstore.Open(ctx, "s3://"+bucket+"/c/backups/etcd/main", backupstore.Options{})
		require.NoError(t, err)
		_, err = s.Put(ctx, "x", strings.NewReader("x"), backupstore.PutOptions{})
		require.NoError(t, err)
		_, err = s.List(ctx, "")
		require.NoError(t, err)
		assert.NotEmpty(t, rec.addrs, "the recorder sees the S3 connections")
		assert.Empty(t, rec.offLoopback())
	})

	t.Run("local only: no endpoint is refused before any connection", func(t *testing.T) {
		bareAWSEnv(t)
		var rec dialRecorder
		rec.install(t)
		t.Setenv(backupstore.EnvLocalOnly, "1")
		t.Setenv("AWS_ACCESS_KEY_ID", "AKID")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
		_, err := backupstore.Open(ctx, "s3://my.clusters/c/backups/etcd/main", backupstore.Options{})
		e, ok := inputerr.As(err)
		require.True(t, ok, "%v", err)
		assert.Equal(t, backupstore.EnvEndpoint, e.Field)
		assert.Contains(t, e.Fix, backupstore.EnvLocalOnly)
		assert.Empty(t, rec.addrs)
	})

	t.Run("local only: an endpoint off loopback is refused", func(t *testing.T) {
		bareAWSEnv(t)
		var rec dialRecorder
		rec.install(t)
		t.Setenv(backupstore.EnvLocalOnly, "true")
		t.Setenv("S3_ENDPOINT", "http://192.0.2.10:9000")
		t.Setenv("S3_ACCESS_KEY_ID", "AKID")
		t.Setenv("S3_SECRET_ACCESS_KEY", "secret")
		_, err := backupstore.Open(ctx, "s3://my.clusters/c", backupstore.Options{})
		_, ok := inputerr.As(err)
		require.True(t, ok, "%v", err)
		assert.Empty(t, rec.addrs)
	})

}
