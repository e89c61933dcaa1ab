// Package devserver runs a complete Temporal server and its Web UI inside the
// kopsdr worker process, for `kopsdr-worker --dev`.
//
// State lives in a SQLite FILE (not memory) so that a restore in flight
// survives killing and restarting the worker: that is the whole point of
// running kopsdr on Temporal, and the dev mode must not hide it.
package devserver

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/log"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/searchattr"
)

// Options says where the embedded server listens and keeps its state.
type Options struct {
	DataDir   string // holds temporal.db; created if missing
	IP        string // frontend and UI bind address, default 127.0.0.1
	Port      int    // frontend gRPC port, default 7233
	UIPort    int    // Web UI port, default 8233; negative disables the UI
	Namespace string // pre-registered namespace, default "default"
	Logger    log.Logger
}

// Server is a running embedded Temporal server (and UI).
type Server struct {
	temporal temporal.Server
	ui       *uiserver.Server
	unlock   func()
	Frontend string // host:port of the gRPC frontend
	UI       string // http://host:port of the Web UI, "" when disabled
}

func (o *Options) defaults() {
	if o.IP == "" {
		o.IP = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = 7233
	}
	if o.UIPort == 0 {
		o.UIPort = 8233
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.Logger == nil {
		o.Logger = log.NewNoopLogger()
	}
}

// Start creates the schema on first use, registers the namespace and starts
// the server. It returns once the frontend accepts connections.
func Start(ctx context.Context, o Options) (*Server, error) {
	o.defaults()
	// The embedded frontend does not report a port it cannot bind: its gRPC
	// server is handed a nil listener and the process dies with a nil
	// pointer. So both ports are tried first.
	if err := checkPortFree(o.IP, o.Port, "dev-port"); err != nil {
		return nil, err
	}
	if o.UIPort > 0 {
		if err := checkPortFree(o.IP, o.UIPort, "ui-port"); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("dev server data dir: %w", err)
	}
	unlock, err := lockDataDir(o.DataDir)
	if err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			unlock()
		}
	}()
	sqlConf := &config.SQL{
		PluginName:        sqliteplugin.PluginName,
		DatabaseName:      filepath.Join(o.DataDir, "temporal.db"),
		ConnectAttributes: map[string]string{"mode": "rwc", "_journal_mode": "wal", "_synchronous": "2"},
	}
	if _, err := os.Stat(sqlConf.DatabaseName); os.IsNotExist(err) {
		if err := sqliteschema.SetupSchema(sqlConf); err != nil {
			return nil, fmt.Errorf("dev server schema: %w", err)
		}
	}
	// A new namespace gets kopsdr's search attributes with it, usable from
	// the first second; one created by an older kopsdr gets them from
	// registerSearchAttributes below.
	ns, err := sqliteschema.NewNamespaceConfig("active", o.Namespace, false, searchattr.Types())
	if err != nil {
		return nil, err
	}
	// CreateNamespaces skips namespaces that already exist, so a restart keeps them.
	if err := sqliteschema.CreateNamespaces(sqlConf, ns); err != nil {
		return nil, fmt.Errorf("dev server namespace: %w", err)
	}

	if err := forgetPreviousMembers(sqlConf.DatabaseName); err != nil {
		return nil, err
	}

	conf, err := serverConfig(o, sqlConf)
	if err != nil {
		return nil, err
	}
	authorizer, err := authorization.GetAuthorizerFromConfig(&conf.Global.Authorization)
	if err != nil {
		return nil, err
	}
	claimMapper, err := authorization.GetClaimMapperFromConfig(&conf.Global.Authorization, o.Logger)
	if err != nil {
		return nil, err
	}
	ts, err := temporal.NewServer(
		temporal.WithConfig(conf),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithLogger(o.Logger),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper }),
	)
	if err != nil {
		return nil, fmt.Errorf("dev server: %w", err)
	}
	if err := ts.Start(); err != nil {
		return nil, fmt.Errorf("dev server start: %w", err)
	}
	s := &Server{temporal: ts, unlock: unlock, Frontend: net.JoinHostPort(o.IP, strconv.Itoa(o.Port))}
	if err := waitListening(ctx, s.Frontend); err != nil {
		_ = ts.Stop()
		return nil, err
	}
	registerSearchAttributes(ctx, s.Frontend, o)
	if o.UIPort > 0 {
		s.ui = uiserver.NewServer(uioptions.WithConfigProvider(&uiconfig.Config{
			Host:                o.IP,
			Port:                o.UIPort,
			TemporalGRPCAddress: s.Frontend,
			EnableUI:            true,
			DefaultNamespace:    o.Namespace,
			CORS:                uiconfig.CORS{CookieInsecure: true},
			HideLogs:            true,
		}))
		uiErr := make(chan error, 1)
		go func() { uiErr <- s.ui.Start() }()
		s.UI = "http://" + net.JoinHostPort(o.IP, strconv.Itoa(o.UIPort))
		select {
		case err := <-uiErr:
			// The UI failing to bind must not take the server down with it.
			o.Logger.Warn("Temporal Web UI did not start: " + err.Error())
			s.ui, s.UI = nil, ""
		case <-time.After(200 * time.Millisecond):
		}
	}
	started = true
	return s, nil
}

