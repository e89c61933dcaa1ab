package containerdtest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"slices"
	"testing"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	diffapi "github.com/containerd/containerd/api/services/diff/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/api/types"
	"google.golang.org/grpc/metadata"
)

// Image is an image in the daemon, unpacked for Snapshotter.
type Image struct {
	Name       string   // e.g. kopsdr.test/sleeper:latest
	ChainID    string   // the unpacked snapshot containers are prepared from
	Entrypoint []string // the image config's entrypoint
}

// Media types of the OCI image spec.
const (
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar" // uncompressed
)

// ImportImage builds an OCI image FROM scratch holding files (path in the
// image -> file on disk, made executable), stores it in namespace k8s.io
// as name and unpacks it, as `ctr -n k8s.io images import` would. No
// registry is involved. Everything is written under a lease that never
// expires, so containerd's garbage collector leaves it alone until the
// daemon is removed.
func (d *Daemon) ImportImage(t testing.TB, name string, files map[string]string, entrypoint ...string) Image {
	t.Helper()
	ctx, cancel := context.WithTimeout(NS(context.Background()), 5*time.Minute)
	defer cancel()
	img, err := d.importImage(ctx, name, files, entrypoint)
	if err != nil {
		t.Fatalf("containerdtest: import image %s: %v", name, err)
	}
	return img
}

func (d *Daemon) importImage(ctx context.Context, name string, files map[string]string, entrypoint []string) (Image, error) {
	lease, err := d.Leases().Create(ctx, &leasesapi.CreateRequest{})
	if err != nil {
		return Image{}, fmt.Errorf("lease: %w", err)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, "containerd-lease", lease.GetLease().GetID())

	layer, err := layerTar(files)
	if err != nil {
		return Image{}, err
	}
	diffID := digestOf(layer) // uncompressed: the layer's digest is its diff ID
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Entrypoint": entrypoint},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	if err != nil {
		return Image{}, err
	}
	layerDesc := &types.Descriptor{MediaType: mediaLayer, Digest: diffID, Size: int64(len(layer))}
	configDesc := &types.Descriptor{MediaType: mediaConfig, Digest: digestOf(config), Size: int64(len(config))}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaManifest,
		"config":        ociDesc(configDesc),
		"layers":        []any{ociDesc(layerDesc)},
	})
	if err != nil {
		return Image{}, err
	}
	manifestDesc := &types.Descriptor{MediaType: mediaManifest, Digest: digestOf(manifest), Size: int64(len(manifest))}
	for _, blob := range []struct {
		desc *types.Descriptor
		data []byte
	}{{layerDesc, layer}, {configDesc, config}, {manifestDesc, manifest}} {
		if err := d.writeBlob(ctx, blob.desc, blob.data); err != nil {
			return Image{}, err
		}
	}
	_, err = d.Images().Create(ctx, &imagesapi.CreateImageRequest{Image: &imagesapi.Image{Name: name, Target: manifestDesc}})
	if err != nil && !isAlreadyExists(err) {
		return Image{}, fmt.Errorf("create image: %w", err)
	}
	// One layer: its chain ID is its diff ID.
	if err := d.unpack(ctx, layerDesc, diffID); err != nil {
		return Image{}, err
	}
	return Image{Name: name, ChainID: diffID, Entrypoint: entrypoint}, nil
}

// layerTar is an uncompressed tar of files, each at its image path with
// mode 0755 and its parent directories.
func layerTar(files map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		for dir := path.Dir(path.Clean("/" + p)); dir != "/" && !dirs[dir]; dir = path.Dir(dir) {
			dirs[dir] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir[1:] + "/", Mode: 0o755}); err != nil {
				return nil, err
			}
		}
		data, err := os.ReadFile(files[p])
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Name: path.Clean("/" + p)[1:], Mode: 0o755, Size: int64(len(data))}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), tw.Close()
}

// writeBlob stores data in the content store, in chunks below the
// daemon's message size limit; content already there is fine.
func (d *Daemon) writeBlob(ctx context.Context, desc *types.Descriptor, data []byte) error {
	stream, err := d.Content().Write(ctx)
	if err != nil {
		return fmt.Errorf("write %s: %w", desc.Digest, err)
	}
	const chunk = 1 << 20
	for off := 0; ; off += chunk {
		end := min(off+chunk, len(data))
		req := &contentapi.WriteContentRequest{
			Action: contentapi.WriteAction_WRITE, Ref: "kopsdr-" + desc.Digest,
			Total: desc.Size, Expected: desc.Digest, Offset: int64(off), Data: data[off:end],
		}
		if end == len(data) {
			req.Action = contentapi.WriteAction_COMMIT
		}
		if err := stream.Send(req); err != nil {
			return fmt.Errorf("write %s: %w", desc.Digest, err)
		}
		if _, err := stream.Recv(); err != nil {
			if isAlreadyExists(err) {
				return nil
			}
			return fmt.Errorf("write %s: %w", desc.Digest, err)
		}
		if end == len(data) {
			break
		}
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	if _, err := stream.Recv(); err != nil && err != io.EOF {
		return fmt.Errorf("write %s: %w", desc.Digest, err)
	}
	return nil
}

// unpack applies the layer into a new snapshot and commits it as chainID,
// unless a snapshot of that name exists already.
func (d *Daemon) unpack(ctx context.Context, layer *types.Descriptor, chainID string) error {
	if _, err := d.Snapshots().Stat(ctx, &snapshotsapi.StatSnapshotRequest{Snapshotter: Snapshotter, Key: chainID}); err == nil {
		return nil
	}
	key := "extract-" + randomHex(8) + " " + chainID
	prep, err := d.Snapshots().Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{Snapshotter: Snapshotter, Key: key})
	if err != nil {
		return fmt.Errorf("prepare snapshot: %w", err)
	}
	if _, err := d.Diff().Apply(ctx, &diffapi.ApplyRequest{Diff: layer, Mounts: prep.GetMounts()}); err != nil {
		return fmt.Errorf("apply layer: %w", err)
	}
	if _, err := d.Snapshots().Commit(ctx, &snapshotsapi.CommitSnapshotRequest{Snapshotter: Snapshotter, Name: chainID, Key: key}); err != nil && !isAlreadyExists(err) {
		return fmt.Errorf("commit snapshot: %w", err)
	}
	return nil
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func ociDesc(d *types.Descriptor) map[string]any {
	return map[string]any{"mediaType": d.MediaType, "digest": d.Digest, "size": d.Size}
}
