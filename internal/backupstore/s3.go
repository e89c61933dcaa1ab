package backupstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/localonly"
)

// Multipart sizing: memory per Put is bounded by about PartSize x
// (Concurrency+1) whatever the object size; 8 MiB parts still allow objects
// up to 78 GiB within S3's 10,000-part limit.
const (
	PartSize    = 8 << 20
	Concurrency = 3
)

// The variables etcd-manager and kops read (kops util/pkg/vfs s3context):
// with S3_ENDPOINT set they talk to a non-AWS S3 with static keys from
// S3_ACCESS_KEY_ID/S3_SECRET_ACCESS_KEY (both required), region S3_REGION
// (default us-east-1) and path-style addressing. kopsdr honours the same so
// one environment serves kopsdr and etcd-manager alike.
const (
	EnvEndpoint  = "S3_ENDPOINT"
	EnvRegion    = "S3_REGION"
	EnvAccessKey = "S3_ACCESS_KEY_ID"
	EnvSecretKey = "S3_SECRET_ACCESS_KEY"
)

// EnvLocalOnly, set to 1 or true (tests and kopsdr-worker --dev set it),
// keeps every S3 connection on this machine: a store needs an endpoint
// override on loopback, the instance metadata service is never asked for
// credentials, and a connection to any other address is refused before it
// is made.
const EnvLocalOnly = localonly.Env

// LocalOnly reports whether EnvLocalOnly is set.
func LocalOnly() bool { return localonly.On() }

// sdkRetryer leaves the SDK's own retryer in place: a test seam, so the
// benchmark can measure the SDK's defaults beside kopsdr's.
var sdkRetryer = false

// imdsAddr is where the SDK's default credential chain looks last, and
// what a test or dev machine must never contact.
const imdsAddr = "169.254.169.254"

// dialControl sees the resolved address of every connection a local S3
// client makes, before it is made; an error refuses it. A test seam.
var dialControl = func(network, address string) error { return nil }

// newLocalClient is the SDK's default HTTP client for an S3 store that must
// stay on this machine. The check sits in the dialer's Control hook, which
// sees resolved addresses (a proxy's included) and survives the metadata
// client's own dialer options; it must stay an *awshttp.BuildableClient for
// AWS_CA_BUNDLE to apply. With localOnly an address off loopback is refused.
func newLocalClient(localOnly bool) *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().WithDialerOptions(func(d *net.Dialer) {
		d.Control = func(network, address string, _ syscall.RawConn) error {
			if host, _, err := net.SplitHostPort(address); localOnly && (err != nil || !isLoopbackHost(host)) {
				return fmt.Errorf("%s is set: refusing to connect to %s, which is not on this machine", EnvLocalOnly, address)
			}
			return dialControl(network, address)
		}
	})
}

