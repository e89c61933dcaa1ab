package backupstore

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// policyFromEnv resolves the retry policy as openS3 does, from the
// environment alone.
func policyFromEnv(t *testing.T) retryPolicy {
	t.Helper()
	none := filepath.Join(t.TempDir(), "none")
	t.Setenv("AWS_CONFIG_FILE", none)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", none)
	maxBackoff, err := checkRetryEnv()
	require.NoError(t, err)
	cfg, err := config.LoadDefaultConfig(context.Background())
	require.NoError(t, err)
	p, err := retryPolicyFor(cfg, maxBackoff)
	require.NoError(t, err)
	return p
}

func TestRetryPolicyDefaultsAndVariables(t *testing.T) {
	t.Setenv(EnvMaxAttempts, "")
	t.Setenv(EnvRetryMode, "")
	t.Setenv(EnvMaxBackoff, "")
	p := policyFromEnv(t)
	assert.Equal(t, retryPolicy{mode: aws.RetryModeStandard, maxAttempts: DefaultMaxAttempts, maxBackoff: DefaultMaxBackoff}, p)
	r := p.newRetryer()
	assert.IsType(t, &retry.Standard{}, r)
	assert.Equal(t, DefaultMaxAttempts, r.MaxAttempts())

	t.Setenv(EnvMaxAttempts, "7")
	t.Setenv(EnvRetryMode, "adaptive")
	t.Setenv(EnvMaxBackoff, "3s")
	p = policyFromEnv(t)
	assert.Equal(t, retryPolicy{mode: aws.RetryModeAdaptive, maxAttempts: 7, maxBackoff: 3 * time.Second}, p)
	r = p.newRetryer()
	assert.IsType(t, &retry.AdaptiveMode{}, r)
	assert.Equal(t, 7, r.MaxAttempts())
}

func responseErr(status int) error {
	return &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
		Err:      errors.New("no body"),
	}
}

// TestRetryerRetriesThrottlesAndResets: 429 (which the SDK does not retry),
// 503 without a code (a HEAD's), S3 error codes and dropped connections.
func TestRetryerRetriesThrottlesAndResets(t *testing.T) {
	r := retryPolicy{mode: aws.RetryModeStandard, maxAttempts: 10, maxBackoff: time.Second}.newRetryer()
	for name, err := range map[string]error{
		"429":             responseErr(http.StatusTooManyRequests),
		"503":             responseErr(http.StatusServiceUnavailable),
		"500":             responseErr(http.StatusInternalServerError),
		"SlowDown":        &smithy.GenericAPIError{Code: "SlowDown"},
		"SlowDownWrite":   &smithy.GenericAPIError{Code: "SlowDownWrite"}, // MinIO
		"RequestTimeout":  &smithy.GenericAPIError{Code: "RequestTimeout"},
		"connection drop": &smithyhttp.RequestSendError{Err: errors.New("write: connection reset by peer")},
	} {
		assert.True(t, r.IsErrorRetryable(err), name)
	}
	for name, err := range map[string]error{
		"403": responseErr(http.StatusForbidden),
		"404": responseErr(http.StatusNotFound),
	} {
		assert.False(t, r.IsErrorRetryable(err), name)
	}
}

// TestBackoffBounds: full jitter below base x 2^(attempt-1), with a base of
// 1s for throttles (resets included) and 50ms otherwise, never above the cap.
func TestBackoffBounds(t *testing.T) {
	const maxBackoff = 20 * time.Second
	b := jitterBackoff{max: maxBackoff, throttle: throttleSigns{}}
	reset := &smithyhttp.RequestSendError{Err: errors.New("write: connection reset by peer")}
	for attempt := 1; attempt <= 40; attempt++ {
		for _, tc := range []struct {
			err  error
			base time.Duration
		}{{responseErr(503), time.Second}, {reset, time.Second}, {responseErr(500), 50 * time.Millisecond}} {
			limit := min(maxBackoff, tc.base<<min(attempt-1, 20))
			var longest time.Duration
			for range 200 {
				d, err := b.BackoffDelay(attempt, tc.err)
				require.NoError(t, err)
				require.GreaterOrEqual(t, d, time.Duration(0))
				require.LessOrEqual(t, d, limit, "attempt %d", attempt)
				longest = max(longest, d)
			}
			// Jitter, not a fixed wait: 200 draws spread over the range.
			assert.Greater(t, longest, limit/2, "attempt %d", attempt)
		}
	}
}
