// Package temporalconn holds the flags and dialing code shared by the worker
// and the CLI, so both reach Temporal (local, self-hosted with mTLS, or
// Temporal Cloud with an API key) the same way.
package temporalconn

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"

	"github.com/kopsdr/kopsdr/workflows/api"
	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
)

// TaskQueue is the one task queue every kopsdr workflow and activity uses.
const TaskQueue = api.TaskQueue

// Options are the connection settings.
type Options struct {
	Address    string
	Namespace  string
	TLSCert    string
	TLSKey     string
	TLSCA      string
	ServerName string
	APIKey     string
	// MetricsHandler receives the SDK's own metrics; it is no flag (the
	// worker sets it with --metrics-address). Nil: the SDK's no-op.
	MetricsHandler client.MetricsHandler
}

// Bind registers the connection flags, with defaults from the environment
// variables the temporal CLI also uses.
func (o *Options) Bind(fs *pflag.FlagSet) {
	fs.StringVar(&o.Address, "address", envOr("TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port (env TEMPORAL_ADDRESS)")
	fs.StringVar(&o.Namespace, "namespace", envOr("TEMPORAL_NAMESPACE", "default"), "Temporal namespace (env TEMPORAL_NAMESPACE)")
	fs.StringVar(&o.TLSCert, "tls-cert", os.Getenv("TEMPORAL_TLS_CERT"), "client certificate for mTLS (env TEMPORAL_TLS_CERT)")
	fs.StringVar(&o.TLSKey, "tls-key", os.Getenv("TEMPORAL_TLS_KEY"), "client key for mTLS (env TEMPORAL_TLS_KEY)")
	fs.StringVar(&o.TLSCA, "tls-ca", os.Getenv("TEMPORAL_TLS_CA"), "CA bundle to verify the server (env TEMPORAL_TLS_CA)")
	fs.StringVar(&o.ServerName, "tls-server-name", os.Getenv("TEMPORAL_TLS_SERVER_NAME"), "override the TLS server name")
	fs.StringVar(&o.APIKey, "api-key", os.Getenv("TEMPORAL_API_KEY"), "API key for Temporal Cloud (env TEMPORAL_API_KEY)")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// ClientOptions turns the settings into SDK client options.
func (o Options) ClientOptions(logger *slog.Logger) (client.Options, error) {
	co := client.Options{HostPort: o.Address, Namespace: o.Namespace, MetricsHandler: o.MetricsHandler}
	if logger != nil {
		co.Logger = sdklog.NewStructuredLogger(logger)
	}
	if o.TLSCert != "" || o.TLSKey != "" || o.TLSCA != "" || o.APIKey != "" {
		tc := &tls.Config{ServerName: o.ServerName, MinVersion: tls.VersionTLS12}
		if (o.TLSCert == "") != (o.TLSKey == "") {
			return co, fmt.Errorf("--tls-cert and --tls-key go together: give both or neither")
		}
		if o.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
			if err != nil {
				return co, fmt.Errorf("load --tls-cert/--tls-key: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		if o.TLSCA != "" {
			pem, err := os.ReadFile(o.TLSCA)
			if err != nil {
				return co, fmt.Errorf("read --tls-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return co, fmt.Errorf("--tls-ca %s holds no PEM certificate", o.TLSCA)
			}
			tc.RootCAs = pool
		}
		co.ConnectionOptions.TLS = tc
	}
	if o.APIKey != "" {
		co.Credentials = client.NewAPIKeyStaticCredentials(o.APIKey)
	}
	return co, nil
}

// Dial connects to Temporal.
func (o Options) Dial(logger *slog.Logger) (client.Client, error) {
	co, err := o.ClientOptions(logger)
	if err != nil {
		return nil, err
	}
	c, err := client.Dial(co)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (namespace %s): %w", o.Address, o.Namespace, err)
	}
	return c, nil
}
