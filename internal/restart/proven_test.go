package restart_test

import (
	"testing"
	"time"

	"github.com/kopsdr/kopsdr/internal/restart"
)

// Proven compares only what one master reported: IDs and its own start
// times. No worker clock enters, so no skew can make an old process pass.
func TestProven(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	base := []restart.Container{
		{ID: "old", Name: "k8s_etcd-manager_x_0", Running: true, StartedAt: t0},
		{ID: "dead", Name: "k8s_etcd-manager_x_prev", State: "exited", StartedAt: t0.Add(-time.Hour)},
	}
	for _, tc := range []struct {
		name string
		c    restart.Container
		want bool
	}{
		{"the baseline's process, still running", restart.Container{ID: "old", Running: true, StartedAt: t0}, false},
		{"the baseline's container, started again", restart.Container{ID: "old", Running: true, StartedAt: t0.Add(time.Millisecond)}, true},
		{"a new container", restart.Container{ID: "new", Name: "k8s_etcd-manager_x_1", Running: true, StartedAt: t0.Add(-24 * time.Hour)}, true},
		{"a new container not running yet", restart.Container{ID: "new", State: "created"}, false},
		{"an old dead one started again", restart.Container{ID: "dead", Running: true, StartedAt: t0.Add(-time.Minute)}, true},
		{"a start time earlier than the baseline's", restart.Container{ID: "old", Running: true, StartedAt: t0.Add(-time.Second)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proof, ok := restart.Proven(tc.c, base)
			if ok != tc.want || (ok && proof == "") {
				t.Fatalf("Proven = %q, %v; want %v", proof, ok, tc.want)
			}
		})
	}
}