// Stop shuts the UI and the server down.
func (s *Server) Stop() {
	if s.ui != nil {
		s.ui.Stop()
	}
	_ = s.temporal.Stop()
	s.unlock()
}

func serverConfig(o Options, sqlConf *config.SQL) (*config.Config, error) {
	var conf config.Config
	conf.Global.Membership = config.Membership{MaxJoinDuration: 30 * time.Second, BroadcastAddress: "127.0.0.1"}
	conf.Persistence = config.Persistence{
		DefaultStore:     "sqlite",
		VisibilityStore:  "sqlite",
		NumHistoryShards: 1,
		DataStores:       map[string]config.DataStore{"sqlite": {SQL: sqlConf}},
	}
	conf.ClusterMetadata = &cluster.Config{
		FailoverVersionIncrement: 10,
		MasterClusterName:        "active",
		CurrentClusterName:       "active",
		ClusterInformation: map[string]cluster.ClusterInformation{
			"active": {Enabled: true, InitialFailoverVersion: 1, RPCAddress: net.JoinHostPort("127.0.0.1", strconv.Itoa(o.Port))},
		},
	}
	conf.DCRedirectionPolicy.Policy = "noop"
	conf.Services = map[string]config.Service{}
	for _, name := range []string{"frontend", "history", "matching", "worker"} {
		svc := config.Service{}
		if name == "frontend" {
			svc.RPC.GRPCPort = o.Port
			svc.RPC.BindOnIP = o.IP
		} else {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			svc.RPC.GRPCPort = p
			svc.RPC.BindOnLocalHost = true
		}
		mp, err := freePort()
		if err != nil {
			return nil, err
		}
		svc.RPC.MembershipPort = mp
		conf.Services[name] = svc
	}
	conf.Archival.History.State = "disabled"
	conf.Archival.Visibility.State = "disabled"
	conf.NamespaceDefaults.Archival.History.State = "disabled"
	conf.NamespaceDefaults.Archival.Visibility.State = "disabled"
	conf.PublicClient.HostPort = net.JoinHostPort("127.0.0.1", strconv.Itoa(o.Port))
	return &conf, nil
}

// forgetPreviousMembers empties the cluster_membership table before the
// server starts. Each service of the previous incarnation of this process
// left a row there, with a random port and a heartbeat at most seconds old
// if the process died. The new services take every row heartbeated in the
// last 20 s as a ringpop seed, try to join those dead ports until the 30 s
// join limit, and retry 10 s later: for about 50 s after a crash the server
// answered "Not enough hosts to serve the request" and nothing, not even a
// status query, got through. No other process can be a member: the data
// directory is this process's alone, and its server died with it.
func forgetPreviousMembers(dbPath string) error {
	// The driver is modernc.org/sqlite, registered as "sqlite" by the
	// Temporal SQLite plugin imported above.
	db, err := sql.Open("sqlite", "file:"+dbPath)
	if err != nil {
		return fmt.Errorf("dev server membership: %w", err)
	}
	defer db.Close()
	if _, err := db.Exec("DELETE FROM cluster_membership"); err != nil {
		return fmt.Errorf("dev server membership: clearing the previous run's members in %s: %w", dbPath, err)
	}
	return nil
}

// checkPortFree refuses a port something else listens on, naming the flag
// of kopsdr-worker --dev that chooses another.
func checkPortFree(ip string, port int, flag string) error {
	if port <= 0 || port > 65535 {
		return inputerr.New(flag, strconv.Itoa(port), "use a port between 1 and 65535")
	}
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return inputerr.Wrap(err, flag, strconv.Itoa(port), fmt.Sprintf(
			"port %d on %s is taken (another kopsdr-worker --dev or Temporal server?): stop it or choose another port with --%s", port, ip, flag))
	}
	return l.Close()
}

// freePort asks the kernel for a free loopback port for the internal
// services; only the frontend and the UI have fixed, documented ports.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitListening(ctx context.Context, addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dev server frontend %s did not come up: %w", addr, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// registerSearchAttributes makes sure the namespace has kopsdr's search
// attributes, so runs can be filtered by cluster in the Web UI and with
// `kopsdr runs`. Failing that is a warning, not a reason to refuse to
// start: backups and restores work without them, and the worker says again
// what is missing when it starts.
func registerSearchAttributes(ctx context.Context, frontend string, o Options) {
	c, err := client.Dial(client.Options{HostPort: frontend, Namespace: o.Namespace,
		Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err == nil {
		defer c.Close()
		_, err = searchattr.Ensure(ctx, c, o.Namespace)
	}
	if err != nil {
		o.Logger.Warn("dev server: kopsdr's search attributes are not registered: " + err.Error())
	}
}
