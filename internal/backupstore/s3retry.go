package backupstore

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"

	"github.com/kopsdr/kopsdr/internal/inputerr"
)

// Retries of S3 requests. A backup's Put is one pass over a stream that
// cannot be rewound (the etcd snapshot through gzip), so a request the SDK
// gives up on fails the whole Put and Temporal streams the snapshot again.
// Every single request, a multipart part included (the uploader buffers
// parts, so their bodies rewind), is therefore retried here, long enough to
// ride out a store that answers bursts with 503 SlowDown.
//
// The SDK reads AWS_MAX_ATTEMPTS and AWS_RETRY_MODE (and max_attempts and
// retry_mode in the AWS config file) itself; kopsdr respects them and only
// supplies its own defaults when they are unset. The SDK has no variable for
// the backoff cap, hence KOPSDR_S3_MAX_BACKOFF.
const (
	EnvMaxAttempts = "AWS_MAX_ATTEMPTS"
	EnvRetryMode   = "AWS_RETRY_MODE"
	EnvMaxBackoff  = "KOPSDR_S3_MAX_BACKOFF"
)

// DefaultMaxAttempts is ten where the SDK has three. When a store fails
// half the requests, one in 8 fails three times running, and one such part
// fails the whole backup: a 200 MB one (27 requests) then succeeds 3% of the
// time, with ten attempts 97%. DefaultMaxBackoff is the SDK's cap. With the throttle base below one
// request then backs off for at most 1+2+4+8+16+4x20 = 111 s (55 s on
// average) before it gives up, under the 2-minute limit of the workflows'
// short store activities.
const (
	DefaultMaxAttempts = 10
	DefaultMaxBackoff  = 20 * time.Second
)

// Backoff bases, doubled per retry up to the cap, with full jitter (a
// uniform delay between zero and that) so a fleet's workers that were
// throttled together do not come back together. A throttle means the store
// needs relief: wait on the scale of seconds, as the SDK's own revised
// retry behaviour (AWS_NEW_RETRIES_2026) does. Other retryable answers (500,
// RequestTimeout) are usually over at once.
const (
	throttleBase  = time.Second
	transientBase = 50 * time.Millisecond
	maxAttemptsOK = 100 // more is a typo, or a wish to retry forever
	maxBackoffOK  = 5 * time.Minute
)

// extraThrottleCodes are throttling answers of S3-compatible stores the SDK
// does not list: MinIO's SlowDownRead/SlowDownWrite, and TooManyRequests,
// which some stores send with status 429.
var extraThrottleCodes = map[string]struct{}{
	"SlowDownRead":    {},
	"SlowDownWrite":   {},
	"TooManyRequests": {},
}

// throttleSigns counts as a throttle, besides the SDK's error codes:
//   - a 503 or 429 whatever its body says: S3 uses 503 for SlowDown, and a
//     HEAD request's error has no body at all;
//   - a connection reset or refused: the SDK sets Expect: 100-continue on
//     parts, but net/http never waits for the 100 (the SDK's request carries
//     no HTTP version), so the body goes out at once; a store that refuses a
//     part early with SlowDown and closes the connection then shows up here
//     as a reset in the middle of the body, not as a 503.
type throttleSigns struct{}

func (throttleSigns) IsErrorThrottle(err error) aws.Ternary {
	var e interface{ HTTPStatusCode() int }
	if errors.As(err, &e) {
		switch e.HTTPStatusCode() {
		case http.StatusServiceUnavailable, http.StatusTooManyRequests:
			return aws.TrueTernary
		}
	}
	if (retry.RetryableConnectionError{}).IsErrorRetryable(err) == aws.TrueTernary {
		return aws.TrueTernary
	}
	return aws.UnknownTernary
}

// retryPolicy is what the S3 client's retryer is built from.
type retryPolicy struct {
	mode        aws.RetryMode
	maxAttempts int
	maxBackoff  time.Duration
}

