package backupstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/test/s3test"
)

const bucket = "kopsdr-test"

// backend opens a fresh, empty store of one kind. server is nil for file://.
type backend struct {
	name  string
	start func(t *testing.T) (url string, server *s3test.Server)
	// multipartETag: the server gives multipart objects S3's "<md5>-<parts>"
	// ETag (gofakes3 does not), which proves the Put went multipart.
	multipartETag bool
}

var backends = []backend{
	{"file", func(t *testing.T) (string, *s3test.Server) {
		return "file://" + t.TempDir() + "/backups/etcd/main", nil
	}, false},
	{"gofakes3", func(t *testing.T) (string, *s3test.Server) {
		srv := s3test.StartGoFakeS3(t, bucket)
		srv.Setenv(t)
		return "s3://" + bucket + "/cluster.example.com/backups/etcd/main", srv
	}, false},
	{"versitygw", func(t *testing.T) (string, *s3test.Server) {
		srv := s3test.StartVersityGW(t, bucket)
		srv.Setenv(t)
		return "s3://" + bucket + "/cluster.example.com/backups/etcd/main", srv
	}, true},
}

func open(t *testing.T, url string) backupstore.Store {
	t.Helper()
	s, err := backupstore.Open(context.Background(), url, backupstore.Options{})
	require.NoError(t, err)
	require.Equal(t, url, s.URL())
	return s
}

func put(t *testing.T, s backupstore.Store, key, data string) {
	t.Helper()
	n, err := s.Put(context.Background(), key, strings.NewReader(data), backupstore.PutOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(len(data)), n)
}

func get(t *testing.T, s backupstore.Store, key string) string {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	return string(b)
}

func keys(infos []backupstore.ObjectInfo) []string {
	var out []string
	for _, i := range infos {
		out = append(out, i.Key)
	}
	return out
}

