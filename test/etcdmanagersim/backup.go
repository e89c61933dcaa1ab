package etcdmanagersim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/klauspost/compress/gzip"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/snapshot"
)

// WriteBackup takes a snapshot of the member at endpoint and stores it as
// etcd-manager does, under a fresh backup name: the gzip'd snapshot stream
// first, the meta last. It is the tests' own simple way to make a backup
// the stand-in (and etcd-manager) can restore; kopsdr has its own.
func WriteBackup(ctx context.Context, cli *clientv3.Client, endpoint string, store backupstore.Store, spec etcdmanager.ClusterSpec) (string, error) {
	name, err := freeBackupName(ctx, store)
	if err != nil {
		return "", err
	}
	pr, pw := io.Pipe()
	type result struct {
		res snapshot.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := snapshot.Stream(ctx, cli, endpoint, pw, gzip.BestSpeed, nil)
		pw.CloseWithError(err) // nil closes cleanly
		done <- result{res, err}
	}()
	_, putErr := store.Put(ctx, name+"/"+etcdmanager.DataFile, pr, backupstore.PutOptions{})
	pr.CloseWithError(putErr) // unblocks Stream if Put gave up early
	r := <-done
	if r.err != nil {
		return "", fmt.Errorf("backup %s: %w", name, r.err)
	}
	if putErr != nil {
		return "", fmt.Errorf("backup %s: %w", name, putErr)
	}
	info := etcdmanager.BackupInfo{EtcdVersion: r.res.EtcdVersion, Timestamp: time.Now().Unix(), ClusterSpec: &spec}
	if err := etcdmanager.WriteBackupInfo(ctx, store, name, info, backupstore.PutOptions{}); err != nil {
		return "", err
	}
	return name, nil
}

// freeBackupName is BackupName(now, seq) with the lowest seq not in use,
// so backups taken within one second get different names.
func freeBackupName(ctx context.Context, store backupstore.Store) (string, error) {
	now := time.Now()
	for seq := 1; seq < 1000000; seq++ {
		name := etcdmanager.BackupName(now, seq)
		objs, err := store.List(ctx, name+"/")
		if err != nil {
			return "", err
		}
		if len(objs) == 0 {
			return name, nil
		}
	}
	return "", errors.New("no free backup name")
}
