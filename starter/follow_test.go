package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestProgressDescribe: heartbeats read as a person reads a progress bar.
func TestProgressDescribe(t *testing.T) {
	p := &progress{}
	require.Equal(t, "waiting for etcd-manager", p.describe("waiting for etcd-manager"))
	first := p.describe(map[string]any{"rawBytes": float64(64 << 20), "gzipBytes": float64(16 << 20), "totalBytes": float64(256 << 20)})
	require.Equal(t, "64.0 MiB of 256.0 MiB (25%) read from etcd, 16.0 MiB written", first)
	p.at = p.at.Add(-2 * time.Second) // two seconds later, 64 MiB more
	second := p.describe(map[string]any{"rawBytes": float64(128 << 20), "gzipBytes": float64(32 << 20), "totalBytes": float64(256 << 20)})
	require.Contains(t, second, "128.0 MiB of 256.0 MiB (50%)")
	require.Regexp(t, `, 3\d\.\d MiB/s$`, second)
	require.Equal(t, "1.0 MiB read", (&progress{}).describe(float64(1<<20)))
}
