package snapshot_test

import (
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/internal/snapshot"
	"github.com/kopsdr/kopsdr/test/etcdtest"
)

const (
	prefix    = "/registry/configmaps/"
	keys      = 1500
	valueSize = 2000
)

// The whole path a backup takes: stream from one member of a 3-member TLS
// cluster into a file, verify the file, and restore it the way etcd-manager
// does (etcdutl, hash check on) into a new cluster that has every key.
func TestStreamVerifyRestore(t *testing.T) {
	c := etcdtest.Start(t, 3)
	cli := c.Client(t)
	etcdtest.Fill(t, cli, prefix, keys, valueSize)
	// Under load the member streamed from may still be applying the last
	// writes; the checks below want the snapshot to hold all of them.
	c.Sync(t, 1)

	dir := t.TempDir()
	gzPath := filepath.Join(dir, "etcd.backup.gz")
	f, err := os.Create(gzPath)
	require.NoError(t, err)
	var calls [][2]int64
	res, err := snapshot.Stream(ctx(t), cli, c.Endpoints[1], f, gzip.DefaultCompression, func(raw, gz int64) {
		calls = append(calls, [2]int64{raw, gz})
	})
	require.NoError(t, err)
	require.NoError(t, f.Close())
	t.Logf("%+v", res)

	assert.Equal(t, version.Version, res.EtcdVersion)
	assert.Equal(t, int64(32), res.RawBytes%512, "bolt pages plus the sha256 trailer")
	assert.Greater(t, res.RawBytes, int64(keys*valueSize))
	assert.Less(t, res.GzipBytes*2, res.RawBytes, "semi-compressible data shrinks")
	assert.Equal(t, fileSHA(t, gzPath), res.GzipSHA256)
	info, err := os.Stat(gzPath)
	require.NoError(t, err)
	assert.Equal(t, info.Size(), res.GzipBytes)

	// Progress: periodic, growing, and the last call has the totals.
	require.Greater(t, len(calls), 2)
	for i := 1; i < len(calls); i++ {
		assert.GreaterOrEqual(t, calls[i][0], calls[i-1][0])
	}
	assert.Equal(t, [2]int64{res.RawBytes, res.GzipBytes}, calls[len(calls)-1])
	assert.LessOrEqual(t, len(calls), int(res.RawBytes>>20)+2)

	// VerifyGzip agrees with what Stream reported.
	vf, err := os.Open(gzPath)
	require.NoError(t, err)
	defer vf.Close()
	v, err := snapshot.VerifyGzip(vf)
	require.NoError(t, err)
	assert.Equal(t, snapshot.VerifyResult{
		RawBytes: res.RawBytes, GzipBytes: res.GzipBytes, RawSHA256: res.RawSHA256, GzipSHA256: res.GzipSHA256,
	}, v)

	// Standard gzip reads it; the raw stream is what etcdctl would have saved.
	rawPath := filepath.Join(dir, "snapshot.db")
	gunzip(t, gzPath, rawPath)
	assert.Equal(t, res.RawSHA256, dataSHA(t, rawPath))
	// Nothing was written after Fill, so the revision is exact.
	assert.Equal(t, etcdtest.SnapshotRevision(t, rawPath), res.Revision)
	cur, err := cli.Get(ctx(t), "/none")
	require.NoError(t, err)
	assert.Equal(t, cur.Header.Revision, res.Revision)

	restored := etcdtest.StartFromSnapshot(t, rawPath)
	rcli := restored.Client(t)
	got, err := rcli.Get(ctx(t), prefix, clientv3.WithPrefix())
	require.NoError(t, err)
	require.Len(t, got.Kvs, keys)
	for i, kv := range got.Kvs {
		require.Equal(t, etcdtest.Key(prefix, i), string(kv.Key))
		require.True(t, bytes.Equal(etcdtest.Value(prefix, i, valueSize), kv.Value), "value of %s", kv.Key)
	}
	assert.Equal(t, res.Revision, got.Header.Revision)
}