// TestStore runs the same cases against every backend.
func TestStore(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			url, srv := b.start(t)
			ctx := context.Background()

			t.Run("put get stat", func(t *testing.T) {
				s := open(t, url)
				put(t, s, "2026-11-21T22:52:16Z-000001/etcd.backup.gz", "snapshot bytes")
				assert.Equal(t, "snapshot bytes", get(t, s, "2026-11-21T22:52:16Z-000001/etcd.backup.gz"))
				info, err := s.Stat(ctx, "2026-11-21T22:52:16Z-000001/etcd.backup.gz")
				require.NoError(t, err)
				assert.Equal(t, "2026-11-21T22:52:16Z-000001/etcd.backup.gz", info.Key)
				assert.Equal(t, int64(len("snapshot bytes")), info.Size)
				assert.WithinDuration(t, time.Now(), info.ModTime, time.Hour)

				put(t, s, "2026-11-21T22:52:16Z-000001/etcd.backup.gz", "overwritten")
				assert.Equal(t, "overwritten", get(t, s, "2026-11-21T22:52:16Z-000001/etcd.backup.gz"))
				put(t, s, "empty", "")
				assert.Equal(t, "", get(t, s, "empty"))
			})

			t.Run("put if absent: one writer of many wins, nothing is overwritten", func(t *testing.T) {
				s := open(t, url)
				key := "2026-11-21T22:52:17Z-000001/kopsdr-reservation.json"
				ifAbsent := backupstore.PutOptions{IfAbsent: true, ContentType: "application/json"}
				n, err := s.Put(ctx, key, strings.NewReader("first"), ifAbsent)
				require.NoError(t, err)
				require.Equal(t, int64(5), n)
				_, err = s.Put(ctx, key, strings.NewReader("second"), ifAbsent)
				require.ErrorIs(t, err, backupstore.ErrExists)
				require.Equal(t, "first", get(t, s, key))

				key = "2026-11-21T22:52:17Z-000002/kopsdr-reservation.json"
				const writers = 8
				var wg sync.WaitGroup
				errs := make([]error, writers)
				for i := range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						_, errs[i] = s.Put(ctx, key, strings.NewReader("writer-"+strconv.Itoa(i)), ifAbsent)
					}()
				}
				wg.Wait()
				winner := -1
				for i, err := range errs {
					if err == nil {
						require.Equal(t, -1, winner, "writers %d and %d both stored %s", winner, i, key)
						winner = i
						continue
					}
					require.ErrorIs(t, err, backupstore.ErrExists)
				}
				require.NotEqual(t, -1, winner, "no writer stored %s: %v", key, errs)
				require.Equal(t, "writer-"+strconv.Itoa(winner), get(t, s, key))
				require.Equal(t, []string{key}, keys(mustList(t, s, "2026-11-21T22:52:17Z-000002/")), "the losers stored nothing")
			})

			t.Run("not found", func(t *testing.T) {
				s := open(t, url)
				_, err := s.Get(ctx, "no/such/object")
				assert.ErrorIs(t, err, backupstore.ErrNotFound)
				_, err = s.Stat(ctx, "no/such/object")
				assert.ErrorIs(t, err, backupstore.ErrNotFound)
				// A "folder" is not an object either.
				put(t, s, "folder/child", "x")
				_, err = s.Stat(ctx, "folder")
				assert.ErrorIs(t, err, backupstore.ErrNotFound)
				_, err = s.Get(ctx, "folder")
				assert.ErrorIs(t, err, backupstore.ErrNotFound)
			})

			t.Run("list is recursive, relative, sorted and prefix-scoped", func(t *testing.T) {
				s := open(t, url)
				require.NoError(t, s.Delete(ctx, keys(mustList(t, s, ""))...))
				for _, k := range []string{
					"2026-11-21T23:00:00Z-000002/_etcd_backup.meta",
					"2026-11-21T22:00:00Z-000001/etcd.backup.gz",
					"control/etcd-cluster-spec",
					"2026-11-21T22:00:00Z-000001/_etcd_backup.meta",
					"control/2026-11-21T22:10:00Z-000000/_command.json",
				} {
					put(t, s, k, "x")
				}
				assert.Equal(t, []string{
					"2026-11-21T22:00:00Z-000001/_etcd_backup.meta",
					"2026-11-21T22:00:00Z-000001/etcd.backup.gz",
					"2026-11-21T23:00:00Z-000002/_etcd_backup.meta",
					"control/2026-11-21T22:10:00Z-000000/_command.json",
					"control/etcd-cluster-spec",
				}, keys(mustList(t, s, "")))
				assert.Equal(t, []string{
					"control/2026-11-21T22:10:00Z-000000/_command.json",
					"control/etcd-cluster-spec",
				}, keys(mustList(t, s, "control/")))
				// A plain string prefix, as in S3, not only folder names.
				assert.Equal(t, []string{
					"2026-11-21T22:00:00Z-000001/_etcd_backup.meta",
					"2026-11-21T22:00:00Z-000001/etcd.backup.gz",
				}, keys(mustList(t, s, "2026-11-21T22")))
				assert.Empty(t, mustList(t, s, "nothing-here/"))

				// A sibling store whose prefix extends ours is not listed.
				sibling := open(t, url+"2")
				put(t, sibling, "control/etcd-cluster-spec", "other")
				assert.Len(t, mustList(t, s, "control/"), 2)
				require.NoError(t, sibling.Delete(ctx, "control/etcd-cluster-spec"))
			})

			t.Run("delete", func(t *testing.T) {
				s := open(t, url)
				put(t, s, "d/a", "1")
				put(t, s, "d/b", "2")
				require.NoError(t, s.Delete(ctx, "d/a", "d/missing", "never/existed"))
				assert.Equal(t, []string{"d/b"}, keys(mustList(t, s, "d/")))
				require.NoError(t, s.Delete(ctx, "d/b"))
				assert.Empty(t, mustList(t, s, "d/"))
				require.NoError(t, s.Delete(ctx))
			})

			t.Run("invalid keys", func(t *testing.T) {
				s := open(t, url)
				for _, k := range []string{"", "/abs", "a//b", "../escape", "a/../../b", "dir/", ".kopsdr-tmp-123"} {
					_, err := s.Put(ctx, k, strings.NewReader("x"), backupstore.PutOptions{})
					assert.ErrorIs(t, err, backupstore.ErrInvalidKey, "key %q", k)
				}
			})

			t.Run("large streamed put", func(t *testing.T) {
				s := open(t, url)
				const size = 40<<20 + 12345 // five full 8 MiB parts and a short one
				want := sha256.New()
				n, err := s.Put(ctx, "big/etcd.backup.gz", io.TeeReader(newStream(size), want), backupstore.PutOptions{
					ContentType: "application/gzip",
				})
				require.NoError(t, err)
				require.Equal(t, int64(size), n)
				info, err := s.Stat(ctx, "big/etcd.backup.gz")
				require.NoError(t, err)
				assert.Equal(t, int64(size), info.Size)

				rc, err := s.Get(ctx, "big/etcd.backup.gz")
				require.NoError(t, err)
				got := sha256.New()
				_, err = io.Copy(got, rc)
				require.NoError(t, err)
				require.NoError(t, rc.Close())
				assert.Equal(t, want.Sum(nil), got.Sum(nil))
				if b.multipartETag {
					// S3 only gives multipart objects an ETag "<hash>-<parts>".
					head := headObject(t, srv, url, "big/etcd.backup.gz")
					assert.True(t, strings.HasSuffix(aws.ToString(head.ETag), `-6"`), "ETag %s", aws.ToString(head.ETag))
				}
				require.NoError(t, s.Delete(ctx, "big/etcd.backup.gz"))
			})

			t.Run("SSE-KMS option accepted", func(t *testing.T) {
				s := open(t, url)
				n, err := s.Put(ctx, "sse/_etcd_backup.meta", strings.NewReader("{}"), backupstore.PutOptions{
					SSEKMSKeyID: "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
				})
				require.NoError(t, err)
				assert.Equal(t, int64(2), n)
				assert.Equal(t, "{}", get(t, s, "sse/_etcd_backup.meta"))
			})

			t.Run("failed put leaves nothing visible", func(t *testing.T) {
				s := open(t, url)
				// Fails after two full parts, so S3 has a multipart upload to abort.
				r := io.MultiReader(newStream(17<<20), errReader{errors.New("disk on fire")})
				_, err := s.Put(ctx, "failed/etcd.backup.gz", r, backupstore.PutOptions{})
				require.ErrorContains(t, err, "disk on fire")
				_, err = s.Stat(ctx, "failed/etcd.backup.gz")
				assert.ErrorIs(t, err, backupstore.ErrNotFound)
				assert.Empty(t, mustList(t, s, "failed/"))
				n, err := s.AbortIncompleteUploads(ctx, "failed/")
				require.NoError(t, err)
				assert.Equal(t, 0, n, "the failed Put should have cleaned up after itself")
			})

			t.Run("cancelled put leaves nothing visible", func(t *testing.T) {
				s := open(t, url)
				cctx, cancel := context.WithCancel(ctx)
				r := io.MultiReader(newStream(9<<20), cancelReader{cancel}, newStream(9<<20))
				_, err := s.Put(cctx, "cancelled/etcd.backup.gz", r, backupstore.PutOptions{})
				require.ErrorIs(t, err, context.Canceled)
				assert.Empty(t, mustList(t, s, "cancelled/"))
				n, err := s.AbortIncompleteUploads(ctx, "cancelled/")
				require.NoError(t, err)
				assert.Equal(t, 0, n)
			})

			t.Run("abort incomplete uploads", func(t *testing.T) {
				s := open(t, url)
				leaveIncompleteUpload(t, srv, url, "stale/etcd.backup.gz")
				leaveIncompleteUpload(t, srv, url, "other/etcd.backup.gz")
				assert.Empty(t, mustList(t, s, "stale/"), "incomplete uploads are never listed")
				n, err := s.AbortIncompleteUploads(ctx, "stale/")
				require.NoError(t, err)
				assert.Equal(t, 1, n)
				n, err = s.AbortIncompleteUploads(ctx, "")
				require.NoError(t, err)
				assert.Equal(t, 1, n)
				n, err = s.AbortIncompleteUploads(ctx, "")
				require.NoError(t, err)
				assert.Equal(t, 0, n)
			})
		})
	}
}

