// Package storeurl parses the store URLs kopsdr accepts (s3://bucket/prefix
// and file:///abs/path) without touching the network or the disk. It imports
// only the standard library, so the CLI and the input contract can check a
// URL without linking the S3 client.
package storeurl

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/kopsdr/kopsdr/internal/inputerr"
)

// Fix is what every bad store URL is told to look like.
const Fix = "use s3://bucket/prefix or file:///abs/path"

// Location is a parsed store URL.
type Location struct {
	Scheme string // "s3" or "file"
	Bucket string // s3 only
	Prefix string // s3: key prefix without slashes at either end; file: absolute clean path
}

// URL returns the canonical form.
func (l Location) URL() string {
	if l.Scheme == "file" {
		return "file://" + l.Prefix
	}
	if l.Prefix == "" {
		return "s3://" + l.Bucket
	}
	return "s3://" + l.Bucket + "/" + l.Prefix
}

// bucketName is deliberately looser than AWS's current rules (legacy buckets
// may have upper case or underscores) but refuses what can never be a bucket.
var bucketName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$`)

// Parse validates rawURL; errors are *inputerr.Error on field.
func Parse(field, rawURL string) (Location, error) {
	bad := func(why string) (Location, error) {
		return Location{}, inputerr.Wrap(errors.New(why), field, rawURL, Fix)
	}
	if strings.TrimSpace(rawURL) == "" {
		return bad("empty")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return bad("not a URL")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return bad("credentials, query strings and fragments are not allowed")
	}
	switch u.Scheme {
	case "s3":
		if u.Host == "" {
			return bad("missing bucket")
		}
		if u.Port() != "" || !bucketName.MatchString(u.Host) {
			return bad(fmt.Sprintf("%q is not a valid bucket name", u.Host))
		}
		prefix := strings.Trim(u.Path, "/")
		for _, seg := range strings.Split(prefix, "/") {
			if prefix != "" && (seg == "" || seg == "." || seg == "..") {
				return bad(`the prefix has empty, "." or ".." path segments`)
			}
		}
		return Location{Scheme: "s3", Bucket: u.Host, Prefix: prefix}, nil
	case "file":
		if u.Host != "" {
			return bad(fmt.Sprintf("file URLs need three slashes and an absolute path; %q was read as a host", u.Host))
		}
		if !path.IsAbs(u.Path) {
			return bad("the path is not absolute")
		}
		clean := filepath.Clean(u.Path)
		if clean == "/" {
			return bad("refusing to use the file system root")
		}
		return Location{Scheme: "file", Prefix: clean}, nil
	case "":
		return bad("missing scheme")
	default:
		return bad(fmt.Sprintf("unsupported scheme %q", u.Scheme))
	}
}

// CheckLocalParent refuses a file:// store whose parent folder does not
// exist on this machine: a store is created on first write, folders and
// all, so a typo would otherwise plant a tree wherever it points. Other
// schemes pass. Unlike Parse it looks at the disk.
func CheckLocalParent(field, rawURL string) error {
	loc, err := Parse(field, rawURL)
	if err != nil || loc.Scheme != "file" {
		return err
	}
	parent := filepath.Dir(loc.Prefix)
	if st, err := os.Stat(parent); err != nil || !st.IsDir() {
		return inputerr.New(field, rawURL, fmt.Sprintf("its parent folder %s does not exist: create it first (mkdir -p %s) or fix the path", parent, parent))
	}
	return nil
}
