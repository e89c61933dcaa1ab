// Package bench measures kopsdr's data paths: the backup against etcd's
// bare snapshot stream and against the sequential way an operator would do
// it by hand (etcdctl snapshot save, gzip -6, upload), and backup,
// verification and restore pre-flight of large databases, reporting time,
// ratios, size and peak memory as rows of the one table `make bench` prints.
//
//	make bench   (go test -run '^$' -bench . -benchtime 3x ./test/bench, and more)
//
// Each measured backup runs in a child process (this test binary re-run), so
// its peak RSS is the worker's alone: etcd and the S3 server (versitygw) run
// elsewhere and do not count.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/metrics"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
	"github.com/kopsdr/kopsdr/test/benchtable"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/s3test"
)

const bucket = "bench"

// result is what a child reports.
type result struct {
	Mode        string  `json:"mode"`
	Seconds     float64 `json:"seconds"`
	PeakRSSMiB  float64 `json:"peakRssMiB"`
	PeakHeapMiB float64 `json:"peakHeapMiB"` // live Go heap objects, sampled every 5 ms
	CPUSeconds  float64 `json:"cpuSeconds"`  // user+system CPU of the child
	RawBytes    int64   `json:"rawBytes"`
	StoredBytes int64   `json:"storedBytes"`
}

func TestMain(m *testing.M) {
	if os.Getenv("KOPSDR_BENCH_CHILD") != "" {
		os.Exit(child())
	}
	os.Exit(m.Run())
}

// BenchmarkBackup compares, at 256 MiB and 2 GB of values, kopsdr's
// backup (UploadSnapshot at its default level) with etcd's bare snapshot
// stream (read through clientv3's Snapshot, as etcdctl does, and thrown
// away; kopsdr reads the RPC without that client's pipe) and with
// the sequential way by hand (snapshot to a file, `gzip -6`, upload), each in
// its own process, alternating rounds() times and keeping the median. At 256 MiB
// it also sweeps the compression levels the default was chosen from.
func BenchmarkBackup(b *testing.B) {
	s3 := startS3(b)
	for _, sizeMiB := range benchList("KOPSDR_BENCH_SIZES", []int{256, 2048}) {
		etcd := etcdtest.Start(b, 1, etcdtest.WithQuotaBytes(int64(sizeMiB+2048)<<20))
		const valueSize = 16 << 10
		etcdtest.Fill(b, etcd.Client(b), "/registry/configmaps/", sizeMiB<<20/valueSize, valueSize)
		var bares, streams, seqs []result
		for range rounds() {
			bares = append(bares, runChild(b, "bare", etcd, s3, sizeMiB))
			streams = append(streams, runChild(b, "stream", etcd, s3, sizeMiB))
			seqs = append(seqs, runChild(b, "sequential", etcd, s3, sizeMiB))
		}
		bare, stream, seq := median(bares), median(streams), median(seqs)
		size := sizeName(sizeMiB)
		record(b, benchtable.Row{Group: "backup", What: "bare snapshot stream (read, discarded)", Size: size,
			Time: secs(bare.Seconds), Output: mib(bare.RawBytes) + " raw", Note: cpu(bare)})
		record(b, benchtable.Row{Group: "backup", What: "by hand: snapshot save, gzip -6, upload" + overHTTPS(), Size: size,
			Time: secs(seq.Seconds), Ratio: fmt.Sprintf("%.2fx bare", seq.Seconds/bare.Seconds),
			Output: mib(seq.StoredBytes), PeakRSS: mib(seq.PeakRSSMiB * (1 << 20))})
		record(b, benchtable.Row{Group: "backup", What: fmt.Sprintf("kopsdr backup (level %d)", benchLevel()) + overHTTPS(), Size: size,
			Time:    secs(stream.Seconds),
			Ratio:   fmt.Sprintf("%.2fx bare, %.2fx by hand", stream.Seconds/bare.Seconds, stream.Seconds/seq.Seconds),
			Output:  fmt.Sprintf("%s (%.2fx gzip -6)", mib(stream.StoredBytes), float64(stream.StoredBytes)/float64(seq.StoredBytes)),
			PeakRSS: mib(stream.PeakRSSMiB * (1 << 20)), Heap: mib(stream.PeakHeapMiB * (1 << 20)), Note: cpu(stream)})
		b.ReportMetric(stream.Seconds/bare.Seconds, fmt.Sprintf("x-bare-%dMiB", sizeMiB))
		b.ReportMetric(stream.Seconds/seq.Seconds, fmt.Sprintf("x-sequential-%dMiB", sizeMiB))

		if sizeMiB == 256 {
			for _, level := range benchList("KOPSDR_BENCH_LEVELS", []int{1, 2, 3, 4, 6, 9}) {
				var rs []result
				for range rounds() {
					rs = append(rs, runChild(b, "stream", etcd, s3, sizeMiB, "KOPSDR_BENCH_LEVEL="+strconv.Itoa(level)))
				}
				r := median(rs)
				record(b, benchtable.Row{Group: "compression level", What: fmt.Sprintf("kopsdr backup, level %d", level), Size: size,
					Time:    secs(r.Seconds),
					Ratio:   fmt.Sprintf("%.2fx bare, %.2fx by hand", r.Seconds/bare.Seconds, r.Seconds/seq.Seconds),
					Output:  fmt.Sprintf("%s (%.2fx gzip -6)", mib(r.StoredBytes), float64(r.StoredBytes)/float64(seq.StoredBytes)),
					PeakRSS: mib(r.PeakRSSMiB * (1 << 20)), Note: cpu(r)})
			}
		}
		etcd.Stop() // free its memory and disk before the next size
	}
}

