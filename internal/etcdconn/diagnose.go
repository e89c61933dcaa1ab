package etcdconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/kopsdr/kopsdr/internal/inputerr"
)

// diagnoseTime bounds the extra handshake made for each failed endpoint.
const diagnoseTime = 2 * time.Second

// diagnose looks closer at endpoints that did not answer, because gRPC
// often hides why: under TLS 1.3 the server rejects a client cert only after
// the client has finished its handshake, so gRPC, busy writing, sees a broken
// pipe; and a plain-http client at a TLS port sees only a closed connection.
// Either way gRPC retries until the deadline, which looks like etcd being
// down. A handshake of our own tells the cases apart. Where it finds a TLS
// problem, errs[i] is replaced by an error that says so, which Unreachable
// does not count as retryable: retrying a wrong certificate never helps.
func diagnose(ctx context.Context, endpoints []string, tc *tls.Config, errs []error) {
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil {
			continue
		}
		wg.Go(func() {
			switch u.Scheme {
			case "https":
				if terr := handshake(ctx, u, tc); terr != nil {
					errs[i] = fmt.Errorf("etcd endpoint %s: TLS: %w (gRPC said: %v)", ep, terr, errs[i])
				}
			case "http":
				if speaksTLS(ctx, u) {
					errs[i] = inputerr.Wrap(fmt.Errorf("etcd at %s serves TLS (gRPC said: %v)", u.Host, errs[i]),
						"endpoints", ep, "use https:// and give cacert, cert and key (kops' etcd always serves TLS)")
				}
			}
		})
	}
	wg.Wait()
}

// handshake returns the TLS error talking to u, or nil when the TLS layer
// looks fine (including when the host cannot be reached at all).
func handshake(ctx context.Context, u *url.URL, tc *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, diagnoseTime)
	defer cancel()
	cfg := tc.Clone()
	cfg.ServerName = u.Hostname()
	cfg.NextProtos = []string{"h2"} // as gRPC offers
	d := tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return tlsProblem(err)
	}
	defer conn.Close()
	// etcd waits for the client to speak first, so an accepting server sends
	// nothing and the read times out; a rejecting one sends an alert.
	deadline, _ := ctx.Deadline()
	conn.SetReadDeadline(deadline)
	_, err = conn.Read(make([]byte, 1))
	return tlsProblem(err)
}

// speaksTLS reports whether the server at u answers a TLS hello. It sends
// nothing but the hello, so not checking the server's certificate here
// exposes nothing.
func speaksTLS(ctx context.Context, u *url.URL) bool {
	ctx, cancel := context.WithTimeout(ctx, diagnoseTime)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err == nil {
		conn.Close()
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error" // TLS 1.2 rejecting us: still TLS
}

// tlsProblem keeps err only if it is about TLS itself.
func tlsProblem(err error) error {
	if err == nil {
		return nil
	}
	var verr *tls.CertificateVerificationError
	var rerr tls.RecordHeaderError
	var op *net.OpError
	switch {
	case errors.As(err, &verr), errors.As(err, &rerr):
		return err
	case errors.As(err, &op) && op.Op == "remote error":
		return err // an alert from the server, e.g. "tls: certificate required"
	}
	return nil
}
