// Package s3test starts real S3 servers on 127.0.0.1 for tests: gofakes3 in
// process (fast, no auth) and versitygw as a subprocess (checks signatures,
// so access-denied paths can be tested). Both are torn down by t.Cleanup.
package s3test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"go/build"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/kopsdr/kopsdr/test/loopback"
)

// Server is one running S3 endpoint and the root credentials for it.
type Server struct {
	Endpoint  string // http://127.0.0.1:PORT, or https:// with CABundle
	CABundle  string // PEM file of the CA an https Endpoint's certificate is signed by
	Region    string
	AccessKey string
	SecretKey string
}

const (
	testRegion    = "us-east-1"
	testAccessKey = "kopsdr-test-access"
	testSecretKey = "kopsdr-test-secret-key"
)

// RequireAllEnv, when "1", turns a missing optional server binary from a
// skip into a failure, so CI cannot silently skip the versitygw tests.
const RequireAllEnv = "KOPSDR_REQUIRE_ALL"

// StartGoFakeS3 serves an in-memory gofakes3 over httptest (127.0.0.1) and
// creates buckets. gofakes3 accepts any credentials.
func StartGoFakeS3(t testing.TB, buckets ...string) *Server {
	t.Helper()
	return StartGoFakeS3Wrapped(t, nil, buckets...)
}

// StartGoFakeS3Wrapped is StartGoFakeS3 with wrap around the S3 handler, so
// a test can see the requests a client sends or make some of them fail.
func StartGoFakeS3Wrapped(t testing.TB, wrap func(http.Handler) http.Handler, buckets ...string) *Server {
	t.Helper()
	faker := gofakes3.New(s3mem.New(),
		gofakes3.WithAutoBucket(false),
		gofakes3.WithLogger(gofakes3.DiscardLog()))
	h := faker.Server()
	if wrap != nil {
		h = wrap(h)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	s := &Server{Endpoint: ts.URL, Region: testRegion, AccessKey: testAccessKey, SecretKey: testSecretKey}
	s.createBuckets(t, buckets)
	return s
}

// VersityGWVersion is the version the project installs; see VersityGWInstall.
const VersityGWVersion = "v1.8.0"

// VersityGWInstall is the command that installs the binary StartVersityGW runs.
const VersityGWInstall = "GOTOOLCHAIN=local go install github.com/versity/versitygw/cmd/versitygw@" + VersityGWVersion

// StartVersityGW runs `versitygw posix` on a 127.0.0.1 port kept for the
// test (test/loopback) with its data in t.TempDir(), and waits until it
// answers. Without the binary it skips, or fails when KOPSDR_REQUIRE_ALL=1.
func StartVersityGW(t testing.TB, buckets ...string) *Server {
	t.Helper()
	return startVersity(t, nil, buckets)
}

// TLSFiles are PEM files: the CA that signed Cert, and Cert and Key, for
// 127.0.0.1 (etcdtest.GenerateCerts writes such a set).
type TLSFiles struct{ CA, Cert, Key string }

// StartVersityGWTLS is StartVersityGW serving HTTPS with files, as AWS S3
// endpoints do: the SDK then sends payloads unsigned with a CRC32 trailer
// instead of hashing them for the signature. Env and Client trust files.CA.
func StartVersityGWTLS(t testing.TB, files TLSFiles, buckets ...string) *Server {
	t.Helper()
	return startVersity(t, &files, buckets)
}

func startVersity(t testing.TB, files *TLSFiles, buckets []string) *Server {
	t.Helper()
	bin := findVersityGW()
	if bin == "" {
		msg := "versitygw not found on PATH or in $(go env GOPATH)/bin; install it with: " + VersityGWInstall
		if os.Getenv(RequireAllEnv) == "1" {
			t.Fatal(msg + " (" + RequireAllEnv + "=1 makes this a failure)")
		}
		t.Skip(msg)
	}
	s := &Server{Region: testRegion, AccessKey: testAccessKey, SecretKey: testSecretKey}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(loopback.Ports(t, 1)[0]))
	s.Endpoint = "http://" + addr
	if files != nil {
		s.Endpoint, s.CABundle = "https://"+addr, files.CA
	}
	if err := startVersityGW(t, bin, addr, t.TempDir(), s, files); err != nil {
		t.Fatalf("starting versitygw: %v", err)
	}
	s.createBuckets(t, buckets)
	return s
}

