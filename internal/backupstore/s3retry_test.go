package backupstore_test

import (
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/test/s3test"
)

// faultyStore opens a store on gofakes3 behind a fault injector that passes
// everything until the test switches faults on. Backoffs are capped at 2ms
// through the worker's own variable, so retries cost no test time.
func faultyStore(t *testing.T) (backupstore.Store, *s3test.Faults) {
	t.Helper()
	f := &s3test.Faults{}
	srv := s3test.StartGoFakeS3Wrapped(t, f.Wrap, bucket)
	srv.Setenv(t)
	t.Setenv(backupstore.EnvMaxBackoff, "2ms")
	t.Setenv(backupstore.EnvMaxAttempts, "")
	t.Setenv(backupstore.EnvRetryMode, "")
	f.ResetStats() // forget creating the bucket
	return open(t, "s3://"+bucket+"/faults"), f
}

// size20MiB makes three parts of backupstore.PartSize (8+8+4 MiB).
const size20MiB = 20 << 20

// putStream puts size bytes of newStream and returns their sha256.
func putStream(t *testing.T, s backupstore.Store, key string, size int64) ([]byte, int64, error) {
	t.Helper()
	sum := sha256.New()
	n, err := s.Put(context.Background(), key, io.TeeReader(newStream(size), sum), backupstore.PutOptions{})
	return sum.Sum(nil), n, err
}

func sha256Of(t *testing.T, s backupstore.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	defer rc.Close()
	sum := sha256.New()
	_, err = io.Copy(sum, rc)
	require.NoError(t, err)
	return sum.Sum(nil)
}

// assertNothingLeft: no object under key and no incomplete multipart upload.
func assertNothingLeft(t *testing.T, s backupstore.Store, key string) {
	t.Helper()
	_, err := s.Stat(context.Background(), key)
	assert.ErrorIs(t, err, backupstore.ErrNotFound)
	n, err := s.AbortIncompleteUploads(context.Background(), "")
	require.NoError(t, err)
	assert.Zero(t, n, "incomplete multipart uploads left behind")
}

// TestPutRetriesFailedParts: with every 2nd or 3rd request failing (503
// SlowDown and dropped connections in turn), a multipart Put succeeds with
// the default attempts, each failed part retried alone: one upload, one
// successful request per part, the stream read once.
func TestPutRetriesFailedParts(t *testing.T) {
	for _, every := range []int{2, 3} {
		t.Run("every "+strconv.Itoa(every), func(t *testing.T) {
			s, faults := faultyStore(t)
			faults.FailEvery(every)
			want, n, err := putStream(t, s, "big/etcd.backup.gz", size20MiB)
			require.NoError(t, err)
			assert.Equal(t, int64(size20MiB), n)
			faults.FailEvery(0)

			st := faults.Stats()
			assert.Positive(t, st.SlowDowns)
			assert.Positive(t, st.Drops)
			assert.Positive(t, st.Failed["UploadPart"], "no part failed, so none was retried: %+v", st)
			assert.Equal(t, map[string]int{"CreateMultipartUpload": 1, "UploadPart": 3, "CompleteMultipartUpload": 1},
				st.Succeeded, "failed: %v", st.Failed)
			assert.Equal(t, want, sha256Of(t, s, "big/etcd.backup.gz"))
			n2, err := s.AbortIncompleteUploads(context.Background(), "")
			require.NoError(t, err)
			assert.Zero(t, n2)
		})
	}
}

// TestPutRidesOutThrottlingBursts: every part is throttled or cut off five
// times running, as under a burst that lasts (the SDK's default of three
// attempts fails here), and the Put still succeeds, once through.
func TestPutRidesOutThrottlingBursts(t *testing.T) {
	s, faults := faultyStore(t)
	tries := map[string]int{} // by part number; the matcher runs under the injector's lock
	faults.FailMatching(1, func(r *http.Request) bool {
		if s3test.Op(r) != "UploadPart" {
			return false
		}
		part := r.URL.Query().Get("partNumber")
		tries[part]++
		return tries[part] <= 5
	})
	want, _, err := putStream(t, s, "burst/etcd.backup.gz", size20MiB)
	require.NoError(t, err)
	faults.FailEvery(0)

	st := faults.Stats()
	assert.Equal(t, 15, st.Failed["UploadPart"])
	assert.Equal(t, map[string]int{"CreateMultipartUpload": 1, "UploadPart": 3, "CompleteMultipartUpload": 1}, st.Succeeded)
	assert.Equal(t, want, sha256Of(t, s, "burst/etcd.backup.gz"))
}

