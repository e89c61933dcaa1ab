// Package etcdmanagersim is a stand-in for etcd-manager that behaves, as
// seen from outside, the way docs/formats.md ("The control folder") describes
// the real one: it runs one member of a 3-member etcd cluster, reads the
// backup store's control/ folder only when it starts, and on a pending
// restoreBackup command serves the old data for a while, then rebuilds the
// cluster empty, restores the named backup into it with plain puts, deletes
// the command and serves the restored data. It can also play the master's
// kube-apiserver, keeping /registry/masterleases/<ip> alive.
//
// It runs in Docker containers (cmd/etcdmanager-sim, harness in
// test/masters), or containerd containers (test/cmasters), so kopsdr's
// restore is tested against real processes that it restarts through the
// Docker or the containerd API.
package etcdmanagersim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

// sim is one running stand-in.
type sim struct {
	cfg     Config
	log     *log.Logger
	etcdLog *zap.Logger
	store   backupstore.Store
}

// Run runs the stand-in until ctx ends (a graceful stop) or etcd fails.
// Its own log lines go to out; etcd's logs go to stderr.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	s := &sim{
		cfg: cfg,
		log: log.New(out, fmt.Sprintf("[%s/%s] ", cfg.ClusterName, cfg.Name), log.LUTC|log.Ldate|log.Lmicroseconds|log.Lmsgprefix),
	}
	var err error
	if s.etcdLog, err = etcdLogger(cfg.EtcdLogLevel); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	if s.store, err = backupstore.Open(ctx, cfg.BackupStore, backupstore.Options{}); err != nil {
		return err
	}
	err = s.run(ctx)
	if ctx.Err() != nil {
		s.logf("stopped")
		return nil
	}
	return err
}

func (s *sim) logf(format string, args ...any) { s.log.Printf(format, args...) }

func (s *sim) run(ctx context.Context) error {
	role := "follower"
	if s.cfg.isLeader() {
		role = "leader"
	}
	s.logf("starting member %s of etcd cluster %q as restore %s; peers %s; backup store %s",
		s.cfg.Name, s.cfg.ClusterName, role, s.cfg.initialCluster(), s.store.URL())

	// Like etcd-manager, control/ is read when the process starts, and
	// not again while it serves.
	cmd, err := s.readCommand(ctx)
	if err != nil {
		return err
	}
	if cmd == nil {
		s.logf("no pending command in %s/%s", s.store.URL(), etcdmanager.ControlDir)
		return s.serve(ctx)
	}
	return s.restore(ctx, cmd)
}

// serve runs the member on its client URL until ctx ends or etcd fails.
func (s *sim) serve(ctx context.Context) error {
	e, stop, err := s.startServing(ctx, s.normalToken())
	if err != nil {
		return err
	}
	defer stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-e.Err():
		return fmt.Errorf("etcd failed: %w", err)
	case <-e.Server.StopNotify():
		return errors.New("etcd stopped by itself")
	}
}

// startServing starts the member on ClientURL, and the apiserver if this
// master has one; stop ends both.
func (s *sim) startServing(ctx context.Context, token string) (*member, func(), error) {
	e, err := s.startMember(serving, token)
	if err != nil {
		return nil, nil, err
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if s.cfg.APIServerIP != "" {
			s.runAPIServer(actx)
		}
	}()
	return e, func() {
		cancel()
		<-done
		e.stop()
	}, nil
}

// readCommand lists control/ and returns the oldest restoreBackup command,
// or nil. A store that cannot be read or a command that cannot be parsed is
// retried: etcd-manager does not start etcd until it can read its commands.
func (s *sim) readCommand(ctx context.Context) (*etcdmanager.Command, error) {
	for {
		cmds, err := etcdmanager.ListCommands(ctx, s.store)
		if err == nil {
			for _, c := range cmds {
				if c.RestoreBackup != nil {
					return &c, nil
				}
				s.logf("ignoring command %s: not a restoreBackup command", c.Name)
			}
			return nil, nil
		}
		s.logf("ERROR reading commands (retrying in %s): %v", s.cfg.RetryInterval, err)
		if err := sleep(ctx, s.cfg.RetryInterval); err != nil {
			return nil, err
		}
	}
}

// commandPending reports whether control/<name>/_command.json still exists.
func (s *sim) commandPending(ctx context.Context, name string) (bool, error) {
	_, err := s.store.Stat(ctx, etcdmanager.ControlDir+"/"+name+"/"+etcdmanager.CommandFile)
	if errors.Is(err, backupstore.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// markerFile remembers which command this member already wiped its data
// for, so that a restart in the middle of a restore rejoins the new
// cluster instead of wiping it again.
func (s *sim) markerFile() string { return filepath.Join(s.cfg.DataDir, "restore-command") }

func (s *sim) readMarker() string {
	b, _ := os.ReadFile(s.markerFile())
	return strings.TrimSpace(string(b))
}

func (s *sim) writeMarker(name string) error {
	f, err := os.Create(s.markerFile())
	if err != nil {
		return err
	}
	if _, err := f.WriteString(name + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// etcdLogger sends etcd's own logs to stderr at level, so they neither
// drown the stand-in's story on stdout nor get lost when etcd fails.
func etcdLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--etcd-log-level: %w", err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Encoding = "console"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	cfg.OutputPaths, cfg.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	cfg.Sampling = nil
	cfg.DisableStacktrace = true // one line per problem in the log tail
	return cfg.Build()
}
