package fakeec2

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/smithy-go"
)

// manualClock is a clock the test moves by hand, so intermediate states
// can be observed without sleeping.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func newManualClock() *manualClock {
	return &manualClock{t: time.Date(2026, 11, 21, 22, 52, 16, 0, time.UTC)}
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// startManual starts a server on a manual clock with a 1-minute
// transition delay.
func startManual(t *testing.T, opts ...Option) (*Server, *manualClock) {
	clock := newManualClock()
	opts = append([]Option{WithClock(clock.Now), WithTransitionDelay(time.Minute)}, opts...)
	return Start(t, opts...), clock
}

// apiCode returns the EC2 error code an SDK call failed with, failing the
// test if err is not an API error.
func apiCode(t *testing.T, err error) string {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want an API error, got %v", err)
	}
	return ae.ErrorCode()
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want error %s, got success", code)
	}
	if got := apiCode(t, err); got != code {
		t.Fatalf("want error code %s, got %s (%v)", code, got, err)
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}
