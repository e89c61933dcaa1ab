package etcdmanager_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

// etcd-manager-ctl delete-command takes the backup a command restores
// (cmd/etcd-manager-ctl/main.go, runDeleteCommand), never the folder name.
func TestDeleteCommandHintNamesTheBackup(t *testing.T) {
	c := etcdmanager.Command{Name: "2026-11-21T22:54:59Z-000000", RestoreBackup: &etcdmanager.RestoreBackupCommand{Backup: "2026-11-20T10:00:00Z-000042"}}
	hint := etcdmanager.DeleteCommandHint("s3://my.clusters/test.my.clusters/backups/etcd/main", c)
	assert.Equal(t, "etcd-manager-ctl --backup-store=s3://my.clusters/test.my.clusters/backups/etcd/main delete-command 2026-11-20T10:00:00Z-000042", hint)
	assert.NotContains(t, hint, c.Name)
	assert.Contains(t, etcdmanager.DeleteCommandHint("file:///b", etcdmanager.Command{Name: "x"}), "delete-command <backup it restores>")
}
