package devserver

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/test/loopback"
)

// A taken port is one line naming the port and the flag, and nothing is
// created on the way out (the embedded frontend used to panic instead).
func TestBusyPortIsOneLineError(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	freePort := loopback.Ports(t, 1)[0]

	for _, tc := range []struct {
		flag         string
		port, uiPort int
	}{{"dev-port", port, -1}, {"ui-port", freePort, port}} {
		t.Run(tc.flag, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			_, err := Start(context.Background(), Options{DataDir: dir, Port: tc.port, UIPort: tc.uiPort})
			e, ok := inputerr.As(err)
			require.True(t, ok, "%v", err)
			assert.Equal(t, tc.flag, e.Field)
			assert.Equal(t, strconv.Itoa(port), e.Value)
			assert.Contains(t, err.Error(), "--"+tc.flag)
			assert.Contains(t, err.Error(), "port "+strconv.Itoa(port))
			assert.NotContains(t, err.Error(), "\n")
			_, statErr := os.Stat(dir)
			assert.True(t, os.IsNotExist(statErr), "no data dir was created")
		})
	}
	_, err = Start(context.Background(), Options{DataDir: t.TempDir(), Port: 70000})
	assert.True(t, strings.Contains(err.Error(), "between 1 and 65535"), "%v", err)
}

// Two dev servers never share a data directory.
func TestDataDirIsLocked(t *testing.T) {
	dir := t.TempDir()
	release, err := lockDataDir(dir)
	require.NoError(t, err)
	_, err = lockDataDir(dir)
	e, ok := inputerr.As(err)
	require.True(t, ok, "%v", err)
	assert.Equal(t, "data-dir", e.Field)
	assert.Contains(t, e.Fix, "--data-dir")
	release()
	again, err := lockDataDir(dir)
	require.NoError(t, err)
	again()
}
