package etcdtest

import (
	"fmt"
	"testing"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
)

// StartFromSnapshot restores snapshotPath, a file exactly as the Snapshot RPC
// streams it, with etcdutl into a fresh data dir and starts a one-member
// cluster on it. The sha256 trailer is checked, as etcd-manager does, so a
// snapshot that passes here is one a real restore accepts.
func StartFromSnapshot(t testing.TB, snapshotPath string, opts ...Option) *Cluster {
	t.Helper()
	o := buildOptions(opts)
	return start(t, 1, o, func(c *Cluster, m *Member) error {
		err := snapshot.NewV3(o.logger).Restore(snapshot.RestoreConfig{
			SnapshotPath:        snapshotPath,
			Name:                m.Name,
			OutputDataDir:       m.Dir,
			PeerURLs:            []string{m.PeerURL},
			InitialCluster:      c.initialCluster(),
			InitialClusterToken: c.token,
			SkipHashCheck:       false,
		})
		if err != nil {
			return fmt.Errorf("restore %s: %w", snapshotPath, err)
		}
		return nil
	})
}

// SnapshotRevision reads the revision stored in a snapshot file (trailer
// included or not), the same number `etcdutl snapshot status` prints.
func SnapshotRevision(t testing.TB, snapshotPath string) int64 {
	t.Helper()
	st, err := snapshot.NewV3(quietLogger()).Status(snapshotPath)
	if err != nil {
		t.Fatalf("etcdtest: snapshot status %s: %v", snapshotPath, err)
	}
	return st.Revision
}