func mustList(t *testing.T, s backupstore.Store, prefix string) []backupstore.ObjectInfo {
	t.Helper()
	l, err := s.List(context.Background(), prefix)
	require.NoError(t, err)
	return l
}

// newStream is a deterministic, non-seekable reader of n bytes that is
// never held in memory whole.
func newStream(n int64) io.Reader {
	return io.LimitReader(rngReader{rand.NewChaCha8([32]byte{1})}, n)
}

type rngReader struct{ r *rand.ChaCha8 }

func (r rngReader) Read(p []byte) (int, error) { return r.r.Read(p) }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// cancelReader cancels the Put's context when the stream reaches it.
type cancelReader struct{ cancel context.CancelFunc }

func (c cancelReader) Read([]byte) (int, error) {
	c.cancel()
	return 0, io.EOF
}

// s3Location splits a test store URL into bucket and full key.
func s3Key(url, key string) string {
	return strings.TrimPrefix(url, "s3://"+bucket+"/") + "/" + key
}

func headObject(t *testing.T, srv *s3test.Server, url, key string) *s3.HeadObjectOutput {
	t.Helper()
	out, err := srv.Client(t).HeadObject(context.Background(), &s3.HeadObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(s3Key(url, key)),
	})
	require.NoError(t, err)
	return out
}

