package backupstore_test

import (
	"context"
	"testing"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/test/s3test"
)

// BenchmarkPutThroughFaults uploads 64 MiB (8 parts) through the fault
// injector and reports, per Put: the time, failed/op (the share of Puts
// that failed: a backup Temporal has to stream again), faults/op (failed
// requests, each retried unless it was the last of a failed Put) and
// requests/op. Faults are random at the given rate,
// half 503 SlowDown and half connection resets mid-body; "throttle" answers
// SlowDown above 4 requests per second instead, as S3 throttles a prefix.
// Backoffs are the real ones, so time includes the waits, and the 15 cases
// take about 13 minutes at 10 Puts each, mostly waiting:
//
//	go test ./internal/backupstore -run '^$' -bench PutThroughFaults -benchtime 10x
func BenchmarkPutThroughFaults(b *testing.B) {
	const size = 64 << 20
	retryers := []struct {
		name  string
		setup func(b *testing.B)
	}{
		{"kopsdr", func(b *testing.B) {}},
		{"kopsdr-adaptive", func(b *testing.B) { b.Setenv(backupstore.EnvRetryMode, "adaptive") }},
		{"sdk-default", func(b *testing.B) { b.Cleanup(backupstore.UseSDKRetryer()) }},
	}
	faults := []struct {
		name  string
		apply func(f *s3test.Faults)
	}{
		{"none", func(f *s3test.Faults) {}},
		{"1in5", func(f *s3test.Faults) { f.FailRandomly(1.0 / 5) }},
		{"1in3", func(f *s3test.Faults) { f.FailRandomly(1.0 / 3) }},
		{"1in2", func(f *s3test.Faults) { f.FailRandomly(1.0 / 2) }},
		{"throttle", func(f *s3test.Faults) { f.ThrottleAbove(4) }},
	}
	for _, r := range retryers {
		for _, fc := range faults {
			b.Run("retry="+r.name+"/faults="+fc.name, func(b *testing.B) {
				f := &s3test.Faults{}
				srv := s3test.StartGoFakeS3Wrapped(b, f.Wrap, bucket)
				srv.Setenv(b)
				for _, k := range []string{backupstore.EnvMaxAttempts, backupstore.EnvRetryMode, backupstore.EnvMaxBackoff} {
					b.Setenv(k, "")
				}
				r.setup(b)
				s, err := backupstore.Open(context.Background(), "s3://"+bucket+"/bench", backupstore.Options{})
				if err != nil {
					b.Fatal(err)
				}
				f.ResetStats()
				fc.apply(f)
				b.SetBytes(size)
				failed := 0
				for b.Loop() {
					if _, err := s.Put(context.Background(), "etcd.backup.gz", newStream(size), backupstore.PutOptions{}); err != nil {
						failed++
					}
				}
				st := f.Stats()
				n := float64(b.N)
				b.ReportMetric(float64(failed)/n, "failed/op")
				b.ReportMetric(float64(st.Faults())/n, "faults/op")
				b.ReportMetric(float64(st.Requests)/n, "requests/op")
			})
		}
	}
}
