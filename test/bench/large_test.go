package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/test/benchtable"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/s3test"
)

// largeGroup is the table group of BenchmarkLargeDatabases.
const largeGroup = "large databases"

// largeRSSBound is the bound on how much a step's worker peak RSS
// may grow from the smallest database to the largest.
const largeRSSBound = 64

// largeBackup names the one backup each size's store holds; a fixed name
// that etcd-manager's format accepts, so pre-flight's listing finds it.
var largeBackup = etcdmanager.BackupName(time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC), 1)

// largeSize is one database size BenchmarkLargeDatabases measures.
type largeSize struct {
	label string
	bytes int64
}

func largeSizes() []largeSize {
	sizes := []largeSize{{"256 MiB", 256 << 20}, {"2 GiB", 2 << 30}}
	// 8 GiB takes about as long again as everything else together (the
	// fill alone is minutes), so it is opt-in: make bench BENCH_8G=1.
	if os.Getenv("KOPSDR_BENCH_8G") != "" {
		sizes = append(sizes, largeSize{"8 GiB", 8 << 30})
	}
	return sizes
}

// largeSteps are the measured children, in the order of the table: the
// backup activity's two steps, then two baselines that read the stored
// object the plainest ways, then the restore's pre-flight. Each is a
// separate process so each peak RSS is that step's alone.
var largeSteps = []struct{ mode, what string }{
	{"large-upload", "backup: upload (UploadSnapshot)"},
	{"large-finalize", "verification (FinalizeBackup)"},
	{"large-get", "streaming read: GET to /dev/null"},
	{"large-gunzip", "streaming read: GET + gunzip"},
	{"large-preflight", "restore pre-flight (Preflight)"},
}

func init() {
	modes["large-upload"] = largeUpload
	modes["large-finalize"] = largeFinalize
	modes["large-spec"] = largeSpec
	modes["large-get"] = func(ctx context.Context, e childEnv) (result, error) { return largeRead(ctx, e, false) }
	modes["large-gunzip"] = func(ctx context.Context, e childEnv) (result, error) { return largeRead(ctx, e, true) }
	modes["large-preflight"] = largePreflight
}

// BenchmarkLargeDatabases backs up, verifies and pre-flights a restore of
// databases of 256 MiB, 2 GiB and (KOPSDR_BENCH_8G=1) 8 GiB, and records
// each step's time, worker peak RSS and live heap, so that memory that
// grows with the database shows up as a growing column:
//
//	KOPSDR_BENCH_8G=1 go test -run '^$' -bench LargeDatabases -benchtime 1x -timeout 120m ./test/bench
//
// The steps run once per size (the reads three times up to 2 GiB, taking
// turns) whatever b.N is: one 2 GiB round takes minutes, and memory, the
// point here, does not vary between runs.
func BenchmarkLargeDatabases(b *testing.B) {
	s3 := startS3(b)
	peaks := map[string][]float64{} // mode -> peak RSS per size, in order
	var sizes []string
	for _, size := range largeSizes() {
		// A sub-benchmark per size, so that its etcd and scratch files are
		// removed before the next size fills its own.
		var measured map[string]result
		b.Run(size.label, func(b *testing.B) {
			// The testing package calls a benchmark again with the
			// -benchtime count after a first call with b.N = 1: that
			// second call only reports what the first measured.
			if measured == nil {
				measured = runLargeSize(b, s3, size)
			}
			for _, s := range largeSteps {
				b.ReportMetric(measured[s.mode].PeakRSSMiB, "peakRSS-MiB-"+s.mode)
			}
		})
		if measured == nil {
			return // the sub-benchmark failed
		}
		sizes = append(sizes, size.label)
		for _, s := range largeSteps {
			peaks[s.mode] = append(peaks[s.mode], measured[s.mode].PeakRSSMiB)
		}
	}
	if len(sizes) < 2 {
		return
	}
	for _, s := range largeSteps {
		p := peaks[s.mode]
		growth := p[len(p)-1] - p[0]
		verdict := "within"
		if growth > largeRSSBound {
			verdict = "EXCEEDS"
		}
		record(b, benchtable.Row{
			Group: largeGroup, What: "peak RSS growth: " + s.what,
			Size:    sizes[0] + " → " + sizes[len(sizes)-1],
			PeakRSS: fmt.Sprintf("%+d MiB", int(math.Round(growth))), // +0, never -0
			Note:    fmt.Sprintf("%s the %d MiB bound", verdict, largeRSSBound),
		})
	}
}

