package drill_test

import (
	"testing"

	"github.com/kopsdr/kopsdr/internal/drill"
	"github.com/kopsdr/kopsdr/test/etcdtest"
)

// BenchmarkDrill drills a backup of about 8 MiB of values end to end and
// reports the snapshot bytes restored and read back per second.
func BenchmarkDrill(b *testing.B) {
	c := etcdtest.Start(b, 1)
	cli := c.Client(b)
	fillKubernetes(b, cli)
	etcdtest.Fill(b, cli, "/registry/secrets/default/", 4000, 2000)
	f := backUp(b, c, cli)
	tmp := b.TempDir()

	var res drill.Result
	b.ResetTimer()
	for b.Loop() {
		var err error
		res, err = drill.Run(testCtx(b), f.store, f.backup, drill.Options{TempDir: tmp})
		if err != nil || !res.Passed {
			b.Fatalf("drill: %v %v", err, res.Failures)
		}
	}
	b.SetBytes(res.SnapshotBytes)
	b.ReportMetric(float64(res.SnapshotBytes)/(1<<20)/(b.Elapsed().Seconds()/float64(b.N)), "MiB/s")
	b.ReportMetric(res.Timings.RTOSeconds, "rto-s")
	b.Logf("snapshot %.1f MiB (gzip %.1f MiB), %d keys; last run: download+verify %.2fs, restore %.2fs, start %.2fs, check %.2fs",
		float64(res.SnapshotBytes)/(1<<20), float64(res.DownloadedBytes)/(1<<20), res.Counts.Total,
		res.Timings.DownloadSeconds, res.Timings.RestoreSeconds, res.Timings.StartSeconds, res.Timings.CheckSeconds)
}