// isLoopbackHost is true for localhost and loopback IPs. Other names are
// not resolved: a name that merely points at 127.0.0.1 does not count.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// endpointOverride is the S3 endpoint set in the environment, if any:
// S3_ENDPOINT (kops, etcd-manager), or the SDK's AWS_ENDPOINT_URL_S3 and
// AWS_ENDPOINT_URL.
func endpointOverride() string {
	for _, k := range []string{EnvEndpoint, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return ""
}

func isLoopbackEndpoint(e string) bool {
	if !strings.Contains(e, "://") {
		e = "https://" + e
	}
	u, err := url.Parse(e)
	return err == nil && u.Host != "" && isLoopbackHost(u.Hostname())
}

type s3Store struct {
	loc    Location
	client *s3.Client
}

func openS3(ctx context.Context, loc Location, o Options) (*s3Store, error) {
	region := o.Region
	var loadOpts []func(*config.LoadOptions) error
	endpoint := os.Getenv(EnvEndpoint)
	if endpoint != "" {
		var err error
		if endpoint, err = normalizeEndpoint(endpoint); err != nil {
			return nil, err
		}
		ak, sk := os.Getenv(EnvAccessKey), os.Getenv(EnvSecretKey)
		if ak == "" || sk == "" {
			missing := EnvAccessKey
			if ak != "" {
				missing = EnvSecretKey
			}
			return nil, inputerr.New(missing, "", "set both "+EnvAccessKey+" and "+EnvSecretKey+
				" when "+EnvEndpoint+" is set (etcd-manager requires them too)")
		}
		loadOpts = append(loadOpts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(ak, sk, "")))
		if region == "" {
			region = os.Getenv(EnvRegion)
		}
		if region == "" {
			region = "us-east-1"
		}
	}
	if region != "" {
		loadOpts = append(loadOpts, config.WithRegion(region))
	}
	local := LocalOnly()
	override := endpointOverride()
	if local && !isLoopbackEndpoint(override) {
		return nil, inputerr.New(EnvEndpoint, override, "with "+EnvLocalOnly+" set (tests, kopsdr-worker --dev) an S3 store needs an endpoint on this machine, e.g. "+
			EnvEndpoint+"=http://127.0.0.1:9000; or unset "+EnvLocalOnly+" to reach AWS")
	}
	if local || isLoopbackEndpoint(override) {
		// A local S3 never runs on EC2: without this, missing keys send the
		// default credential chain to the metadata service at imdsAddr.
		loadOpts = append(loadOpts, config.WithHTTPClient(newLocalClient(local)),
			config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	maxBackoff, err := checkRetryEnv()
	if err != nil {
		return nil, err
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	policy, err := retryPolicyFor(cfg, maxBackoff)
	if err != nil {
		return nil, err
	}
	if !sdkRetryer {
		// Each client calls this for a retryer of its own. The attempts are
		// in the policy already; left set, the SDK would wrap it once more.
		cfg.Retryer, cfg.RetryMaxAttempts = policy.newRetryer, 0
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1" // only used to find the bucket's real region below
	}
	client := newS3Client(cfg, endpoint)
	custom := client.Options().BaseEndpoint != nil
	if !custom && o.Region == "" {
		// A bucket answers only in its own region (301 elsewhere). kops looks
		// the region up the same way, so AWS_REGION needn't match the bucket.
		pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		found, err := manager.GetBucketRegion(pctx, client, loc.Bucket)
		cancel()
		var nf manager.BucketNotFound
		switch {
		case errors.As(err, &nf):
			return nil, noSuchBucket(loc, err)
		case err == nil && found != "" && found != cfg.Region:
			cfg.Region = found
			client = newS3Client(cfg, endpoint)
		}
		// Other errors: keep the configured region; the first real request
		// reports what is wrong with a proper error.
	}
	return &s3Store{loc: loc, client: client}, nil
}

// newS3Client uses path-style addressing whenever the endpoint is not AWS's:
// S3_ENDPOINT, or AWS_ENDPOINT_URL(_S3) which the SDK resolves itself before
// our option runs. Non-AWS servers rarely have wildcard DNS for buckets.
func newS3Client(cfg aws.Config, endpoint string) *s3.Client {
	return s3.NewFromConfig(cfg, func(so *s3.Options) {
		if endpoint != "" {
			so.BaseEndpoint = aws.String(endpoint)
		}
		if so.BaseEndpoint != nil {
			so.UsePathStyle = true
		}
		// The SDK otherwise logs to stderr on every Get of a multipart object
		// (whose composite checksum it cannot validate); callers that care
		// about integrity check the snapshot's own sha256 trailer anyway.
		so.DisableLogOutputChecksumValidationSkipped = true
	})
}

// normalizeEndpoint accepts "host:port" as kops does (the v1 SDK added
// https://) and requires an http(s) URL otherwise.
func normalizeEndpoint(e string) (string, error) {
	if !strings.Contains(e, "://") {
		e = "https://" + e
	}
	u, err := url.Parse(e)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", inputerr.New(EnvEndpoint, e, "use an http(s) URL such as https://s3.example.com:9000")
	}
	return strings.TrimSuffix(e, "/"), nil
}

func (s *s3Store) URL() string { return s.loc.URL() }

func (s *s3Store) fullKey(key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	return s.fullPrefix(key), nil
}

// fullPrefix joins a relative key or prefix to the store's prefix. The root
// listing gets a trailing slash so s3://b/main never lists s3://b/main2.
func (s *s3Store) fullPrefix(p string) string {
	if s.loc.Prefix == "" {
		return p
	}
	return s.loc.Prefix + "/" + p
}

func (s *s3Store) relKey(full string) string {
	if s.loc.Prefix == "" {
		return full
	}
	return strings.TrimPrefix(full, s.loc.Prefix+"/")
}

func (s *s3Store) Put(ctx context.Context, key string, r io.Reader, o PutOptions) (int64, error) {
	full, err := s.fullKey(key)
	if err != nil {
		return 0, err
	}
	in := &s3.PutObjectInput{
		Bucket: aws.String(s.loc.Bucket),
		Key:    aws.String(full),
		Body:   &countingReader{r: r},
	}
	if o.ContentType != "" {
		in.ContentType = aws.String(o.ContentType)
	}
	if o.SSEKMSKeyID != "" {
		in.ServerSideEncryption = types.ServerSideEncryptionAwsKms
		in.SSEKMSKeyId = aws.String(o.SSEKMSKeyID)
	}
	if o.IfAbsent {
		return s.putIfAbsent(ctx, key, in, r)
	}
	// The uploader sends one PutObject for small bodies and a multipart upload
	// otherwise; on error or cancel it aborts the upload (LeavePartsOnError is
	// false), so no half-written object ever becomes visible.
	up := manager.NewUploader(s.client, func(u *manager.Uploader) {
		u.PartSize = PartSize
		u.Concurrency = Concurrency
	})
	_, err = up.Upload(ctx, in)
	n := in.Body.(*countingReader).n
	if err != nil {
		s.abortFailedUpload(ctx, full, err)
		return n, s.mapErr(ctx, "put", key, err)
	}
	return n, nil
}

// putIfAbsent sends a small body in one conditional PutObject. The
// uploader is not used: it would turn a large body into a multipart
// upload, whose completion it sends without the condition.
func (s *s3Store) putIfAbsent(ctx context.Context, key string, in *s3.PutObjectInput, r io.Reader) (int64, error) {
	body, err := io.ReadAll(io.LimitReader(r, MaxIfAbsentBytes+1))
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	if len(body) > MaxIfAbsentBytes {
		return 0, fmt.Errorf("put %s: %w", key, errIfAbsentTooLarge)
	}
	in.Body = bytes.NewReader(body)
	in.IfNoneMatch = aws.String("*")
	if _, err := s.client.PutObject(ctx, in); err != nil {
		return 0, s.mapErr(ctx, "put", key, err)
	}
	return int64(len(body)), nil
}

// abortFailedUpload makes sure a failed multipart upload does not linger.
// The uploader aborts with the caller's context, which fails when that
// context was cancelled, and it drops the abort's own error (a store that
// throttled the parts may throttle the abort until its attempts run out);
// so abort again, with fresh attempts and a context that outlives the
// caller's. After a good abort this costs one request answered NoSuchUpload.
func (s *s3Store) abortFailedUpload(ctx context.Context, fullKey string, err error) {
	var mf manager.MultiUploadFailure
	if !errors.As(err, &mf) || mf.UploadID() == "" {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_, _ = s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
		Bucket:   aws.String(s.loc.Bucket),
		Key:      aws.String(fullKey),
		UploadId: aws.String(mf.UploadID()),
	})
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (s *s3Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	full, err := s.fullKey(key)
	if err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.loc.Bucket),
		Key:    aws.String(full),
	})
	if err != nil {
		return nil, s.mapErr(ctx, "get", key, err)
	}
	return out.Body, nil
}

