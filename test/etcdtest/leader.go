package etcdtest

import (
	"testing"
	"time"
)

// LeaderIndex is the index in Members of the current leader, waiting up to
// a minute for the cluster to have one.
func (c *Cluster) LeaderIndex(t testing.TB) int {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		for i, m := range c.Members {
			m.mu.Lock()
			e := m.etcd
			m.mu.Unlock()
			if e != nil && e.Server.Leader() != 0 && e.Server.MemberID() == e.Server.Leader() {
				return i
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("etcdtest: no leader after a minute")
	return -1
}

// Stop stops every member now rather than at the test's end (which stops
// them again, harmlessly): for tests that start many short-lived clusters.
func (c *Cluster) Stop() { c.stopAll() }
