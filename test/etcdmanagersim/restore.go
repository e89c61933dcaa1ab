package etcdmanagersim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/klauspost/compress/gzip"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

// copyPage is how many keys one range request reads from the restored
// snapshot: memory stays bounded whatever the size of the backup.
const copyPage = 200

// restore runs a pending restoreBackup command on this member. Every
// member does the same steps, in the same order, without talking to the
// others except through etcd and the store:
//
//  1. serve the old data for RestoreDelay (what clients see right after
//     the restart), unless this member already wiped for this command;
//  2. wipe the data dir and start a member of a NEW cluster whose token is
//     derived from the command, so all members agree on it, in quarantine;
//  3. the leader restores the backup into it and deletes _command.json;
//     the others wait for that file to go away;
//  4. read control/ again: another pending command starts over at 2,
//     none means leave quarantine and serve.
func (s *sim) restore(ctx context.Context, cmd *etcdmanager.Command) error {
	first := true
	for {
		s.logf("pending command %s: restore backup %q", cmd.Name, cmd.RestoreBackup.Backup)
		if s.readMarker() == cmd.Name {
			s.logf("already joined the new cluster for command %s before a restart: not wiping again", cmd.Name)
		} else {
			if first {
				if err := s.serveOldData(ctx); err != nil {
					return err
				}
			}
			s.logf("wiping %s for command %s", s.etcdDir(), cmd.Name)
			if err := os.RemoveAll(s.etcdDir()); err != nil {
				return err
			}
			if err := s.writeMarker(cmd.Name); err != nil {
				return err
			}
		}
		first = false

		token := "restore-" + s.cfg.ClusterName + "-" + cmd.Name
		s.logf("starting a new empty cluster (token %s) in quarantine on %s", token, s.quarantineURL())
		e, err := s.startMember(quarantined, token)
		if err != nil {
			return err
		}
		if s.cfg.isLeader() {
			err = s.leadRestore(ctx, cmd)
		} else {
			err = s.awaitRestore(ctx, cmd, e)
		}
		e.stop()
		if err != nil {
			return err
		}

		next, err := s.readCommand(ctx)
		if err != nil {
			return err
		}
		if next == nil {
			s.logf("leaving quarantine: serving on %s", s.cfg.ClientURL)
			return s.serve(ctx)
		}
		cmd = next
	}
}

// serveOldData serves the data dir as it is for RestoreDelay, as
// etcd-manager does before it picks a command up.
func (s *sim) serveOldData(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(s.etcdDir(), "member")); err != nil {
		s.logf("no old data to serve; waiting %s before the restore", s.cfg.RestoreDelay)
		return sleep(ctx, s.cfg.RestoreDelay)
	}
	s.logf("serving the old data for %s before the restore", s.cfg.RestoreDelay)
	_, stop, err := s.startServing(ctx, s.normalToken())
	if err != nil {
		return err
	}
	defer stop()
	if err := sleep(ctx, s.cfg.RestoreDelay); err != nil {
		return err
	}
	s.logf("starting the restore: stopping etcd")
	return nil
}

// awaitRestore waits, in quarantine, until the command's file is gone:
// the leader deletes it once the new cluster holds the backup (or an
// operator deleted it).
func (s *sim) awaitRestore(ctx context.Context, cmd *etcdmanager.Command, e *member) error {
	s.logf("waiting for leader %s to restore and delete command %s", s.cfg.Leader, cmd.Name)
	for {
		pending, err := s.commandPending(ctx, cmd.Name)
		if err != nil {
			s.logf("ERROR checking command %s: %v", cmd.Name, err)
		} else if !pending {
			s.logf("command %s is gone", cmd.Name)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-e.Err():
			return fmt.Errorf("etcd failed in quarantine: %w", err)
		case <-time.After(s.cfg.PollInterval):
		}
	}
}

