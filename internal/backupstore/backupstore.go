// Package backupstore reads and writes the objects of one etcd-manager backup
// store, addressed the way kops addresses it: s3://bucket/prefix or
// file:///abs/path. Keys are always relative to that root, so callers speak
// etcd-manager's layout ("<backup>/etcd.backup.gz", "control/...") and never
// see the bucket or prefix.
package backupstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/storeurl"
)

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key     string // relative to the store root
	Size    int64
	ModTime time.Time
}

// PutOptions tunes one Put.
type PutOptions struct {
	// SSEKMSKeyID, when set, asks S3 to encrypt the object with this KMS key
	// (aws:kms). Ignored by file:// stores.
	SSEKMSKeyID string
	ContentType string
	// IfAbsent stores the object only if nothing is stored at key, as one
	// atomic step against every other writer (S3's conditional PutObject,
	// If-None-Match: *; a hard link on a file:// store), and otherwise
	// fails with ErrExists. For small bodies only (at most
	// MaxIfAbsentBytes): S3 gets them in one request.
	IfAbsent bool
}

// MaxIfAbsentBytes bounds the body of a PutOptions.IfAbsent put.
const MaxIfAbsentBytes = 1 << 20

var errIfAbsentTooLarge = fmt.Errorf("a put-if-absent body is limited to %d bytes", MaxIfAbsentBytes)

// Options overrides what Open would otherwise take from the environment.
type Options struct {
	// Region pins the S3 region and skips looking up the bucket's region.
	Region string
}

// Store is one backup store.
type Store interface {
	// URL is the canonical store URL (no trailing slash).
	URL() string
	// Put streams r to key and returns the bytes written. A reader never sees
	// a partial object: S3 publishes it on completion, file:// renames it.
	Put(ctx context.Context, key string, r io.Reader, o PutOptions) (int64, error)
	// Get opens key; errors.Is(err, ErrNotFound) when it does not exist.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat describes key; errors.Is(err, ErrNotFound) when it does not exist.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List returns every object whose key starts with prefix, recursively,
	// sorted by key. prefix is a plain string prefix, as in S3: "control/"
	// lists the control folder, "2026-" every backup of 2026.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Delete removes keys; missing keys are not an error. Keys of one call
	// may go in any order (S3 deletes them in one batch request): a caller
	// that needs an order calls Delete once per step.
	Delete(ctx context.Context, keys ...string) error
	// AbortIncompleteUploads cleans up what interrupted Puts left under
	// prefix (S3 multipart uploads, file:// temp files) and says how many.
	// Run it only when no Put under prefix is in flight.
	AbortIncompleteUploads(ctx context.Context, prefix string) (int, error)
}

var (
	// ErrNotFound: the object does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrAccessDenied: the store refused our credentials or permissions.
	// Retrying does not help; an operator has to fix IAM or the keys.
	ErrAccessDenied = errors.New("access denied to backup store")
	// ErrInvalidKey: a key that is empty, absolute, or climbs out of the root.
	ErrInvalidKey = errors.New("invalid object key")
	// ErrExists: a PutOptions.IfAbsent put found an object at its key.
	ErrExists = errors.New("object already exists")
)

// Field is the input field name used in *inputerr.Error for store URLs.
const Field = "backupStore"

const urlFix = storeurl.Fix

// Open parses rawURL and returns the store it names. S3 stores may make one
// request to find the bucket's region; nothing else is checked until first use.
func Open(ctx context.Context, rawURL string, o Options) (Store, error) {
	loc, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	switch loc.Scheme {
	case "file":
		return newFileStore(loc), nil
	default:
		return openS3(ctx, loc, o)
	}
}

// Location is a parsed store URL.
type Location = storeurl.Location

// ParseURL validates a store URL without touching the network.
func ParseURL(rawURL string) (Location, error) {
	loc, err := storeurl.Parse(Field, rawURL)
	if err != nil {
		return loc, err
	}
	if loc.Scheme == "s3" && loc.Prefix != "" {
		if err := checkKey(loc.Prefix); err != nil {
			return Location{}, inputerr.Wrap(err, Field, rawURL, urlFix)
		}
	}
	return loc, nil
}

// checkKey refuses keys that could address something outside the store root
// or that two stores would spell differently.
func checkKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") {
		return fmt.Errorf("%w %q", ErrInvalidKey, key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.HasPrefix(seg, tempPrefix) {
			return fmt.Errorf("%w %q", ErrInvalidKey, key)
		}
	}
	return nil
}
