package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/workflows/api"
)

// TestBackupResultNamesAbandonedFolders: status says which folders without
// a meta the prune removed (or, in a dry run, would have), and says
// nothing of them when there were none.
func TestBackupResultNamesAbandonedFolders(t *testing.T) {
	r := api.EtcdBackupResult{EtcdCluster: "main", Backup: "2026-12-01T10:00:00Z-000001", Store: "s3://b/c/backups/etcd/main"}
	var out bytes.Buffer
	printBackupResult(&out, r)
	require.NotContains(t, out.String(), "abandoned")

	r.Abandoned = []string{"2026-11-20T10:00:00Z-000001", "2026-11-20T11:00:00Z-000001"}
	out.Reset()
	printBackupResult(&out, r)
	require.Contains(t, out.String(), "abandoned folders removed: 2026-11-20T10:00:00Z-000001, 2026-11-20T11:00:00Z-000001\n")

	r.PruneDryRun = true
	out.Reset()
	printBackupResult(&out, r)
	require.Contains(t, out.String(), "abandoned folders to remove (dry run: kept): 2026-11-20T10:00:00Z-000001, ")
}