// runLargeSize fills one etcd to size, runs every step against it and
// records a row per step.
func runLargeSize(b *testing.B, s3 *s3test.Server, size largeSize) map[string]result {
	// Values that fit four bolt pages with their key and revision, so the
	// database is about the size asked for rather than a quarter larger.
	const valueSize = 16000
	etcd := etcdtest.Start(b, 1, etcdtest.WithQuotaBytes(size.bytes+2<<30))
	start := time.Now()
	etcdtest.Fill(b, etcd.Client(b), "/registry/configmaps/", int(size.bytes/(16<<10)), valueSize)
	b.Logf("%s: filled in %v", size.label, time.Since(start).Round(time.Second))

	env := largeEnv{
		etcd:  etcd,
		s3:    s3,
		store: "s3://" + bucket + "/large-" + fmt.Sprint(size.bytes>>20),
		tmp:   b.TempDir(),
	}
	out := map[string]result{}
	for _, mode := range []string{"large-upload", "large-finalize"} {
		out[mode] = runLargeChild(b, mode, env)
	}
	// kops writes the cluster spec when it creates the cluster; pre-flight
	// refuses a store without it. Not measured.
	runLargeChild(b, "large-spec", env)
	// Pre-flight is compared with the plain reads, so they take turns, a
	// few rounds up to 2 GiB: a busy machine then slows all three alike.
	reps := 3
	if size.bytes > 2<<30 {
		reps = 1
	}
	reads := map[string][]result{}
	for range reps {
		for _, mode := range []string{"large-get", "large-gunzip", "large-preflight"} {
			reads[mode] = append(reads[mode], runLargeChild(b, mode, env))
		}
	}
	for mode, rs := range reads {
		out[mode] = medianTimeMaxMemory(rs)
	}

	up := out["large-upload"]
	// Pre-flight against the two baselines: what it adds to one plain read.
	gunzip, get, pre := out["large-gunzip"].Seconds, out["large-get"].Seconds, out["large-preflight"].Seconds
	for _, s := range largeSteps {
		r := out[s.mode]
		row := benchtable.Row{
			Group: largeGroup, What: s.what, Size: size.label,
			Time:    fmt.Sprintf("%.1f s", r.Seconds),
			PeakRSS: fmt.Sprintf("%.0f MiB", r.PeakRSSMiB),
			Heap:    fmt.Sprintf("%.0f MiB", r.PeakHeapMiB),
		}
		if reps > 1 && (s.mode == "large-get" || s.mode == "large-gunzip" || s.mode == "large-preflight") {
			row.Note = fmt.Sprintf("median time of %d, taking turns; highest memory", reps)
		}
		switch s.mode {
		case "large-upload":
			row.Output = fmt.Sprintf("%s raw → %s gzip", mib(up.RawBytes), mib(up.StoredBytes))
		case "large-finalize", "large-gunzip":
			row.Ratio = fmt.Sprintf("%.2fx GET", r.Seconds/get)
		case "large-preflight":
			row.Ratio = fmt.Sprintf("%.2fx GET+gunzip, %.2fx GET", pre/gunzip, pre/get)
			row.Note = strings.TrimPrefix(row.Note+"; one streaming read: the stored bytes' sha256 against kopsdr.json", "; ")
		}
		record(b, row)
	}
	return out
}