// leaveIncompleteUpload simulates a Put killed mid-way: on S3 a multipart
// upload with one part, on file:// a temp file beside the target.
func leaveIncompleteUpload(t *testing.T, srv *s3test.Server, url, key string) {
	t.Helper()
	if srv == nil {
		p := filepath.Join(strings.TrimPrefix(url, "file://"), filepath.FromSlash(key))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(p), ".kopsdr-tmp-42"), []byte("partial"), 0o600))
		return
	}
	ctx := context.Background()
	c := srv.Client(t)
	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(bucket), Key: aws.String(s3Key(url, key)),
	})
	require.NoError(t, err)
	_, err = c.UploadPart(ctx, &s3.UploadPartInput{
		Bucket: aws.String(bucket), Key: aws.String(s3Key(url, key)),
		UploadId: up.UploadId, PartNumber: aws.Int32(1), Body: bytes.NewReader([]byte("partial")),
	})
	require.NoError(t, err)
}

func TestAccessDeniedWithWrongSecret(t *testing.T) {
	srv := s3test.StartVersityGW(t, bucket)
	srv.Setenv(t)
	t.Setenv(backupstore.EnvSecretKey, "not-the-secret")
	ctx := context.Background()
	s := open(t, "s3://"+bucket+"/main")

	_, err := s.Put(ctx, "k", strings.NewReader("x"), backupstore.PutOptions{})
	assert.ErrorIs(t, err, backupstore.ErrAccessDenied)
	_, err = s.Get(ctx, "k")
	assert.ErrorIs(t, err, backupstore.ErrAccessDenied)
	_, err = s.Stat(ctx, "k")
	assert.ErrorIs(t, err, backupstore.ErrAccessDenied)
	_, err = s.List(ctx, "")
	assert.ErrorIs(t, err, backupstore.ErrAccessDenied)
	err = s.Delete(ctx, "k")
	assert.ErrorIs(t, err, backupstore.ErrAccessDenied)
	_, err = s.AbortIncompleteUploads(ctx, "")
	assert.ErrorIs(t, err, backupstore.ErrAccessDenied)

	t.Setenv(backupstore.EnvAccessKey, "unknown-access-key")
	s = open(t, "s3://"+bucket+"/main")
	_, err = s.List(ctx, "")
	assert.ErrorIs(t, err, backupstore.ErrAccessDenied)
	_, err = s.Stat(ctx, "k")
	assert.ErrorIs(t, err, backupstore.ErrAccessDenied)
	_, err = s.Get(ctx, "k")
	assert.ErrorIs(t, err, backupstore.ErrAccessDenied)
	_, err = s.Put(ctx, "k", strings.NewReader("x"), backupstore.PutOptions{})
	assert.ErrorIs(t, err, backupstore.ErrAccessDenied)
}

func TestMissingBucket(t *testing.T) {
	for _, b := range backends {
		if b.name == "file" {
			continue // a file:// root is created on first Put
		}
		t.Run(b.name, func(t *testing.T) {
			b.start(t)
			ctx := context.Background()
			s := open(t, "s3://no-such-bucket/main")
			check := func(op string, err error) {
				t.Helper()
				e, ok := inputerr.As(err)
				require.True(t, ok, "%s: want *inputerr.Error, got %v", op, err)
				assert.Equal(t, "backupStore", e.Field, op)
				assert.Equal(t, "s3://no-such-bucket/main", e.Value, op)
				assert.Contains(t, e.Error(), "does not exist", op)
				assert.NotErrorIs(t, err, backupstore.ErrNotFound, op)
			}
			_, err := s.Put(ctx, "k", strings.NewReader("x"), backupstore.PutOptions{})
			check("put", err)
			_, err = s.Put(ctx, "big", newStream(9<<20), backupstore.PutOptions{})
			check("multipart put", err)
			_, err = s.Get(ctx, "k")
			check("get", err)
			_, err = s.Stat(ctx, "k")
			check("stat", err)
			_, err = s.List(ctx, "")
			check("list", err)
		})
	}
}