func findVersityGW() string {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	for _, dir := range filepath.SplitList(build.Default.GOPATH) {
		p := filepath.Join(dir, "bin", "versitygw")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

// startVersityGW starts the gateway and returns once it answers HTTP, or
// with an error (and the process reaped) if it exits or never answers.
func startVersityGW(t testing.TB, bin, addr, dataDir string, s *Server, files *TLSFiles) error {
	var out lockedBuffer
	args := []string{"--port", addr, "--access", s.AccessKey, "--secret", s.SecretKey, "--region", s.Region, "--quiet"}
	if files != nil {
		args = append(args, "--cert", files.Cert, "--key", files.Key)
	}
	cmd := exec.Command(bin, append(args, "posix", dataDir)...)
	// A clean environment: VGW_* or ROOT_* variables of the developer's shell
	// must not change the gateway under test.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	client := &http.Client{Timeout: time.Second, Transport: s.transport(t)}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("versitygw exited (%v): %s", err, out.String())
		default:
		}
		// Any HTTP answer (an unsigned request gets 403) means it is serving.
		if resp, err := client.Get(s.Endpoint + "/"); err == nil {
			resp.Body.Close()
			t.Cleanup(stop)
			return nil
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("versitygw did not answer on %s within 20s: %s", addr, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (s *Server) createBuckets(t testing.TB, buckets []string) {
	t.Helper()
	c := s.Client(t)
	for _, b := range buckets {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)})
		cancel()
		if err != nil {
			t.Fatalf("creating bucket %q on %s: %v", b, s.Endpoint, err)
		}
	}
}

// Env returns the variables a subprocess (kopsdr, etcd-manager) needs to
// reach this server: etcd-manager's S3_* ones and the AWS SDK's own.
func (s *Server) Env() []string {
	env := []string{
		"S3_ENDPOINT=" + s.Endpoint,
		"S3_REGION=" + s.Region,
		"S3_ACCESS_KEY_ID=" + s.AccessKey,
		"S3_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_REGION=" + s.Region,
		// Nothing here runs on EC2: never wait on the instance metadata service.
		"AWS_EC2_METADATA_DISABLED=true",
		// And kopsdr's S3 client never leaves this machine.
		"KOPSDR_LOCAL_ONLY=1",
	}
	if s.CABundle != "" {
		env = append(env, "AWS_CA_BUNDLE="+s.CABundle)
	}
	return env
}

// transport trusts CABundle, if set.
func (s *Server) transport(t testing.TB) *http.Transport {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if s.CABundle != "" {
		pem, err := os.ReadFile(s.CABundle)
		if err != nil {
			t.Fatalf("s3test: CA bundle: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			t.Fatalf("s3test: no certificate in %s", s.CABundle)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return tr
}

// Setenv sets Env() for the rest of the test (t.Setenv restores it), and
// hides the developer's ~/.aws files and AWS_PROFILE so they cannot change
// what the test talks to.
func (s *Server) Setenv(t testing.TB) {
	t.Helper()
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	none := filepath.Join(t.TempDir(), "no-such-aws-file")
	t.Setenv("AWS_CONFIG_FILE", none)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", none)
	t.Setenv("AWS_PROFILE", "")
}

// Client is a path-style client with the root credentials, for assertions
// made beside the code under test.
func (s *Server) Client(t testing.TB) *s3.Client {
	t.Helper()
	return s3.New(s3.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		HTTPClient:   &http.Client{Transport: s.transport(t)},
		// Quiet the SDK's stderr notes about multipart checksums.
		DisableLogOutputChecksumValidationSkipped: true,
	})
}
