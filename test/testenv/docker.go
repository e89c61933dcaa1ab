// Package testenv is what tests need from the machine without the Temporal
// server: the Docker engine, images built FROM scratch, bounded contexts and
// the skip-or-fail rule for missing tools. test/stack adds the Temporal server
// on top; packages that import only this one link in seconds, not minutes.
package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
)

// Docker connects to the machine's Docker engine (DOCKER_HOST or the default
// socket). Without one the test is skipped, or fails under KOPSDR_REQUIRE_ALL.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = cli.Ping(ctx)
	}
	if err != nil {
		SkipOrFail(t, "no Docker engine: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// BuildScratchImage builds image tag FROM scratch holding the given files
// (path in image -> path on disk) with entrypoint. No registry is needed.
func BuildScratchImage(t testing.TB, cli *client.Client, tag string, files map[string]string, entrypoint ...string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dockerfile := "FROM scratch\n"
	for dst, src := range files {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		name := "ctx" + dst
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
		dockerfile += fmt.Sprintf("COPY %s %s\n", name, dst)
	}
	if len(entrypoint) > 0 {
		dockerfile += fmt.Sprintf("ENTRYPOINT %s\n", jsonArray(entrypoint))
	}
	if err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile))}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write([]byte(dockerfile))
	_ = tw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	resp, err := cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true})
	if err != nil {
		t.Fatalf("build image %s: %v", tag, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if bytes.Contains(out, []byte(`"error"`)) {
		t.Fatalf("build image %s: %s", tag, out)
	}
}

func jsonArray(ss []string) string {
	out := "["
	for i, s := range ss {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%q", s)
	}
	return out + "]"
}

// Context is a test context bounded by a timeout and the test's deadline.
func Context(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// RequireAll reports whether missing tools must fail tests instead of
// skipping them: .ci/run sets KOPSDR_REQUIRE_ALL=1.
func RequireAll() bool { return os.Getenv("KOPSDR_REQUIRE_ALL") == "1" }

// SkipOrFail skips the test, or fails it when RequireAll.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if RequireAll() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}