// checkRetryEnv validates the retry variables before the SDK reads them, so
// a bad value gets an error naming it and the fix, and returns the backoff
// cap (the default when unset).
func checkRetryEnv() (time.Duration, error) {
	if v := os.Getenv(EnvMaxAttempts); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > maxAttemptsOK {
			return 0, inputerr.New(EnvMaxAttempts, v, "set a whole number of attempts per S3 request from 1 to "+
				strconv.Itoa(maxAttemptsOK)+", or unset it for kopsdr's default of "+strconv.Itoa(DefaultMaxAttempts))
		}
	}
	if v := os.Getenv(EnvRetryMode); v != "" {
		if _, err := aws.ParseRetryMode(v); err != nil {
			return 0, inputerr.New(EnvRetryMode, v, "set standard or adaptive, or unset it for standard")
		}
	}
	v := os.Getenv(EnvMaxBackoff)
	if v == "" {
		return DefaultMaxBackoff, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Millisecond || d > maxBackoffOK {
		return 0, inputerr.New(EnvMaxBackoff, v, "set a Go duration from 1ms to "+maxBackoffOK.String()+
			" such as 20s, the longest wait between two attempts of one S3 request, or unset it for "+DefaultMaxBackoff.String())
	}
	return d, nil
}

// retryPolicyFor takes the mode and attempts the SDK resolved from the
// environment or the AWS config file, and kopsdr's defaults otherwise.
func retryPolicyFor(cfg aws.Config, maxBackoff time.Duration) (retryPolicy, error) {
	p := retryPolicy{mode: cfg.RetryMode, maxAttempts: cfg.RetryMaxAttempts, maxBackoff: maxBackoff}
	if p.mode == "" {
		p.mode = aws.RetryModeStandard
	}
	switch {
	case p.maxAttempts == 0: // unset
		p.maxAttempts = DefaultMaxAttempts
	case p.maxAttempts < 0 || p.maxAttempts > maxAttemptsOK: // from the config file; the variable was checked
		return p, inputerr.New("max_attempts", strconv.Itoa(p.maxAttempts),
			"set max_attempts in the AWS config file to a number from 1 to "+strconv.Itoa(maxAttemptsOK))
	}
	return p, nil
}

// newRetryer is the retryer of one S3 client; each client gets its own, so
// adaptive mode's send rate is learnt per store.
func (p retryPolicy) newRetryer() aws.Retryer {
	throttles := []retry.IsErrorThrottle{throttleSigns{}, retry.ThrottleErrorCode{Codes: extraThrottleCodes}}
	standard := func(o *retry.StandardOptions) {
		o.MaxAttempts = p.maxAttempts
		o.MaxBackoff = p.maxBackoff
		o.Retryables = append(o.Retryables,
			retry.RetryableHTTPStatusCode{Codes: map[int]struct{}{http.StatusTooManyRequests: {}}},
			retry.RetryableErrorCode{Codes: extraThrottleCodes})
		o.Throttles = append(o.Throttles, throttles...)
		o.Backoff = jitterBackoff{max: p.maxBackoff, throttle: retry.IsErrorThrottles(o.Throttles)}
		// The SDK's retry quota (500 tokens, 5 per retry that fails again)
		// guards a long-lived client against retry storms. A kopsdr client
		// lives for one activity, and when the quota runs dry mid-upload (a
		// few GB into a store failing half its requests) the next failed
		// part fails the Put, and its retry streams the whole snapshot again:
		// far more load than the retried part. Attempts and backoff bound it.
		o.RateLimiter = ratelimit.None
	}
	if p.mode == aws.RetryModeAdaptive {
		return retry.NewAdaptiveMode(func(o *retry.AdaptiveModeOptions) {
			o.StandardOptions = append(o.StandardOptions, standard)
			o.Throttles = append(o.Throttles, throttles...)
		})
	}
	return retry.NewStandard(standard)
}

// jitterBackoff waits a uniform random time up to base x 2^(attempt-1),
// capped at max; base depends on whether err is a throttle. Unlike the
// SDK's default it keeps the jitter at the cap, so retries that reach it
// stay spread out.
type jitterBackoff struct {
	max      time.Duration
	throttle retry.IsErrorThrottle
}

func (b jitterBackoff) BackoffDelay(attempt int, err error) (time.Duration, error) {
	base := transientBase
	if b.throttle.IsErrorThrottle(err) == aws.TrueTernary {
		base = throttleBase
	}
	d := b.max
	if n := max(attempt-1, 0); n < 30 && base<<n < d {
		d = base << n
	}
	return rand.N(d + 1), nil
}