// medianTimeMaxMemory is the run with the median time, with the highest
// peak RSS and live heap of all the runs: memory must stay bounded in
// every run, not on average.
func medianTimeMaxMemory(rs []result) result {
	m := median(slices.Clone(rs))
	for _, r := range rs {
		m.PeakRSSMiB, m.PeakHeapMiB = max(m.PeakRSSMiB, r.PeakRSSMiB), max(m.PeakHeapMiB, r.PeakHeapMiB)
	}
	return m
}

// largeEnv is what the children of one size share: the store holds the
// one backup, tmp the upload's result for the finalize step.
type largeEnv struct {
	etcd  *etcdtest.Cluster
	s3    *s3test.Server
	store string
	tmp   string
}

// runLargeChild is runChild with a store and scratch dir shared by the
// steps of one size (runChild gives each child its own).
func runLargeChild(b *testing.B, mode string, e largeEnv) result {
	b.Helper()
	return spawnChild(b, mode, e.etcd, e.s3, e.store, e.tmp)
}

// uploadFile is where the upload child leaves its result for finalize,
// as a workflow passes it from one activity to the next.
func uploadFile(e childEnv) string { return filepath.Join(e.Tmp, "upload.json") }

func largeUpload(ctx context.Context, e childEnv) (result, error) {
	up, err := (&activities.Backup{}).UploadSnapshot(ctx, activities.UploadInput{Store: e.Store, Name: largeBackup, Etcd: e.Etcd})
	if err != nil {
		return result{}, err
	}
	data, _ := json.Marshal(up)
	return result{RawBytes: up.RawBytes, StoredBytes: up.GzipBytes}, os.WriteFile(uploadFile(e), data, 0o644)
}

func largeFinalize(ctx context.Context, e childEnv) (result, error) {
	data, err := os.ReadFile(uploadFile(e))
	if err != nil {
		return result{}, err
	}
	var up activities.UploadResult
	if err := json.Unmarshal(data, &up); err != nil {
		return result{}, err
	}
	_, err = (&activities.Backup{}).FinalizeBackup(ctx, activities.FinalizeInput{
		Store: e.Store, Name: largeBackup, Upload: up, MemberCount: up.MemberCount,
		WorkflowID: "bench", Timestamp: time.Now(),
	})
	return result{RawBytes: up.RawBytes, StoredBytes: up.GzipBytes}, err
}

func largeSpec(ctx context.Context, e childEnv) (result, error) {
	st, err := backupstore.Open(ctx, e.Store, backupstore.Options{})
	if err != nil {
		return result{}, err
	}
	return result{}, etcdmanager.WriteClusterSpec(ctx, st, etcdmanager.ClusterSpec{MemberCount: 1, EtcdVersion: "3.5.21"})
}

// largeRead is the baseline pre-flight is held to: the backup read once,
// as a byte stream (gunzip false) or decompressed as well, nothing kept.
func largeRead(ctx context.Context, e childEnv, gunzip bool) (result, error) {
	st, err := backupstore.Open(ctx, e.Store, backupstore.Options{})
	if err != nil {
		return result{}, err
	}
	rc, err := st.Get(ctx, largeBackup+"/"+etcdmanager.DataFile)
	if err != nil {
		return result{}, err
	}
	defer rc.Close()
	counted := &countingReader{r: rc}
	var r io.Reader = counted
	if gunzip {
		zr, err := gzip.NewReader(counted)
		if err != nil {
			return result{}, err
		}
		r = zr
	}
	raw, err := io.CopyBuffer(io.Discard, r, make([]byte, 256<<10))
	return result{RawBytes: raw, StoredBytes: counted.n}, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// largePreflight is the restore's pre-flight of the backup's cluster only:
// no masters, so nothing outside the store and etcd is asked.
func largePreflight(ctx context.Context, e childEnv) (result, error) {
	res, err := (&activities.Restore{}).Preflight(ctx, activities.PreflightInput{Clusters: []activities.PreflightCluster{{
		EtcdCluster: "main", Field: "backup", Store: e.Store, Backup: largeBackup, Etcd: e.Etcd,
	}}})
	if err != nil {
		return result{}, err
	}
	return result{StoredBytes: res.Clusters[0].Bytes}, nil
}