func TestCustomEndpointNeedsBothKeys(t *testing.T) {
	srv := s3test.StartGoFakeS3(t, bucket)
	srv.Setenv(t)
	t.Setenv(backupstore.EnvSecretKey, "")
	_, err := backupstore.Open(context.Background(), "s3://"+bucket+"/main", backupstore.Options{})
	e, ok := inputerr.As(err)
	require.True(t, ok, "got %v", err)
	assert.Equal(t, "S3_SECRET_ACCESS_KEY", e.Field)
}

func TestOpenRejectsMalformedURLs(t *testing.T) {
	for _, raw := range []string{
		"",
		"   ",
		"my-bucket/prefix",          // no scheme
		"/abs/path",                 // no scheme
		"s3://",                     // no bucket
		"s3:///prefix",              // no bucket
		"s3://a/prefix",             // bucket too short
		"s3://bad_bucket!/x",        // bucket characters
		"s3://bucket:9000/x",        // port
		"s3://key:secret@bucket/x",  // credentials
		"s3://bucket/x?versionId=1", // query
		"s3://bucket/a//b",          // empty segment
		"s3://bucket/a/../b",        // dot-dot
		"file://relative/path",      // host, not a path
		"file:relative",             // opaque
		"file:///",                  // root
		"gs://bucket/prefix",        // unsupported scheme
		"https://bucket.s3.amazonaws.com/x",
		"%%",
	} {
		_, err := backupstore.Open(context.Background(), raw, backupstore.Options{})
		e, ok := inputerr.As(err)
		if assert.True(t, ok, "%q: want *inputerr.Error, got %v", raw, err) {
			assert.Equal(t, "backupStore", e.Field, raw)
			assert.Equal(t, raw, e.Value, raw)
			assert.Contains(t, e.Fix, "s3://bucket/prefix", raw)
			assert.Contains(t, e.Fix, "file:///abs/path", raw)
		}
	}
}

func TestCanonicalURL(t *testing.T) {
	for raw, want := range map[string]string{
		"s3://bucket":  "s3://bucket",
		"s3://bucket/": "s3://bucket",
		"s3://my.clusters/test.my.clusters/backups/etcd/main/": "s3://my.clusters/test.my.clusters/backups/etcd/main",
		"file:///var/backups/./etcd//main/":                    "file:///var/backups/etcd/main",
	} {
		loc, err := backupstore.ParseURL(raw)
		require.NoError(t, err, raw)
		assert.Equal(t, want, loc.URL(), raw)
	}
}

func TestFileStoreTempFilesAreHidden(t *testing.T) {
	root := t.TempDir()
	s := open(t, "file://"+root)
	ctx := context.Background()
	put(t, s, "b/etcd.backup.gz", "data")
	require.NoError(t, os.WriteFile(filepath.Join(root, "b", ".kopsdr-tmp-99"), []byte("half"), 0o600))
	assert.Equal(t, []string{"b/etcd.backup.gz"}, keys(mustList(t, s, "")))
	n, err := s.AbortIncompleteUploads(ctx, "")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	entries, err := os.ReadDir(filepath.Join(root, "b"))
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, "etcd.backup.gz", entries[0].Name())

	// A put-if-absent that finds the name taken leaves no temp file.
	_, err = s.Put(ctx, "b/etcd.backup.gz", strings.NewReader("other"), backupstore.PutOptions{IfAbsent: true})
	require.ErrorIs(t, err, backupstore.ErrExists)
	entries, err = os.ReadDir(filepath.Join(root, "b"))
	require.NoError(t, err)
	require.Len(t, entries, 1, "only the object: %v", entries)
	assert.Equal(t, "data", get(t, s, "b/etcd.backup.gz"))
	// Both stores bound a put-if-absent body alike.
	_, err = s.Put(ctx, "b/big", strings.NewReader(strings.Repeat("x", backupstore.MaxIfAbsentBytes+1)), backupstore.PutOptions{IfAbsent: true})
	require.ErrorContains(t, err, "limited to")
	_, err = s.Stat(ctx, "b/big")
	require.ErrorIs(t, err, backupstore.ErrNotFound)

	// Deleting the last object of a folder removes the folder, not the root.
	require.NoError(t, s.Delete(ctx, "b/etcd.backup.gz"))
	_, err = os.Stat(filepath.Join(root, "b"))
	assert.True(t, os.IsNotExist(err))
	_, err = os.Stat(root)
	assert.NoError(t, err)
}