func (s *s3Store) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	full, err := s.fullKey(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.loc.Bucket),
		Key:    aws.String(full),
	})
	if err != nil {
		return ObjectInfo{}, s.mapErr(ctx, "stat", key, err)
	}
	info := ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength)}
	if out.LastModified != nil {
		info.ModTime = *out.LastModified
	}
	return info, nil
}

func (s *s3Store) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	var out []ObjectInfo
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.loc.Bucket),
		Prefix: aws.String(s.fullPrefix(prefix)),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s.mapErr(ctx, "list", prefix, err)
		}
		for _, obj := range page.Contents {
			info := ObjectInfo{Key: s.relKey(aws.ToString(obj.Key)), Size: aws.ToInt64(obj.Size)}
			if obj.LastModified != nil {
				info.ModTime = *obj.LastModified
			}
			out = append(out, info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// deleteBatch is S3's limit of keys per DeleteObjects request.
const deleteBatch = 1000

// Delete sends one DeleteObjects per 1000 keys: keys in one batch go in no
// particular order, so callers that need an order call Delete once per step.
func (s *s3Store) Delete(ctx context.Context, keys ...string) error {
	for len(keys) > 0 {
		n := min(len(keys), deleteBatch)
		batch := keys[:n]
		keys = keys[n:]
		ids := make([]types.ObjectIdentifier, 0, len(batch))
		for _, k := range batch {
			full, err := s.fullKey(k)
			if err != nil {
				return err
			}
			ids = append(ids, types.ObjectIdentifier{Key: aws.String(full)})
		}
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(s.loc.Bucket),
			Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return s.mapErr(ctx, "delete", batch[0], err)
		}
		for _, e := range out.Errors {
			if aws.ToString(e.Code) == "NoSuchKey" {
				continue
			}
			apiErr := &smithy.GenericAPIError{Code: aws.ToString(e.Code), Message: aws.ToString(e.Message)}
			return s.mapErr(ctx, "delete", s.relKey(aws.ToString(e.Key)), apiErr)
		}
	}
	return nil
}

func (s *s3Store) AbortIncompleteUploads(ctx context.Context, prefix string) (int, error) {
	in := &s3.ListMultipartUploadsInput{
		Bucket: aws.String(s.loc.Bucket),
		Prefix: aws.String(s.fullPrefix(prefix)),
	}
	aborted := 0
	for {
		page, err := s.client.ListMultipartUploads(ctx, in)
		var apiErr smithy.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode() == "NoSuchUpload" {
			// Some S3 servers (gofakes3) answer NoSuchUpload for a bucket
			// that never had a multipart upload: nothing to abort.
			return aborted, nil
		}
		if err != nil {
			return aborted, s.mapErr(ctx, "list multipart uploads", prefix, err)
		}
		for _, u := range page.Uploads {
			_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
				Bucket:   aws.String(s.loc.Bucket),
				Key:      u.Key,
				UploadId: u.UploadId,
			})
			var gone *types.NoSuchUpload
			if err != nil && !errors.As(err, &gone) {
				return aborted, s.mapErr(ctx, "abort multipart upload", s.relKey(aws.ToString(u.Key)), err)
			}
			aborted++
		}
		if !aws.ToBool(page.IsTruncated) {
			return aborted, nil
		}
		in.KeyMarker, in.UploadIdMarker = page.NextKeyMarker, page.NextUploadIdMarker
	}
}

