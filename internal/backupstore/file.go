package backupstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// tempPrefix names the files a file:// Put writes before its rename. List
// hides them and AbortIncompleteUploads removes them.
const tempPrefix = ".kopsdr-tmp-"

// fileStore keeps objects as plain files under a directory, the same layout
// etcd-manager's file:// vfs uses, so etcd-manager-ctl can read it.
type fileStore struct {
	loc  Location
	root string
}

func newFileStore(loc Location) *fileStore {
	return &fileStore{loc: loc, root: loc.Prefix}
}

func (s *fileStore) URL() string { return s.loc.URL() }

func (s *fileStore) path(key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

func (s *fileStore) Put(ctx context.Context, key string, r io.Reader, o PutOptions) (int64, error) {
	dst, err := s.path(key)
	if err != nil {
		return 0, err
	}
	tmp, err := s.createTemp(filepath.Dir(dst))
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	src := io.Reader(ctxReader{ctx, r})
	if o.IfAbsent {
		src = io.LimitReader(src, MaxIfAbsentBytes+1)
	}
	n, err := io.Copy(tmp, src)
	if err != nil {
		return n, fmt.Errorf("put %s: %w", key, err)
	}
	if o.IfAbsent && n > MaxIfAbsentBytes {
		return 0, fmt.Errorf("put %s: %w", key, errIfAbsentTooLarge)
	}
	// fsync before rename: after a crash the new name must not point at a
	// file whose data never reached the disk.
	if err := tmp.Sync(); err != nil {
		return n, fmt.Errorf("put %s: sync: %w", key, err)
	}
	if err := tmp.Close(); err != nil {
		return n, fmt.Errorf("put %s: close: %w", key, err)
	}
	if o.IfAbsent {
		// link(2) fails rather than replace an existing name, atomically.
		if err := os.Link(tmp.Name(), dst); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return 0, fmt.Errorf("put %s in %s: %w", key, s.URL(), ErrExists)
			}
			return n, fmt.Errorf("put %s: %w", key, err)
		}
		_ = os.Remove(tmp.Name())
	} else if err := os.Rename(tmp.Name(), dst); err != nil {
		return n, fmt.Errorf("put %s: %w", key, err)
	}
	done = true
	syncDir(filepath.Dir(dst))
	return n, nil
}

// createTemp makes the directory and a temp file in it. A concurrent Delete
// may remove the freshly made, still empty directory, so try twice.
func (s *fileStore) createTemp(dir string) (*os.File, error) {
	var err error
	for range 2 {
		if err = os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		var f *os.File
		if f, err = os.CreateTemp(dir, tempPrefix+"*"); err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return nil, err
}

// syncDir makes a rename durable. Best effort: some file systems refuse to
// fsync directories, and the data itself is already synced.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

func (s *fileStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, s.mapErr("get", key, err)
	}
	if st, err := f.Stat(); err != nil || st.IsDir() {
		_ = f.Close()
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	return f, nil
}

func (s *fileStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	p, err := s.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return ObjectInfo{}, s.mapErr("stat", key, err)
	}
	if st.IsDir() {
		return ObjectInfo{}, fmt.Errorf("stat %s: %w", key, ErrNotFound)
	}
	return ObjectInfo{Key: key, Size: st.Size(), ModTime: st.ModTime()}, nil
}

func (s *fileStore) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	var out []ObjectInfo
	err := s.walk(ctx, prefix, func(key string, d fs.DirEntry) error {
		if strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted while we walked
		} else if err != nil {
			return err
		}
		out = append(out, ObjectInfo{Key: key, Size: info.Size(), ModTime: info.ModTime()})
		return nil
	})
	if err != nil {
		return nil, s.mapErr("list", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// walk calls fn for every regular file whose key starts with prefix. It only
// descends into the directory the prefix names (or lies in), not the whole root.
func (s *fileStore) walk(ctx context.Context, prefix string, fn func(key string, d fs.DirEntry) error) error {
	if strings.HasPrefix(prefix, "/") {
		return fmt.Errorf("%w: prefix %q", ErrInvalidKey, prefix)
	}
	dir := prefix
	if !strings.HasSuffix(dir, "/") {
		dir = path.Dir(dir)
	}
	dir = strings.TrimSuffix(dir, "/")
	if dir == "." {
		dir = ""
	}
	if dir != "" {
		if err := checkKey(dir); err != nil {
			return err
		}
	}
	start := filepath.Join(s.root, filepath.FromSlash(dir))
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return nil // a missing root or folder is an empty listing
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		return fn(key, d)
	})
	return err
}

func (s *fileStore) Delete(ctx context.Context, keys ...string) error {
	for _, key := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		p, err := s.path(key)
		if err != nil {
			return err
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return s.mapErr("delete", key, err)
		}
		s.removeEmptyParents(filepath.Dir(p))
	}
	return nil
}

// removeEmptyParents tidies folders a prune emptied, up to the root. The
// listing never depends on folders, so failures are harmless and ignored.
func (s *fileStore) removeEmptyParents(dir string) {
	for dir != s.root && strings.HasPrefix(dir, s.root+string(filepath.Separator)) {
		if os.Remove(dir) != nil {
			return
		}
		dir = filepath.Dir(dir)
	}
}

func (s *fileStore) AbortIncompleteUploads(ctx context.Context, prefix string) (int, error) {
	n := 0
	err := s.walk(ctx, prefix, func(key string, d fs.DirEntry) error {
		if !strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		p := filepath.Join(s.root, filepath.FromSlash(key))
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return n, s.mapErr("abort incomplete uploads", prefix, err)
	}
	return n, nil
}

func (s *fileStore) mapErr(op, key string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%s %s: %w", op, key, ErrNotFound)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s %s: %w: %w", op, key, ErrAccessDenied, err)
	}
	return fmt.Errorf("%s %s in %s: %w", op, key, s.URL(), err)
}

// ctxReader stops a long copy when ctx is cancelled.
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
