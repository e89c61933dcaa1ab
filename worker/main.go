// Command kopsdr-worker runs kopsdr's workflows and activities on task queue
// "kopsdr". With --dev it also runs a Temporal server and Web UI in the same
// process, keeping state in a SQLite file under --data-dir.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/kopsdr/kopsdr/activities"
	"github.com/kopsdr/kopsdr/internal/devserver"
	"github.com/kopsdr/kopsdr/internal/localonly"
	"github.com/kopsdr/kopsdr/internal/metrics"
	"github.com/kopsdr/kopsdr/internal/searchattr"
	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/worker/registry"
	"github.com/kopsdr/kopsdr/workflows"
	"github.com/kopsdr/kopsdr/workflows/api"
)

func main() {
	if err := newCommand().Execute(); err != nil {
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var (
		conn        temporalconn.Options
		dev         bool
		dataDir     string
		devPort     int
		uiPort      int
		logLevel    string
		metricsAddr string
		maxActs     int
		maxBackups  int
	)
	cmd := &cobra.Command{
		Use:   "kopsdr-worker",
		Short: "Run kopsdr's Temporal worker (task queue \"kopsdr\")",
		Long: `Run kopsdr's Temporal worker: etcd backups, schedules and restores for kops clusters.

Without --dev it connects to an existing Temporal (--address, --namespace, mTLS or API key).
With --dev it starts an embedded Temporal server on 127.0.0.1:7233 and the Web UI on
127.0.0.1:8233, keeping state in <data-dir>/temporal.db so work in flight survives a restart.

S3 credentials come from the worker's environment (AWS default chain, or S3_ENDPOINT,
S3_REGION, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY as etcd-manager uses them); they never
travel through Temporal. --dev sets KOPSDR_LOCAL_ONLY=1 unless it is set: S3 stores must then
be on this machine (S3_ENDPOINT on 127.0.0.1) and the instance metadata service is never asked;
KOPSDR_LOCAL_ONLY=0 lifts that.

--metrics-address HOST:PORT serves Prometheus metrics on /metrics: the Temporal SDK's
(temporal_*) and kopsdr's backup, restore and drill metrics (kopsdr_*), labelled by cluster
and etcd; deploy/prometheus/kopsdr-rules.yml holds alerts on them.

Several workers may share one Temporal namespace and task queue: each takes activities as it
has room, and an activity whose worker dies is retried by another once its heartbeat or
start-to-close timeout passes. --max-concurrent-activities bounds how many activities one
worker runs at once (each backup streams one snapshot through gzip; 0 keeps the Temporal SDK's
default, 1000).
--max-concurrent-backups bounds how many of those are snapshot uploads: each
holds about 40 MiB (gzip blocks and S3 part buffers; more on more cores), so when a fleet's
schedules fire at once the rest wait their turn, heartbeating, instead of all streaming at once
and exhausting the worker's memory. It counts uploads only, so long-running activities such as
change capture never wait behind backups, nor backups behind them; 0 removes the bound.

Restore drills restore backups into a throwaway etcd in the temp dir (TMPDIR, default /tmp),
which needs about twice the largest snapshot free.

The workflows set the search attributes KopsCluster, EtcdCluster and BackupName when the
namespace has them: --dev registers them; on a real server register them once (the worker
logs the command when they are missing).`,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var level slog.Level
			if maxActs < 0 {
				return fmt.Errorf("--max-concurrent-activities %d: give 0 (the SDK's default) or more", maxActs)
			}
			if maxBackups < 0 {
				return fmt.Errorf("--max-concurrent-backups %d: give 0 (no bound) or more", maxBackups)
			}
			activities.SetMaxConcurrentBackups(maxBackups)
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: use debug, info, warn or error", logLevel)
			}
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			if dev {
				// Dev mode keeps S3 and EC2 traffic on this machine (no
				// metadata service, no AWS endpoint) unless told otherwise.
				if _, set := os.LookupEnv(localonly.Env); !set {
					_ = os.Setenv(localonly.Env, "1")
				}
				srv, err := devserver.Start(ctx, devserver.Options{DataDir: dataDir, Port: devPort, UIPort: uiPort, Namespace: conn.Namespace})
				if err != nil {
					return err
				}
				defer srv.Stop()
				conn.Address = srv.Frontend
				ui := "Web UI on " + srv.UI
				if srv.UI == "" {
					ui = "Web UI disabled"
				}
				fmt.Printf("kopsdr dev: Temporal on %s (namespace %s), %s, state in %s\n",
					srv.Frontend, conn.Namespace, ui, filepath.Join(dataDir, "temporal.db"))
			}
			var m *metrics.Metrics
			if metricsAddr != "" {
				m = metrics.New()
				conn.MetricsHandler = m.SDKHandler()
				addr, err := m.Serve(ctx, metricsAddr, logger)
				if err != nil {
					return err
				}
				logger.Info("serving metrics", "url", "http://"+addr.String()+"/metrics")
			}
			c, err := conn.Dial(logger)
			if err != nil {
				return err
			}
			defer c.Close()
			workflows.SetSearchAttributesRegistered(searchAttrsUsable(ctx, c, conn.Namespace, logger))
			wo := worker.Options{MaxConcurrentActivityExecutionSize: maxActs}
			if m != nil {
				wo.Interceptors = append(wo.Interceptors, activities.NewMetricsInterceptor(m))
				refresh := &metrics.Refresher{Metrics: m, Targets: m.ScheduleTargets(c.ScheduleClient()), Logger: logger}
				go refresh.Run(ctx)
			}
			if dev {
				wo.Identity = devserver.WorkerIdentity()
			}
			w := worker.New(c, temporalconn.TaskQueue, wo)
			ro := registry.Options{Logger: logger}
			if m != nil {
				ro.DrillMetrics, ro.CaptureMetrics = m, m
			}
			registry.RegisterWith(w, ro)
			if err := w.Start(); err != nil {
				return fmt.Errorf("start worker: %w", err)
			}
			logger.Info("kopsdr worker started", "address", conn.Address, "namespace", conn.Namespace, "taskQueue", temporalconn.TaskQueue)
			if dev {
				go releaseOrphans(ctx, c, conn.Namespace, wo.Identity, logger)
			}
			<-ctx.Done()
			w.Stop()
			return nil
		},
	}
	conn.Bind(cmd.Flags())
	cmd.Flags().BoolVar(&dev, "dev", false, "run an embedded Temporal server and Web UI in this process")
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "with --dev: where the embedded server keeps temporal.db")
	cmd.Flags().IntVar(&devPort, "dev-port", 7233, "with --dev: Temporal frontend port on 127.0.0.1")
	cmd.Flags().IntVar(&uiPort, "ui-port", 8233, "with --dev: Web UI port on 127.0.0.1 (-1 disables the UI)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().IntVar(&maxActs, "max-concurrent-activities", 0, "activities this worker runs at once (0: the Temporal SDK's default, 1000)")
	cmd.Flags().IntVar(&maxBackups, "max-concurrent-backups", activities.DefaultMaxConcurrentBackups,
		"snapshot uploads this worker runs at once, about 40 MiB each; the rest wait, heartbeating (0: no bound)")
	cmd.Flags().StringVar(&metricsAddr, "metrics-address", "", "serve Prometheus metrics on http://HOST:PORT/metrics (e.g. 127.0.0.1:9464; empty: none)")
	return cmd
}

// releaseOrphans hands back, for an immediate retry, the activity attempts
// the previous incarnation of this dev process had started (see
// devserver.ReleaseOrphans). It looks twice: a workflow started just
// before the crash may reach the visibility store a moment late.
func releaseOrphans(ctx context.Context, c client.Client, namespace, self string, logger *slog.Logger) {
	for _, wait := range []time.Duration{0, 5 * time.Second} {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		orphans, err := devserver.ReleaseOrphans(octx, c, namespace, self)
		cancel()
		for _, o := range orphans {
			logger.Info("retrying an activity the previous dev worker was running", "workflowId", o.WorkflowID,
				"activity", o.Activity, "attempt", o.Attempt, "worker", o.Worker)
		}
		if err != nil {
			logger.Warn("looking for activities the previous dev worker was running", "error", err)
		}
	}
}

func defaultDataDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "kopsdr", "dev")
	}
	return ".kopsdr-dev"
}

// searchAttrsUsable says whether the namespace has kopsdr's search
// attributes, which the workflows then set on themselves. The dev server
// registered them; on a real server registering is the operator's call, so
// the worker only looks, and without them runs the workflows without them
// and says how to add them.
func searchAttrsUsable(ctx context.Context, c client.Client, namespace string, logger *slog.Logger) bool {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	missing, err := searchattr.Missing(ctx, c, namespace)
	switch {
	case err != nil:
		logger.Warn("cannot read the namespace's search attributes; runs will not set KopsCluster, EtcdCluster, BackupName", "error", err)
		return false
	case len(missing) > 0:
		logger.Warn("search attributes missing; runs will not set them until they are registered and the worker restarted",
			"missing", missing, "fix", api.SearchAttributeCreateCommand(namespace))
		return false
	}
	return true
}