// TestPutGivesUpAfterConfiguredAttempts: when every request fails, a Put
// makes the configured number of attempts (kopsdr's default, or
// AWS_MAX_ATTEMPTS), then fails with an error that says so and how to
// change it, and leaves nothing behind.
func TestPutGivesUpAfterConfiguredAttempts(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want int
	}{{"", backupstore.DefaultMaxAttempts}, {"4", 4}} {
		t.Run("AWS_MAX_ATTEMPTS="+tc.env, func(t *testing.T) {
			s, faults := faultyStore(t)
			t.Setenv(backupstore.EnvMaxAttempts, tc.env)
			s = open(t, s.URL())
			faults.FailEvery(1)
			_, _, err := putStream(t, s, "down/etcd.backup.gz", size20MiB)
			require.Error(t, err)
			faults.FailEvery(0)

			assert.ErrorContains(t, err, "gave up after "+strconv.Itoa(tc.want)+" attempts")
			assert.ErrorContains(t, err, "AWS_MAX_ATTEMPTS")
			assert.ErrorContains(t, err, "KOPSDR_S3_MAX_BACKOFF")
			_, isInput := inputerr.As(err)
			assert.False(t, isInput, "a store that is down is worth retrying later, not bad input")
			st := faults.Stats()
			assert.Equal(t, map[string]int{"CreateMultipartUpload": tc.want}, st.Failed)
			assertNothingLeft(t, s, "down/etcd.backup.gz")
		})
	}
}

// TestPutAbortsWhenPartsKeepFailing: parts that fail every attempt fail the
// Put, and the upload is aborted even when the store also throttles the
// uploader's own abort until its attempts run out.
func TestPutAbortsWhenPartsKeepFailing(t *testing.T) {
	s, faults := faultyStore(t)
	t.Setenv(backupstore.EnvMaxAttempts, "3")
	s = open(t, s.URL())
	aborts := 0
	faults.FailMatching(1, func(r *http.Request) bool {
		switch s3test.Op(r) {
		case "UploadPart":
			return true
		case "AbortMultipartUpload":
			aborts++
			return aborts <= 3
		}
		return false
	})
	_, _, err := putStream(t, s, "parts/etcd.backup.gz", size20MiB)
	require.ErrorContains(t, err, "gave up after 3 attempts")
	faults.FailEvery(0)

	st := faults.Stats()
	assert.Equal(t, 3, st.Failed["AbortMultipartUpload"], "the uploader's abort")
	assert.Equal(t, 1, st.Succeeded["AbortMultipartUpload"], "kopsdr's abort after it")
	assertNothingLeft(t, s, "parts/etcd.backup.gz")
}

// TestAdaptiveRetryMode: AWS_RETRY_MODE=adaptive gets the same tuning.
func TestAdaptiveRetryMode(t *testing.T) {
	s, faults := faultyStore(t)
	t.Setenv(backupstore.EnvRetryMode, "adaptive")
	s = open(t, s.URL())
	faults.FailEvery(3)
	want, _, err := putStream(t, s, "adaptive/etcd.backup.gz", size20MiB)
	require.NoError(t, err)
	faults.FailEvery(0)
	assert.Positive(t, faults.Stats().Failed["UploadPart"])
	assert.Equal(t, want, sha256Of(t, s, "adaptive/etcd.backup.gz"))
}

func TestRetryVariablesRejectBadValues(t *testing.T) {
	srv := s3test.StartGoFakeS3(t, bucket)
	for _, tc := range []struct{ name, value string }{
		{backupstore.EnvMaxAttempts, "ten"},
		{backupstore.EnvMaxAttempts, "0"},
		{backupstore.EnvMaxAttempts, "-1"}, // the SDK would retry forever
		{backupstore.EnvMaxAttempts, "1000"},
		{backupstore.EnvRetryMode, "fast"},
		{backupstore.EnvMaxBackoff, "20"},
		{backupstore.EnvMaxBackoff, "0s"},
		{backupstore.EnvMaxBackoff, "-1s"},
		{backupstore.EnvMaxBackoff, "500us"},
		{backupstore.EnvMaxBackoff, "20h"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			srv.Setenv(t)
			t.Setenv(tc.name, tc.value)
			_, err := backupstore.Open(context.Background(), "s3://"+bucket+"/main", backupstore.Options{})
			e, ok := inputerr.As(err)
			require.True(t, ok, "want *inputerr.Error, got %v", err)
			assert.Equal(t, tc.name, e.Field)
			assert.Equal(t, tc.value, e.Value)
			assert.Contains(t, e.Fix, "unset it")
		})
	}

	t.Run("max_attempts in the AWS config file", func(t *testing.T) {
		srv.Setenv(t)
		cfg := filepath.Join(t.TempDir(), "config")
		require.NoError(t, os.WriteFile(cfg, []byte("[default]\nmax_attempts = -1\n"), 0o600))
		t.Setenv("AWS_CONFIG_FILE", cfg)
		_, err := backupstore.Open(context.Background(), "s3://"+bucket+"/main", backupstore.Options{})
		e, ok := inputerr.As(err)
		require.True(t, ok, "want *inputerr.Error, got %v", err)
		assert.Equal(t, "max_attempts", e.Field)
		assert.Equal(t, "-1", e.Value)
	})
}
