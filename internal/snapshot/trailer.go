package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
)

// rawCheck follows a raw snapshot stream: it counts it and checks the
// integrity trailer, the sha256 of everything before it that the server
// sends last. For that, writes are hashed into h as they pass except for the
// newest 32 bytes, held back because they may turn out to be the trailer.
// Memory use is constant. The data is hashed once only: hashing is the
// second-largest cost of a backup after gzip.
type rawCheck struct {
	h    hash.Hash // every byte but the last 32: the snapshot's data
	tail [sha256.Size]byte
	held int   // valid bytes in tail
	n    int64 // bytes written in all
}

func newRawCheck() *rawCheck { return &rawCheck{h: sha256.New()} }

// sum is the sha256 of the snapshot's data, which after verify is also the
// trailer etcd wrote.
func (t *rawCheck) sum() string { return hex.EncodeToString(t.h.Sum(nil)) }

func (t *rawCheck) Write(p []byte) (int, error) {
	t.n += int64(len(p))
	if t.held+len(p) <= len(t.tail) {
		t.held += copy(t.tail[t.held:], p)
		return len(p), nil
	}
	// Of held+p, all but the last 32 bytes are data: hash them in order.
	release := t.held + len(p) - len(t.tail)
	fromTail := min(release, t.held)
	t.h.Write(t.tail[:fromTail])
	fromP := release - fromTail
	t.h.Write(p[:fromP])

	var next [sha256.Size]byte
	k := copy(next[:], t.tail[fromTail:t.held])
	copy(next[k:], p[fromP:])
	t.tail, t.held = next, len(next)
	return len(p), nil
}

// verify reports whether the stream ended with a correct trailer. Like
// etcd's restore, it expects a bolt file (a multiple of 512 bytes) plus 32.
func (t *rawCheck) verify() error {
	if t.n < 512+sha256.Size || t.n%512 != sha256.Size {
		return fmt.Errorf("snapshot of %d bytes has no sha256 trailer (want a multiple of 512 plus 32 bytes)", t.n)
	}
	if !bytes.Equal(t.h.Sum(nil), t.tail[:]) {
		return fmt.Errorf("snapshot sha256 trailer does not match its %d data bytes: the stream is corrupt", t.n-sha256.Size)
	}
	return nil
}

// trailer is the sha256 of every byte written so far, which is what must
// follow them for the stream to end with a correct trailer: a database
// file written so far, trailer to come. Writing more stays possible.
func (t *rawCheck) trailer() ([]byte, error) {
	c, err := t.h.(hash.Cloner).Clone()
	if err != nil {
		return nil, err
	}
	c.Write(t.tail[:t.held])
	return c.Sum(nil), nil
}