// accessDeniedCodes are S3 error codes that no retry will fix.
var accessDeniedCodes = map[string]bool{
	"AccessDenied":                true,
	"AllAccessDisabled":           true,
	"SignatureDoesNotMatch":       true,
	"InvalidAccessKeyId":          true,
	"InvalidToken":                true,
	"ExpiredToken":                true,
	"TokenRefreshRequired":        true,
	"AccountProblem":              true,
	"Forbidden":                   true, // HEAD responses carry no body, so no code
	"InvalidClientTokenId":        true,
	"UnrecognizedClientException": true,
	"XAdminUserNotFound":          true, // versitygw's answer to an unknown access key
}

// mapErr turns S3 errors into the package's sentinel errors. A HEAD that
// answers 404 cannot tell a missing object from a missing bucket, so it asks.
func (s *s3Store) mapErr(ctx context.Context, op, key string, err error) error {
	var apiErr smithy.APIError
	code := ""
	if errors.As(err, &apiErr) {
		code = apiErr.ErrorCode()
	}
	var gaveUp *retry.MaxAttemptsError
	status := 0
	var withStatus interface{ HTTPStatusCode() int }
	if errors.As(err, &withStatus) {
		status = withStatus.HTTPStatusCode()
	}
	switch {
	case code == "NoSuchBucket":
		return noSuchBucket(s.loc, err)
	case accessDeniedCodes[code] || status == http.StatusForbidden:
		return fmt.Errorf("%s %s in %s: %w: %w", op, key, s.URL(), ErrAccessDenied, err)
	case code == "NoSuchKey":
		return fmt.Errorf("%s %s: %w", op, key, ErrNotFound)
	case op == "put" && (code == "PreconditionFailed" || status == http.StatusPreconditionFailed ||
		code == "ConditionalRequestConflict"):
		// 409 ConditionalRequestConflict: another conditional write to the
		// key was under way; it, not this one, may now hold the key.
		return fmt.Errorf("%s %s in %s: %w", op, key, s.URL(), ErrExists)
	case code == "NotFound" || (status == http.StatusNotFound && (op == "get" || op == "stat")):
		return s.explainHeadNotFound(ctx, op, key)
	case errors.As(err, &gaveUp):
		return fmt.Errorf("%s %s in %s: the store kept failing, gave up after %d attempts of one request "+
			"(if it throttles for longer, raise %s or %s): %w", op, key, s.URL(), gaveUp.Attempt, EnvMaxAttempts, EnvMaxBackoff, err)
	}
	return fmt.Errorf("%s %s in %s: %w", op, key, s.URL(), err)
}

// explainHeadNotFound resolves a bodiless 404 (HEAD has no error document):
// the object, the bucket, or (on some servers) the access key may be what
// is missing. A one-key listing answers with a proper error code. Whoever
// got a 404 rather than a 403 from HeadObject may list the bucket, so the
// probe needs no extra permission.
func (s *s3Store) explainHeadNotFound(ctx context.Context, op, key string) error {
	full, _ := s.fullKey(key)
	_, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
		Bucket:  aws.String(s.loc.Bucket),
		Prefix:  aws.String(full),
		MaxKeys: aws.Int32(1),
	})
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch code := apiErr.ErrorCode(); {
		case code == "NoSuchBucket":
			return noSuchBucket(s.loc, err)
		case accessDeniedCodes[code]:
			return fmt.Errorf("%s %s in %s: %w: %w", op, key, s.URL(), ErrAccessDenied, err)
		}
	}
	return fmt.Errorf("%s %s: %w", op, key, ErrNotFound)
}

func noSuchBucket(loc Location, err error) error {
	return inputerr.Wrap(fmt.Errorf("bucket %q does not exist: %w", loc.Bucket, err), Field, loc.URL(),
		"create the bucket, or fix the bucket name ("+urlFix+")")
}
