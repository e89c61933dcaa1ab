package masters

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/kopsdr/kopsdr/test/testenv"
)

// imageRepo is the local image name of the stand-in; the tag is a hash of
// the binary, so test binaries of different code never share an image and
// an unchanged binary reuses the image from an earlier run.
const imageRepo = "kopsdr-etcdmanager-sim"

var (
	binOnce sync.Once
	binPath string
	binHash string
	binErr  error
)

// SimBinary builds cmd/etcdmanager-sim once per test binary, static
// (CGO_ENABLED=0) so that it runs in a FROM-scratch image.
func SimBinary(t testing.TB) (path, hash string) {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kopsdr-sim-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "etcdmanager-sim")
		cmd := exec.Command("go", "build", "-o", binPath, "./test/etcdmanagersim/cmd/etcdmanager-sim")
		cmd.Dir = moduleRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build etcdmanager-sim: %v\n%s", err, out)
			return
		}
		binHash, binErr = fileSHA256(binPath)
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath, binHash
}

// simImage returns the tag of the stand-in's image, building it when the
// engine does not have it yet.
func simImage(t testing.TB, cli *client.Client) string {
	t.Helper()
	path, hash := SimBinary(t)
	tag := imageRepo + ":" + hash[:16]
	if _, err := cli.ImageInspect(context.Background(), tag); err == nil {
		return tag
	}
	testenv.BuildScratchImage(t, cli, tag, map[string]string{"/etcdmanager-sim": path}, "/etcdmanager-sim")
	pruneOldImages(cli, tag)
	return tag
}

// pruneOldImages removes images of earlier builds, so that editing the
// stand-in does not pile up images. Only those older than an hour: a
// concurrent test run of other code may be about to use a newer one. An
// image in use by a container is refused by the engine and stays.
func pruneOldImages(cli *client.Client, keep string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	imgs, err := cli.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", imageRepo))})
	if err != nil {
		return
	}
	for _, img := range imgs {
		if slices.Contains(img.RepoTags, keep) || time.Since(time.Unix(img.Created, 0)) < time.Hour {
			continue
		}
		for _, tag := range img.RepoTags {
			_, _ = cli.ImageRemove(ctx, tag, image.RemoveOptions{PruneChildren: true})
		}
	}
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// moduleRoot is the folder of go.mod, found from this source file.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
