package etcdtest

import (
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// TestOutcomeUnknown: Fill sends a batch again only on etcd's errors for a
// request it may have applied, whether they arrive as gRPC statuses (from
// the server) or as the client's converted errors.
func TestOutcomeUnknown(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{rpctypes.ErrGRPCTimeout, true},
		{rpctypes.ErrTimeout, true},
		{rpctypes.ErrGRPCLeaderChanged, true},
		{rpctypes.ErrTooManyRequests, true},
		{rpctypes.ErrGRPCNoSpace, false},
		{rpctypes.ErrRequestTooLarge, false},
		{errors.New("etcdserver: request timed out, said someone else"), false},
	} {
		if got := outcomeUnknown(tc.err); got != tc.want {
			t.Errorf("outcomeUnknown(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