func TestFileStoreMissingRootListsEmpty(t *testing.T) {
	s := open(t, "file://"+t.TempDir()+"/not/yet/created")
	assert.Empty(t, mustList(t, s, ""))
	assert.Empty(t, mustList(t, s, "control/"))
	n, err := s.AbortIncompleteUploads(context.Background(), "")
	require.NoError(t, err)
	assert.Zero(t, n)
}

// TestSDKEndpointVariable: AWS_ENDPOINT_URL_S3, which the SDK reads itself,
// also selects path-style addressing and skips the bucket region lookup.
func TestSDKEndpointVariable(t *testing.T) {
	srv := s3test.StartGoFakeS3(t, bucket)
	for k, v := range map[string]string{
		backupstore.EnvEndpoint:       "",
		"AWS_ENDPOINT_URL_S3":         srv.Endpoint,
		"AWS_ACCESS_KEY_ID":           srv.AccessKey,
		"AWS_SECRET_ACCESS_KEY":       srv.SecretKey,
		"AWS_REGION":                  srv.Region,
		"AWS_CONFIG_FILE":             filepath.Join(t.TempDir(), "none"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(t.TempDir(), "none"),
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		t.Setenv(k, v)
	}
	s := open(t, "s3://"+bucket+"/via-sdk-variable")
	put(t, s, "control/etcd-cluster-spec", `{"memberCount": 1}`)
	assert.Equal(t, `{"memberCount": 1}`, get(t, s, "control/etcd-cluster-spec"))
	head := headObject(t, srv, "s3://"+bucket+"/via-sdk-variable", "control/etcd-cluster-spec")
	assert.Equal(t, int64(len(`{"memberCount": 1}`)), aws.ToInt64(head.ContentLength))
}

// TestSSEKMSHeadersSent: both a single PutObject and a multipart upload ask
// for aws:kms with the given key.
func TestSSEKMSHeadersSent(t *testing.T) {
	const keyID = "arn:aws:kms:eu-central-1:111122223333:key/abcd"
	var mu sync.Mutex
	seen := map[string]string{} // request -> "sse|key"
	srv := s3test.StartGoFakeS3Wrapped(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut || r.Method == http.MethodPost {
				req := r.Method + " " + path.Base(r.URL.Path)
				switch q := r.URL.Query(); {
				case q.Has("uploads"):
					req += " create-multipart"
				case q.Has("uploadId"):
					req = r.Method + " part-or-complete" // S3 wants SSE only on create
				}
				mu.Lock()
				if _, dup := seen[req]; !dup {
					seen[req] = r.Header.Get("X-Amz-Server-Side-Encryption") + "|" +
						r.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id")
				}
				mu.Unlock()
			}
			h.ServeHTTP(w, r)
		})
	}, bucket)
	srv.Setenv(t)
	s := open(t, "s3://"+bucket+"/sse")
	ctx := context.Background()
	_, err := s.Put(ctx, "small", strings.NewReader("meta"), backupstore.PutOptions{SSEKMSKeyID: keyID})
	require.NoError(t, err)
	_, err = s.Put(ctx, "large", newStream(9<<20), backupstore.PutOptions{SSEKMSKeyID: keyID})
	require.NoError(t, err)
	_, err = s.Put(ctx, "plain", strings.NewReader("x"), backupstore.PutOptions{})
	require.NoError(t, err)
	_, err = s.Put(ctx, "reservation", strings.NewReader("{}"), backupstore.PutOptions{SSEKMSKeyID: keyID, IfAbsent: true})
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[string]string{
		"PUT kopsdr-test":             "|", // CreateBucket, by s3test
		"PUT small":                   "aws:kms|" + keyID,
		"POST large create-multipart": "aws:kms|" + keyID,
		"PUT part-or-complete":        "|",
		"POST part-or-complete":       "|",
		"PUT plain":                   "|",
		"PUT reservation":             "aws:kms|" + keyID,
	}, seen)
}