// startS3 runs versitygw over plain HTTP, or over HTTPS, as AWS S3 serves,
// when KOPSDR_BENCH_S3=https. The scheme changes what an upload costs: over
// HTTP the SDK hashes every part for its signature (sha256), over HTTPS it
// sends the payload unsigned with a CRC32 trailer and encrypts it instead.
func startS3(b *testing.B) *s3test.Server {
	switch scheme := os.Getenv("KOPSDR_BENCH_S3"); scheme {
	case "", "http":
		return s3test.StartVersityGW(b, bucket)
	case "https":
		certs, err := etcdtest.GenerateCerts(filepath.Join(b.TempDir(), "s3-pki"))
		if err != nil {
			b.Fatal(err)
		}
		return s3test.StartVersityGWTLS(b, s3test.TLSFiles{CA: certs.CACert, Cert: certs.ServerCert, Key: certs.ServerKey}, bucket)
	default:
		b.Fatalf("KOPSDR_BENCH_S3=%q: use http (the default) or https", scheme)
		return nil
	}
}

// overHTTPS labels the rows whose upload went to S3 over HTTPS.
func overHTTPS() string {
	if os.Getenv("KOPSDR_BENCH_S3") == "https" {
		return ", S3 over HTTPS"
	}
	return ""
}

// rounds is how often each way is measured, KOPSDR_BENCH_ROUNDS or 3. Not
// b.N: `go test -bench` calls a benchmark once with N=1 and again with the
// -benchtime count, and each call here takes minutes, so make bench runs it
// with -benchtime 1x and repeats inside.
func rounds() int {
	if n, err := strconv.Atoi(os.Getenv("KOPSDR_BENCH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// benchList is the numbers in the environment variable env, e.g.
// KOPSDR_BENCH_SIZES=256 (sizes in MiB) or KOPSDR_BENCH_LEVELS=1,6 (levels
// swept; "none" for none) while tuning, or def when it is unset.
func benchList(name string, def []int) []int {
	env := os.Getenv(name)
	if env == "" {
		return def
	}
	var sizes []int
	for _, f := range strings.Split(env, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
			sizes = append(sizes, n)
		}
	}
	return sizes
}

func record(b *testing.B, r benchtable.Row) {
	b.Helper()
	if err := benchtable.Record(r); err != nil {
		b.Fatal(err)
	}
}

func sizeName(sizeMiB int) string {
	if sizeMiB >= 1024 {
		return fmt.Sprintf("%d GB", sizeMiB/1024)
	}
	return fmt.Sprintf("%d MiB", sizeMiB)
}

func secs(s float64) string { return fmt.Sprintf("%.2f s", s) }

// cpu is the child's CPU time: on a 2-core machine that also runs etcd and
// the S3 server, it is what stands between a backup and the bare stream.
func cpu(r result) string { return fmt.Sprintf("%.2f CPU s", r.CPUSeconds) }

// median returns the run with the median time.
func median(rs []result) result {
	sort.Slice(rs, func(i, j int) bool { return rs[i].Seconds < rs[j].Seconds })
	return rs[len(rs)/2]
}

func mib[N int64 | float64](n N) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// runChild runs one backup in a fresh process and returns what it measured.
func runChild(b *testing.B, mode string, etcd *etcdtest.Cluster, s3 *s3test.Server, sizeMiB int, env ...string) result {
	b.Helper()
	return spawnChild(b, mode, etcd, s3, "s3://"+bucket+"/"+mode+"-"+strconv.Itoa(sizeMiB), b.TempDir(), env...)
}

// spawnChild runs this test binary again as a child measuring mode against
// etcd and the store, and returns what it printed.
func spawnChild(b *testing.B, mode string, etcd *etcdtest.Cluster, s3 *s3test.Server, store, tmp string, env ...string) result {
	b.Helper()
	cfg, _ := json.Marshal(etcd.ConnConfig())
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), s3.Env()...)
	cmd.Env = append(cmd.Env, "KOPSDR_BENCH_CHILD="+mode, "KOPSDR_BENCH_ETCD="+string(cfg),
		"KOPSDR_BENCH_STORE="+store, "KOPSDR_BENCH_TMP="+tmp)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("%s child: %v", mode, err)
	}
	var res result
	if err := json.Unmarshal(out, &res); err != nil {
		b.Fatalf("%s child printed %q: %v", mode, out, err)
	}
	return res
}

