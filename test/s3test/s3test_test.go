package s3test_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/s3test"
)

func TestServers(t *testing.T) {
	for name, start := range map[string]func(testing.TB, ...string) *s3test.Server{
		"gofakes3":  s3test.StartGoFakeS3,
		"versitygw": s3test.StartVersityGW,
	} {
		t.Run(name, func(t *testing.T) {
			srv := start(t, "one", "two")
			assert.True(t, strings.HasPrefix(srv.Endpoint, "http://127.0.0.1:"), srv.Endpoint)
			ctx := context.Background()
			c := srv.Client(t)
			out, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
			require.NoError(t, err)
			var names []string
			for _, b := range out.Buckets {
				names = append(names, aws.ToString(b.Name))
			}
			assert.ElementsMatch(t, []string{"one", "two"}, names)
			_, err = c.PutObject(ctx, &s3.PutObjectInput{
				Bucket: aws.String("one"), Key: aws.String("a/b"), Body: strings.NewReader("x"),
			})
			require.NoError(t, err)

			env := srv.Env()
			assert.Contains(t, env, "S3_ENDPOINT="+srv.Endpoint)
			assert.Contains(t, env, "S3_ACCESS_KEY_ID="+srv.AccessKey)
			assert.Contains(t, env, "AWS_SECRET_ACCESS_KEY="+srv.SecretKey)
			srv.Setenv(t)
			assert.Equal(t, srv.Region, os.Getenv("S3_REGION"))
			assert.Equal(t, srv.Region, os.Getenv("AWS_REGION"))
		})
	}
}

// TestVersityGWChecksSignatures: the reason to run versitygw at all.
func TestVersityGWChecksSignatures(t *testing.T) {
	srv := s3test.StartVersityGW(t, "bucket")
	bad := *srv
	bad.SecretKey = "wrong"
	_, err := bad.Client(t).ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String("bucket")})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "SignatureDoesNotMatch")
}

// TestVersityGWOverTLS: an https gateway that kopsdr's own S3 client
// reaches through the environment Env gives (AWS_CA_BUNDLE), as the
// benchmark's children do with KOPSDR_BENCH_S3=https.
func TestVersityGWOverTLS(t *testing.T) {
	certs, err := etcdtest.GenerateCerts(filepath.Join(t.TempDir(), "pki"))
	require.NoError(t, err)
	srv := s3test.StartVersityGWTLS(t, s3test.TLSFiles{CA: certs.CACert, Cert: certs.ServerCert, Key: certs.ServerKey}, "bucket")
	assert.True(t, strings.HasPrefix(srv.Endpoint, "https://127.0.0.1:"), srv.Endpoint)
	assert.Contains(t, srv.Env(), "AWS_CA_BUNDLE="+certs.CACert)

	ctx := context.Background()
	srv.Setenv(t)
	store, err := backupstore.Open(ctx, "s3://bucket/tls", backupstore.Options{})
	require.NoError(t, err)
	_, err = store.Put(ctx, "a", strings.NewReader("over tls"), backupstore.PutOptions{})
	require.NoError(t, err)
	out, err := srv.Client(t).GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bucket"), Key: aws.String("tls/a")})
	require.NoError(t, err)
	defer out.Body.Close()
	body, err := io.ReadAll(out.Body)
	require.NoError(t, err)
	assert.Equal(t, "over tls", string(body))

	// Without the CA, the gateway's certificate is not trusted.
	untrusted := *srv
	untrusted.CABundle = ""
	_, err = untrusted.Client(t).ListBuckets(ctx, &s3.ListBucketsInput{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "certificate")
}
