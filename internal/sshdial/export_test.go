package sshdial

import (
	"testing"
	"time"
)

// SetKeepaliveInterval shortens the keepalive for one test.
func SetKeepaliveInterval(t testing.TB, d time.Duration) {
	old := keepaliveInterval
	keepaliveInterval = d
	t.Cleanup(func() { keepaliveInterval = old })
}

// RelayProblem classifies the relay's stderr.
var RelayProblem = relayProblem
