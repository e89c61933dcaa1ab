package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"testing"
)

// The held-back tail must come out right however the stream is chunked,
// including chunks smaller than the trailer and chunks that end inside it.
func TestRawCheckAnyChunking(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 3*512)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	sum := sha256.Sum256(data)
	stream := append(append([]byte(nil), data...), sum[:]...)

	for _, maxChunk := range []int{1, 7, 31, 32, 33, 100, 4096} {
		for try := 0; try < 20; try++ {
			tc := newRawCheck()
			for rest := stream; len(rest) > 0; {
				n := min(1+r.IntN(maxChunk), len(rest))
				tc.Write(rest[:n])
				rest = rest[n:]
			}
			if err := tc.verify(); err != nil {
				t.Fatalf("chunks up to %d: %v", maxChunk, err)
			}
			if tc.n != int64(len(stream)) {
				t.Fatalf("counted %d of %d bytes", tc.n, len(stream))
			}
			if data := sha256.Sum256(stream[:len(stream)-sha256.Size]); tc.sum() != hex.EncodeToString(data[:]) {
				t.Fatal("sha256 of the snapshot data is wrong")
			}
		}
	}

	bad := append([]byte(nil), stream...)
	bad[100] ^= 1
	tc := newRawCheck()
	tc.Write(bad)
	if tc.verify() == nil {
		t.Fatal("flipped byte passed")
	}
}
