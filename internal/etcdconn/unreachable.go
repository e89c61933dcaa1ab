package etcdconn

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"syscall"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Unreachable reports whether err means etcd could not be reached or did not
// answer in time (connection refused, deadline exceeded, gRPC Unavailable,
// which includes "no leader"). Callers retry those; everything else, notably
// TLS trust problems that surface as timeouts, is reported as is, because
// retrying a wrong CA or certificate never helps.
//
// For errors that join several causes (one per endpoint, as from New), it is
// true only when every cause is: one endpoint with a certificate problem is
// worth an operator's attention even if another one is merely down.
func Unreachable(err error) bool {
	if err == nil {
		return false
	}
	if verdict, decided := classify(err); decided {
		return verdict
	}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		errs := u.Unwrap()
		for _, e := range errs {
			if !Unreachable(e) {
				return false
			}
		}
		return len(errs) > 0
	case interface{ Unwrap() error }:
		return Unreachable(u.Unwrap())
	}
	return false
}

// classify looks at err itself, not at what it wraps. decided is false when
// err is only a wrapper and the answer lies further down.
func classify(err error) (verdict, decided bool) {
	switch {
	case err == context.DeadlineExceeded:
		return true, true
	case err == context.Canceled:
		// The caller gave up (worker shutting down, activity cancelled).
		return false, true
	}
	switch e := err.(type) {
	case *tls.CertificateVerificationError, tls.RecordHeaderError:
		return false, true
	case *net.OpError:
		if e.Op == "remote error" { // a TLS alert from the server
			return false, true
		}
	}
	if errno, ok := err.(syscall.Errno); ok {
		switch errno {
		case syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ETIMEDOUT:
			return true, true
		}
		return false, true
	}
	if ee, ok := err.(rpctypes.EtcdError); ok {
		return retryableCode(ee.Code(), ee.Error()), true
	}
	if se, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		st := se.GRPCStatus()
		return retryableCode(st.Code(), st.Message()), true
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return true, true
	}
	return false, false
}

func retryableCode(code codes.Code, msg string) bool {
	if code != codes.Unavailable && code != codes.DeadlineExceeded {
		return false
	}
	// gRPC reports a failed TLS handshake as Unavailable, or as a deadline
	// with the handshake error as "latest connection error".
	return !strings.Contains(msg, "x509:") && !strings.Contains(msg, "tls:")
}