func TestVerifyGzipRejectsDamage(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.WithoutTLS())
	cli := c.Client(t)
	etcdtest.Fill(t, cli, prefix, 200, 500)
	var good bytes.Buffer
	res, err := snapshot.Stream(ctx(t), cli, c.Endpoints[0], &good, gzip.BestSpeed, nil)
	require.NoError(t, err)
	_, err = snapshot.VerifyGzip(bytes.NewReader(good.Bytes()))
	require.NoError(t, err)

	raw := gunzipBytes(t, good.Bytes())
	require.Equal(t, res.RawBytes, int64(len(raw)))
	// VerifyGzipTo hands over the very raw stream it checked.
	var out bytes.Buffer
	_, err = snapshot.VerifyGzipTo(bytes.NewReader(good.Bytes()), &out)
	require.NoError(t, err)
	require.True(t, bytes.Equal(raw, out.Bytes()))

	flipped := bytes.Clone(raw)
	flipped[len(flipped)/2] ^= 0x01
	noTrailer := raw[:len(raw)-32]
	badTrailer := bytes.Clone(raw)
	badTrailer[len(badTrailer)-1] ^= 0x80
	// A copied bolt file with a valid hash appended but one page short.
	short := append(bytes.Clone(raw[:len(raw)-32-4096]), sha256Of(raw[:len(raw)-32-4096])...)
	odd := raw[:len(raw)-32-100]
	oddSize := append(bytes.Clone(odd), sha256Of(odd)...)
	corruptGzip := bytes.Clone(good.Bytes())
	corruptGzip[len(corruptGzip)/2] ^= 0xff

	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"flipped data byte":   {gzipBytes(t, flipped), "does not match"},
		"no trailer":          {gzipBytes(t, noTrailer), "no sha256 trailer"},
		"wrong trailer":       {gzipBytes(t, badTrailer), "does not match"},
		"truncated gzip":      {good.Bytes()[:good.Len()/2], "unexpected EOF"},
		"corrupt gzip":        {corruptGzip, ""},
		"not gzip":            {raw, "not gzip"},
		"empty":               {nil, "not gzip"},
		"trailing garbage":    {append(bytes.Clone(good.Bytes()), "junk"...), ""},
		"hash fine, size odd": {gzipBytes(t, oddSize), "no sha256 trailer"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := snapshot.VerifyGzip(bytes.NewReader(tc.data))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	// A page short but self-consistent still verifies: the trailer vouches
	// for the bytes, which is all the format can say.
	_, err = snapshot.VerifyGzip(bytes.NewReader(gzipBytes(t, short)))
	assert.NoError(t, err)
}

func TestStreamUnreachable(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	ep := c.Endpoints[0]
	c.StopMember(0)

	var out bytes.Buffer
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := snapshot.Stream(sctx, cli, ep, &out, gzip.BestSpeed, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), ep)
	assert.Contains(t, err.Error(), "connection refused")
	assert.True(t, etcdconn.Unreachable(err), "%v", err)
	assert.Zero(t, out.Len())
}

// A failure mid-stream is an error, and what was written is not a gzip
// stream any reader accepts as whole.
func TestStreamFailureLeavesNoValidGzip(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.WithoutTLS())
	cli := c.Client(t)
	etcdtest.Fill(t, cli, prefix, 1000, 2000)

	t.Run("writer fails", func(t *testing.T) {
		w := &failAfter{n: 64 << 10}
		_, err := snapshot.Stream(ctx(t), cli, c.Endpoints[0], w, gzip.BestSpeed, nil)
		require.ErrorIs(t, err, errDiskFull)
	})
	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx(t))
		defer cancel()
		var out bytes.Buffer
		_, err := snapshot.Stream(cctx, cli, c.Endpoints[0], &out, gzip.BestSpeed, func(raw, gz int64) { cancel() })
		require.ErrorIs(t, err, context.Canceled)
		_, err = snapshot.VerifyGzip(&out)
		require.Error(t, err)
	})
}

var errDiskFull = errors.New("disk full")

type failAfter struct{ n int }

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		return 0, errDiskFull
	}
	f.n -= len(p)
	return len(p), nil
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func fileSHA(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// dataSHA is the sha256 of a raw snapshot file without its 32-byte trailer,
// and checks it equals the trailer.
func dataSHA(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	data, trailer := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	sum := sha256.Sum256(data)
	require.Equal(t, trailer, sum[:])
	return hex.EncodeToString(sum[:])
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// gunzip uses the standard library on purpose: backups must be plain gzip.
func gunzip(t *testing.T, from, to string) {
	in, err := os.Open(from)
	require.NoError(t, err)
	defer in.Close()
	zr, err := stdgzip.NewReader(in)
	require.NoError(t, err)
	out, err := os.Create(to)
	require.NoError(t, err)
	_, err = io.Copy(out, zr)
	require.NoError(t, err)
	require.NoError(t, out.Close())
}

func gunzipBytes(t *testing.T, b []byte) []byte {
	zr, err := stdgzip.NewReader(bytes.NewReader(b))
	require.NoError(t, err)
	out, err := io.ReadAll(zr)
	require.NoError(t, err)
	return out
}

func gzipBytes(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := stdgzip.NewWriter(&buf)
	_, err := zw.Write(b)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}
