package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestProgressDescribe: heartbeats read as a person reads a progress bar.
func TestProgressDescribe(t *testing.T) {
	now := time.Date(2026, 11, 29, 22, 0, 0, 0, time.UTC)
	p := &progress{clock: func() time.Time { return now }}
	require.Equal(t, "waiting for etcd-manager", p.describe("waiting for etcd-manager"))
	first := p.describe(map[string]any{"rawBytes": float64(64 << 20), "gzipBytes": float64(16 << 20), "totalBytes": float64(256 << 20)})
	require.Equal(t, "64.0 MiB of 256.0 MiB (25%) read from etcd, 16.0 MiB written", first)
	now = now.Add(2 * time.Second) // two seconds later, 64 MiB more
	second := p.describe(map[string]any{"rawBytes": float64(128 << 20), "gzipBytes": float64(32 << 20), "totalBytes": float64(256 << 20)})
	require.Contains(t, second, "128.0 MiB of 256.0 MiB (50%)")
	require.True(t, strings.HasSuffix(second, ", 32.0 MiB/s"), second)
	require.Equal(t, "1.0 MiB read", (&progress{}).describe(float64(1<<20)))
	require.Equal(t, `{"phase":"x"}`, (&progress{}).describe(map[string]any{"phase": "x"}), "an unknown heartbeat as JSON")
	require.Equal(t, "3 of 3 members", (&progress{}).describe(map[string]any{"state": "3 of 3 members"}), "a wait's state")
}