// childEnv is what a child is given: the etcd to back up, the store URL
// to write to, and a scratch directory.
type childEnv struct {
	Etcd  etcdconn.Config
	Store string
	Tmp   string
}

// modes are what a child can measure, by KOPSDR_BENCH_CHILD; each file of
// this package registers its own in init.
var modes = map[string]func(context.Context, childEnv) (result, error){
	"bare":   func(ctx context.Context, e childEnv) (result, error) { return bareSnapshot(ctx, e.Etcd) },
	"stream": func(ctx context.Context, e childEnv) (result, error) { return streamBackup(ctx, e.Etcd, e.Store) },
	"sequential": func(ctx context.Context, e childEnv) (result, error) {
		return sequentialBackup(ctx, e.Etcd, e.Store, e.Tmp)
	},
}

// child performs one measured step and prints a result as JSON.
func child() int {
	mode := os.Getenv("KOPSDR_BENCH_CHILD")
	var cfg etcdconn.Config
	if err := json.Unmarshal([]byte(os.Getenv("KOPSDR_BENCH_ETCD")), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	store := os.Getenv("KOPSDR_BENCH_STORE")
	// KOPSDR_BENCH_CPUPROFILE=/tmp/cpu writes /tmp/cpu.stream and
	// /tmp/cpu.sequential, for `go tool pprof` (how gzip was found to be the
	// bottleneck).
	if p := os.Getenv("KOPSDR_BENCH_CPUPROFILE"); p != "" {
		f, err := os.Create(p + "." + mode)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	ctx := context.Background()
	stopSampling := sampleHeap()
	start := time.Now()
	run, ok := modes[mode]
	if !ok {
		fmt.Fprintln(os.Stderr, "unknown mode", mode)
		return 2
	}
	res, err := run(ctx, childEnv{Etcd: cfg, Store: store, Tmp: os.Getenv("KOPSDR_BENCH_TMP")})
	if err != nil {
		fmt.Fprintln(os.Stderr, mode, err)
		return 1
	}
	res.Mode, res.Seconds, res.PeakRSSMiB = mode, time.Since(start).Seconds(), peakRSSMiB()
	res.PeakHeapMiB = stopSampling()
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		res.CPUSeconds = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// bareSnapshot reads etcd's snapshot stream and throws it away: no backup
// can be faster than this.
func bareSnapshot(ctx context.Context, cfg etcdconn.Config) (result, error) {
	cli, err := etcdconn.New(ctx, cfg)
	if err != nil {
		return result{}, err
	}
	defer cli.Close()
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		return result{}, err
	}
	defer rc.Close()
	n, err := io.CopyBuffer(io.Discard, rc, make([]byte, 256<<10))
	return result{RawBytes: n}, err
}

// benchLevel is the level the backup rows measure: KOPSDR_BENCH_LEVEL
// while tuning, or kopsdr's default.
func benchLevel() int {
	if l, err := strconv.Atoi(os.Getenv("KOPSDR_BENCH_LEVEL")); err == nil {
		return l
	}
	return activities.DefaultCompressionLevel
}

// streamBackup is kopsdr's own data path: the UploadSnapshot activity, at
// benchLevel (a sweep child's KOPSDR_BENCH_LEVEL, appended last, wins).
func streamBackup(ctx context.Context, cfg etcdconn.Config, store string) (result, error) {
	up, err := (&activities.Backup{}).UploadSnapshot(ctx, activities.UploadInput{Store: store, Name: "bench", Etcd: cfg, GzipLevel: benchLevel()})
	return result{RawBytes: up.RawBytes, StoredBytes: up.GzipBytes}, err
}

// sequentialBackup is the by-hand way: save the snapshot to a file (what
// `etcdctl snapshot save` does), `gzip -6` it, then upload that with the same
// uploader kopsdr uses.
func sequentialBackup(ctx context.Context, cfg etcdconn.Config, store, tmp string) (result, error) {
	cli, err := etcdconn.New(ctx, cfg)
	if err != nil {
		return result{}, err
	}
	defer cli.Close()
	raw := filepath.Join(tmp, "snapshot.db")
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		return result{}, err
	}
	rawBytes, err := copyToFile(raw, rc)
	rc.Close()
	if err != nil {
		return result{}, err
	}
	if out, err := exec.CommandContext(ctx, "gzip", "-6", raw).CombinedOutput(); err != nil {
		return result{}, fmt.Errorf("gzip -6: %v: %s", err, out)
	}
	gz := raw + ".gz"
	defer os.Remove(gz)
	st, err := backupstore.Open(ctx, store, backupstore.Options{})
	if err != nil {
		return result{}, err
	}
	f, err := os.Open(gz)
	if err != nil {
		return result{}, err
	}
	defer f.Close()
	n, err := st.Put(ctx, "bench/etcd.backup.gz", f, backupstore.PutOptions{})
	return result{RawBytes: rawBytes, StoredBytes: n}, err
}

func copyToFile(path string, r io.Reader) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// sampleHeap samples the live heap until the returned function is called,
// which returns the peak in MiB. RSS alone also counts garbage the
// collector has not yet returned, which depends on its pacing.
func sampleHeap() func() float64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak atomic.Uint64
	done := make(chan struct{})
	go func() {
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() float64 { close(done); return float64(peak.Load()) / (1 << 20) }
}

// peakRSSMiB is the process's high-water resident set (VmHWM).
func peakRSSMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