// leadRestore restores the command's backup into the new cluster, retrying
// every RetryInterval (serving nothing meanwhile) until it succeeds or the
// command is deleted, then deletes the command.
func (s *sim) leadRestore(ctx context.Context, cmd *etcdmanager.Command) error {
	for {
		pending, err := s.commandPending(ctx, cmd.Name)
		if err == nil && !pending {
			s.logf("command %s was deleted before the restore completed", cmd.Name)
			return nil
		}
		if err == nil {
			start := time.Now()
			var n int
			if n, err = s.restoreBackup(ctx, cmd.RestoreBackup.Backup); err == nil {
				if err = etcdmanager.DeleteCommand(ctx, s.store, cmd.Name); err == nil {
					s.logf("restored %d keys from backup %s in %s; deleted command %s",
						n, cmd.RestoreBackup.Backup, time.Since(start).Round(time.Millisecond), cmd.Name)
					if s.cfg.BackupAfterRestore {
						s.backupRestored(ctx, cmd)
					}
					return nil
				}
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.logf("ERROR restoring backup %q (retrying in %s): %v", cmd.RestoreBackup.Backup, s.cfg.RetryInterval, err)
		if err := sleep(ctx, s.cfg.RetryInterval); err != nil {
			return err
		}
	}
}

// backupRestored takes a backup of the restored cluster, as etcd-manager
// does right after a restore, while this member is still in quarantine.
// A failure is logged, not retried: the restore itself is done.
func (s *sim) backupRestored(ctx context.Context, cmd *etcdmanager.Command) {
	endpoint := s.quarantineURL().String()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err == nil {
		defer cli.Close()
		spec := etcdmanager.ClusterSpec{MemberCount: int32(len(s.cfg.Peers))}
		if cmd.RestoreBackup.ClusterSpec != nil {
			spec = *cmd.RestoreBackup.ClusterSpec
		}
		var name string
		if name, err = WriteBackup(ctx, cli, endpoint, s.store, spec); err == nil {
			s.logf("took backup %s of the restored data", name)
			return
		}
	}
	s.logf("ERROR backup after the restore: %v", err)
}

// restoreBackup fetches backup, checks and restores its snapshot with
// etcdutl into a temporary single-member etcd on loopback, and copies
// every key from it into the new cluster with plain puts in key order: new
// revisions from 2, no leases, as etcd-manager does.
func (s *sim) restoreBackup(ctx context.Context, backup string) (int, error) {
	tmp := filepath.Join(s.cfg.DataDir, "restore-tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)

	// Parsed as strictly as etcd-manager parses it: a meta with an unknown
	// field makes the backup unreadable.
	info, err := etcdmanager.ReadBackupInfo(ctx, s.store, backup)
	if err != nil {
		return 0, fmt.Errorf("backup %q: %w", backup, err)
	}
	s.logf("backup %s was taken by etcd %s at %s", backup, info.EtcdVersion, time.Unix(info.Timestamp, 0).UTC().Format(time.RFC3339))
	snap := filepath.Join(tmp, "snapshot.db")
	if err := s.download(ctx, backup, snap); err != nil {
		return 0, err
	}
	src, stopSrc, err := s.startSnapshotEtcd(ctx, snap, filepath.Join(tmp, "etcd"))
	if err != nil {
		return 0, err
	}
	defer stopSrc()

	dst, err := clientv3.New(clientv3.Config{Endpoints: []string{s.quarantineURL().String()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return 0, err
	}
	defer dst.Close()
	if err := s.waitQuorum(ctx, dst); err != nil {
		return 0, err
	}
	return s.copyKeys(ctx, src, dst)
}

// download gunzips backup's etcd.backup.gz into path, streaming.
func (s *sim) download(ctx context.Context, backup, path string) error {
	rc, err := s.store.Get(ctx, backup+"/"+etcdmanager.DataFile)
	if err != nil {
		return fmt.Errorf("backup %q: %w", backup, err)
	}
	defer rc.Close()
	zr, err := gzip.NewReader(rc)
	if err != nil {
		return fmt.Errorf("backup %q: %s is not gzip: %w", backup, etcdmanager.DataFile, err)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, zr)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("backup %q: gunzip %s: %w", backup, etcdmanager.DataFile, err)
	}
	s.logf("downloaded backup %s: %d snapshot bytes", backup, n)
	return nil
}

// startSnapshotEtcd restores snap with etcdutl, checking its sha256
// trailer (a copied bolt file, without one, is refused as etcd-manager
// refuses it), and serves it from a one-member etcd on loopback ports.
func (s *sim) startSnapshotEtcd(ctx context.Context, snap, dir string) (*clientv3.Client, func(), error) {
	ports, err := freeLoopbackPorts(2)
	if err != nil {
		return nil, nil, err
	}
	clientURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	err = snapshot.NewV3(s.etcdLog.Named("etcdutl")).Restore(snapshot.RestoreConfig{
		SnapshotPath:        snap,
		Name:                "restore",
		OutputDataDir:       dir,
		PeerURLs:            []string{peerURL},
		InitialCluster:      "restore=" + peerURL,
		InitialClusterToken: "restore-" + s.cfg.ClusterName,
		SkipHashCheck:       false,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("etcdutl snapshot restore: %w", err)
	}
	s.logf("snapshot passed its sha256 check and was restored with etcdutl; starting it on %s", clientURL)

	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = "restore", dir
	cu, pu := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(ports[0])}, url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(ports[1])}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = "restore=" + peerURL
	cfg.UnsafeNoFsync = true // thrown away after the copy
	lg, muted := muteable(s.etcdLog.Named("snapshot"))
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	ee, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("start etcd on the restored snapshot: %w", err)
	}
	e := &member{Etcd: ee, muted: muted}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.stop()
		return nil, nil, err
	case <-ctx.Done():
		e.stop()
		return nil, nil, ctx.Err()
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{clientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		e.stop()
		return nil, nil, err
	}
	return cli, func() { cli.Close(); e.stop() }, nil
}

// waitQuorum waits until the new cluster answers a linearizable read,
// which needs a quorum of members to have joined it.
func (s *sim) waitQuorum(ctx context.Context, cli *clientv3.Client) error {
	s.logf("waiting for a quorum of the new cluster")
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := cli.Get(rctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
		cancel()
		if err == nil {
			if resp.Count > 0 {
				// Only after a restart half-way through a copy: start clean.
				s.logf("the new cluster already holds %d keys from an interrupted restore; deleting them", resp.Count)
				if _, err := cli.Delete(ctx, "\x00", clientv3.WithFromKey()); err != nil {
					return err
				}
			}
			return nil
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// copyKeys puts every key of src into dst, one plain Put per key in key
// order, reading src page by page at one fixed revision so that leases
// expiring in src meanwhile change nothing.
func (s *sim) copyKeys(ctx context.Context, src, dst *clientv3.Client) (int, error) {
	key, rev, n := "\x00", int64(0), 0
	for {
		opts := []clientv3.OpOption{clientv3.WithFromKey(), clientv3.WithLimit(copyPage)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := src.Get(ctx, key, opts...)
		if err != nil {
			return n, fmt.Errorf("read the restored snapshot: %w", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
			s.logf("copying the keys of the snapshot (revision %d) into the new cluster", rev)
		}
		for _, kv := range resp.Kvs {
			if _, err := dst.Put(ctx, string(kv.Key), string(kv.Value)); err != nil {
				return n, fmt.Errorf("put %q into the new cluster: %w", kv.Key, err)
			}
			n++
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return n, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// freeLoopbackPorts asks the kernel for n free ports on 127.0.0.1.
func freeLoopbackPorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	if len(ports) != n {
		return nil, errors.New("no free ports")
	}
	return ports, nil
}
