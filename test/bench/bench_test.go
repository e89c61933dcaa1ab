// Package bench measures kopsdr's backup data path against the sequential
// way an operator would do it by hand (etcdctl snapshot save, gzip, upload),
// at two database sizes, and reports time, ratio and peak memory.
//
//	make bench   (go test -run '^$' -bench . -benchtime 5x ./test/bench)
//
// Each measured backup runs in a child process (this test binary re-run), so
// its peak RSS is the worker's alone: etcd and the S3 server (versitygw) run
// elsewhere and do not count.
package bench

import (
	"bufio"
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
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdconn"
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
	RawBytes    int64   `json:"rawBytes"`
	StoredBytes int64   `json:"storedBytes"`
}

func TestMain(m *testing.M) {
	if os.Getenv("KOPSDR_BENCH_CHILD") != "" {
		os.Exit(child())
	}
	os.Exit(m.Run())
}

func BenchmarkBackup(b *testing.B) {
	s3 := s3test.StartVersityGW(b, bucket)
	type row struct {
		sizeMiB     int
		stream, seq result
	}
	var rows []row
	for _, sizeMiB := range []int{64, 256} {
		etcd := etcdtest.Start(b, 1, etcdtest.WithQuotaBytes(4<<30))
		const valueSize = 16 << 10
		etcdtest.Fill(b, etcd.Client(b), "/registry/configmaps/", sizeMiB<<20/valueSize, valueSize)
		// Alternate the two ways b.N times and keep each one's median, so
		// a hiccup of the machine does not decide the comparison.
		var streams, seqs []result
		for i := 0; i < b.N; i++ {
			streams = append(streams, runChild(b, "stream", etcd, s3, sizeMiB))
			seqs = append(seqs, runChild(b, "sequential", etcd, s3, sizeMiB))
		}
		r := row{sizeMiB: sizeMiB, stream: median(streams), seq: median(seqs)}
		rows = append(rows, r)
		b.ReportMetric(r.stream.Seconds, fmt.Sprintf("s-stream-%dMiB", sizeMiB))
		b.ReportMetric(r.seq.Seconds, fmt.Sprintf("s-sequential-%dMiB", sizeMiB))
		b.ReportMetric(r.stream.Seconds/r.seq.Seconds, fmt.Sprintf("ratio-%dMiB", sizeMiB))
		b.ReportMetric(r.stream.PeakRSSMiB, fmt.Sprintf("peakRSS-MiB-%dMiB", sizeMiB))
	}
	fmt.Printf("\nmedians of %d runs each\n%-10s %-12s %-10s %-12s %-8s %-14s %-16s %-16s\n", b.N, "db", "raw snapshot", "gzip", "kopsdr", "by hand", "ratio (<=0.7)", "kopsdr peak RSS", "kopsdr peak heap")
	for _, r := range rows {
		fmt.Printf("%-10s %-12s %-10s %-12s %-8s %-14s %-16s %-16s\n",
			fmt.Sprintf("%d MiB", r.sizeMiB), mib(r.stream.RawBytes), mib(r.stream.StoredBytes),
			fmt.Sprintf("%.2fs", r.stream.Seconds), fmt.Sprintf("%.2fs", r.seq.Seconds),
			fmt.Sprintf("%.2f", r.stream.Seconds/r.seq.Seconds), fmt.Sprintf("%.0f MiB", r.stream.PeakRSSMiB),
			fmt.Sprintf("%.0f MiB", r.stream.PeakHeapMiB))
	}
}

// median returns the run with the median time.
func median(rs []result) result {
	sort.Slice(rs, func(i, j int) bool { return rs[i].Seconds < rs[j].Seconds })
	return rs[len(rs)/2]
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// runChild runs one backup in a fresh process and returns what it measured.
func runChild(b *testing.B, mode string, etcd *etcdtest.Cluster, s3 *s3test.Server, sizeMiB int) result {
	b.Helper()
	cfg, _ := json.Marshal(etcd.ConnConfig())
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), s3.Env()...)
	cmd.Env = append(cmd.Env, "KOPSDR_BENCH_CHILD="+mode, "KOPSDR_BENCH_ETCD="+string(cfg),
		"KOPSDR_BENCH_STORE=s3://"+bucket+"/"+mode+"-"+strconv.Itoa(sizeMiB), "KOPSDR_BENCH_TMP="+b.TempDir())
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
	"stream":     func(ctx context.Context, e childEnv) (result, error) { return streamBackup(ctx, e.Etcd, e.Store) },
	"sequential": func(ctx context.Context, e childEnv) (result, error) { return sequentialBackup(ctx, e.Etcd, e.Store, e.Tmp) },
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
	_ = json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// streamBackup is kopsdr's own data path: the UploadSnapshot activity.
func streamBackup(ctx context.Context, cfg etcdconn.Config, store string) (result, error) {
	up, err := (&activities.Backup{}).UploadSnapshot(ctx, activities.UploadInput{Store: store, Name: "bench", Etcd: cfg})
	return result{RawBytes: up.RawBytes, StoredBytes: up.GzipBytes}, err
}

// sequentialBackup is the by-hand way: save the snapshot to a file, gzip
// it to a second file, then upload that (same gzip level, same uploader).
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
	gz := raw + ".gz"
	in, err := os.Open(raw)
	if err != nil {
		return result{}, err
	}
	out, err := os.Create(gz)
	if err != nil {
		return result{}, err
	}
	bw := bufio.NewWriterSize(out, 256<<10)
	zw := gzip.NewWriter(bw) // the same level kopsdr uses by default
	if _, err := io.Copy(zw, in); err != nil {
		return result{}, err
	}
	in.Close()
	if err := zw.Close(); err != nil {
		return result{}, err
	}
	if err := bw.Flush(); err != nil {
		return result{}, err
	}
	if err := out.Close(); err != nil {
		return result{}, err
	}
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
