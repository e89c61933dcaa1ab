package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.etcd.io/etcd/server/v3/storage/schema"
)

// openTimeout bounds the wait for bolt's file lock in StreamFile: a
// database an etcd still has open stays locked, and must not be streamed.
const openTimeout = time.Second

// StreamFile writes the etcd database file (bolt) at path gzip-compressed
// at level into w exactly as Stream writes a snapshot of a server holding
// that database: the file's bytes followed by their sha256, the trailer
// etcd's Snapshot RPC appends and etcd's restore checks. Nothing may write
// the file meanwhile; one an etcd still has open is refused.
//
// The Result is Stream's: sizes and hashes of what was written, Revision
// the store revision the database holds (read from it the way etcd does
// when it opens one), and EtcdVersion is etcdVersion, the version the
// caller says the database is for, since no server reports one.
//
// On error nothing written to w is usable, as with Stream.
func StreamFile(ctx context.Context, path, etcdVersion string, w io.Writer, level int, p Progress) (Result, error) {
	enc, err := newEncoder(w, level, p)
	if err != nil {
		return Result{}, err
	}
	defer enc.abandon()
	rev, err := DBRevision(path)
	if err != nil {
		return Result{}, fmt.Errorf("snapshot: %s: %w", path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return Result{}, fmt.Errorf("snapshot: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return Result{}, fmt.Errorf("snapshot: %w", err)
	}
	if err := enc.pump(ctxReader{ctx, f}); err != nil {
		return Result{}, fmt.Errorf("snapshot: %s: %w", path, err)
	}
	if enc.raw.n != info.Size() {
		return Result{}, fmt.Errorf("snapshot: %s: read %d bytes of %d: the file changed while it was read", path, enc.raw.n, info.Size())
	}
	sum, err := enc.raw.trailer()
	if err != nil {
		return Result{}, fmt.Errorf("snapshot: %w", err)
	}
	if err := enc.pump(bytes.NewReader(sum)); err != nil {
		return Result{}, fmt.Errorf("snapshot: %s: %w", path, err)
	}
	res, err := enc.finish()
	if err != nil {
		return Result{}, fmt.Errorf("snapshot: %s: %w", path, err)
	}
	res.Revision, res.EtcdVersion = rev, etcdVersion
	return res, nil
}

// DBRevision reads the store revision of the etcd database at path as
// etcd's mvcc store restore computes it: the newest revision in the key
// bucket, or the finished or scheduled compaction when later (compaction
// drops the tombstones it covers, the newest revision among them). Cheap:
// it reads the last key and two meta keys, not the keyspace. A database
// an etcd has open is refused.
func DBRevision(path string) (int64, error) {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: openTimeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return 0, errors.New("the database is locked: an etcd still has it open")
	}
	if err != nil {
		return 0, fmt.Errorf("not an etcd database: %w", err)
	}
	defer db.Close()
	var rev int64
	err = db.View(func(tx *bolt.Tx) error {
		keys, meta := tx.Bucket(schema.Key.Name()), tx.Bucket(schema.Meta.Name())
		if keys == nil || meta == nil {
			return errors.New("not an etcd database: no key or meta bucket")
		}
		revs := [][]byte{meta.Get(schema.FinishedCompactKeyName), meta.Get(schema.ScheduledCompactKeyName)}
		if k, _ := keys.Cursor().Last(); k != nil {
			revs = append(revs, k)
		}
		for _, b := range revs {
			if b == nil {
				continue
			}
			main, err := mainRevision(b)
			if err != nil {
				return err
			}
			rev = max(rev, main)
		}
		return nil
	})
	return rev, err
}

// mainRevision decodes a revision as etcd stores it (main, '_', sub, and
// maybe a tombstone mark) with mvcc.BytesToRev, which panics on anything
// else: checked first.
func mainRevision(b []byte) (int64, error) {
	if (len(b) != 17 && len(b) != 18) || b[8] != '_' || b[0]&0x80 != 0 || b[9]&0x80 != 0 {
		return 0, fmt.Errorf("not an etcd database: %x is no revision", b)
	}
	return mvcc.BytesToRev(b).Main, nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
