// Command devmasters starts three stand-in kops masters in Docker on this
// machine (test/masters: per master an etcd-manager stand-in for etcd main
// and one for events, in FROM-scratch containers, and a kubelet stand-in
// that restarts killed containers), seeds them, and prints the kopsdr
// commands that back them up and restore them, so a newcomer can run a
// restore end to end against the worker of `make dev`:
//
//	go run ./test/devmasters [--dir .kopsdr-dev/masters] [--address 127.0.0.1:7233]
//
// Everything it prints is on this machine: etcd on 127.0.0.1 ports, the
// local Docker engine, file:// stores. Once both clusters have a backup it
// changes a few keys, so the restore has something to undo, and it says
// when the restored data is served. Ctrl-C (or SIGTERM) removes the
// containers and the folder it made under --dir.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/test/masters"
)

// Keys the walk-through changes after the backup and the restore brings back.
const (
	changedKey = "/registry/configmaps/default/cm-000" // changed after the backup
	deletedKey = "/registry/configmaps/default/cm-001" // deleted after the backup
	addedKey   = "/registry/configmaps/default/after-backup"
	addedEvent = "/registry/events/default/after-backup"
)

func main() {
	dir := flag.String("dir", ".kopsdr-dev/masters", "folder for the certificates, state store and etcd data (a new sub-folder per run, removed at exit)")
	address := flag.String("address", "", "Temporal frontend host:port to put in the printed kopsdr commands (default: the CLI's, 127.0.0.1:7233)")
	flag.Parse()

	abs, err := filepath.Abs(*dir)
	if err == nil {
		err = os.MkdirAll(abs, 0o700)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "devmasters: --dir %s: %v\n", *dir, err)
		os.Exit(2)
	}
	r := &runner{dir: abs}

	// Ctrl-C or SIGTERM, at any time: remove what was made so far. A second
	// signal while that runs exits at once.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "devmasters: removing the containers (Ctrl-C again to leave them)")
		go func() {
			<-sigs
			fmt.Fprintln(os.Stderr, "devmasters: left behind; remove them with: docker rm -f $(docker ps -aq --filter label=kopsdr.test/masters)")
			os.Exit(130)
		}()
		r.exit(130)
	}()

	fmt.Fprintln(os.Stderr, "devmasters: building the etcd-manager stand-in and starting 3 masters in Docker...")
	start := time.Now()
	c := masters.Start(r, masters.Options{WithAPIServer: true})
	seed(r, c)
	fmt.Fprintf(os.Stderr, "devmasters: up in %s\n\n", time.Since(start).Round(time.Second))
	printCommands(c, *address)

	watch(r, c)
	select {} // until a signal
}

// seed puts Kubernetes-like objects into main and events, and the master
// leases of three masters replaced since (with an hour's lease, so the
// backup holds them and the restore's lease clean-up has work).
func seed(r *runner, c *masters.Cluster) {
	mainKVs, eventsKVs := map[string]string{}, map[string]string{}
	for i := range 50 {
		mainKVs[fmt.Sprintf("/registry/configmaps/default/cm-%03d", i)] = fmt.Sprintf(`{"data":{"n":"%d"}}`, i)
	}
	for i := range 20 {
		eventsKVs[fmt.Sprintf("/registry/events/default/ev-%03d", i)] = fmt.Sprintf(`{"reason":"r%d"}`, i)
	}
	c.Seed(r, masters.Main, mainKVs)
	c.Seed(r, masters.Events, eventsKVs)
	c.SeedMasterLeases(r, time.Hour, masters.OldMasterIPs...)
}

func printCommands(c *masters.Cluster, address string) {
	kopsdr := "bin/kopsdr"
	if address != "" {
		kopsdr += " --address " + address
	}
	state := "file://" + c.StoreDir
	tls := fmt.Sprintf("--cacert %s --cert %s --key %s", q(c.CACert), q(c.ClientCert), q(c.ClientKey))
	mainEPs, eventsEPs := strings.Join(c.MainEndpoints, ","), strings.Join(c.EventsEndpoints, ",")
	var mastersFlags []string
	for _, m := range c.Masters {
		mastersFlags = append(mastersFlags, fmt.Sprintf("--master name=%s,docker=%s,ip=%s", m.Node, c.DockerHost, m.IP))
	}
	restore := fmt.Sprintf("%s restore etcd-manager --cluster %s --state-store %s \\\n  --main-endpoints %s \\\n  --events-endpoints %s \\\n  %s \\\n  %s",
		kopsdr, c.Name, q(state), mainEPs, eventsEPs, tls, strings.Join(mastersFlags, " \\\n  "))

	fmt.Printf(`cluster       %s
state store   %s
backup stores main %s
              events %s
etcd main     %s
etcd events   %s
TLS files     %s
Docker        %s
masters      `, c.Name, state, c.MainStore, c.EventsStore, mainEPs, eventsEPs, tls, c.DockerHost)
	for _, m := range c.Masters {
		fmt.Printf(" %s (ip %s)", m.Node, m.IP)
	}
	fmt.Printf(`

# The worker of 'make dev' must be running. 1. Back up main and events:
%[1]s backup --cluster %[2]s --etcd main --endpoints %[3]s \
  %[4]s --state-store %[5]s --wait
%[1]s backup --cluster %[2]s --etcd events --endpoints %[6]s \
  %[4]s --state-store %[5]s --wait
# (or a schedule: %[1]s schedule create --cluster %[2]s --state-store %[5]s --main-endpoints %[3]s --events-endpoints %[6]s %[4]s --every 1h)

# 2. devmasters then changes a few keys. Plan a restore of the latest backups (changes nothing):
%[7]s \
  --dry-run --wait

# 3. Restore, approve, follow:
%[7]s
%[1]s approve restore/%[2]s
%[1]s status restore/%[2]s --follow

# Ctrl-C here removes the masters.
`, kopsdr, c.Name, mainEPs, tls, q(state), eventsEPs, restore)
}

// watch waits in the background for a backup of both clusters, then
// changes main and events for the restore to undo, and says when the
// restored data is served again.
func watch(r *runner, c *masters.Cluster) {
	ctx, cancel := context.WithCancel(context.Background())
	r.Cleanup(cancel)
	stores := map[string]backupstore.Store{masters.Main: c.Store(r, masters.Main), masters.Events: c.Store(r, masters.Events)}
	mainCli, eventsCli := c.Client(r, masters.Main), c.Client(r, masters.Events)
	go func() {
		backups := map[string]string{}
		for len(backups) < 2 {
			for ec, s := range stores {
				if names, err := etcdmanager.ListBackups(ctx, s); err == nil && len(names) > 0 {
					backups[ec] = names[len(names)-1]
				}
			}
			if !sleep(ctx, time.Second) {
				return
			}
		}
		for {
			err := change(ctx, mainCli, eventsCli)
			if err == nil {
				break
			}
			fmt.Fprintf(os.Stderr, "devmasters: change after the backup: %v (retrying)\n", err)
			if !sleep(ctx, 2*time.Second) {
				return
			}
		}
		fmt.Fprintf(os.Stderr, "devmasters: backups %s (main) and %s (events) seen; changed after them: %s, deleted %s, added %s and %s. A restore brings the backups' data back.\n",
			backups[masters.Main], backups[masters.Events], changedKey, deletedKey, addedKey, addedEvent)
		for {
			if !sleep(ctx, time.Second) {
				return
			}
			if restored(ctx, mainCli, eventsCli) {
				fmt.Fprintf(os.Stderr, "devmasters: %s serves the backup's data again (%s is back, %s and %s are gone)\n", c.Name, deletedKey, addedKey, addedEvent)
				break
			}
		}
		// The restore brings back the leases of the replaced masters
		// without a lease; kopsdr's clean-up deletes them.
		for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); {
			if oldLeasesGone(ctx, mainCli) {
				fmt.Fprintf(os.Stderr, "devmasters: the master leases of the replaced masters %s are gone\n", strings.Join(masters.OldMasterIPs, ", "))
				return
			}
			if !sleep(ctx, time.Second) {
				return
			}
		}
	}()
}

// oldLeasesGone: main has no master lease key of masters.OldMasterIPs.
func oldLeasesGone(ctx context.Context, cli *clientv3.Client) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for _, ip := range masters.OldMasterIPs {
		resp, err := cli.Get(ctx, masters.MasterLeaseKey(ip), clientv3.WithCountOnly())
		if err != nil || resp.Count != 0 {
			return false
		}
	}
	return true
}

func change(ctx context.Context, mainCli, eventsCli *clientv3.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := mainCli.Put(ctx, changedKey, "changed after the backup"); err != nil {
		return err
	}
	if _, err := mainCli.Delete(ctx, deletedKey); err != nil {
		return err
	}
	if _, err := mainCli.Put(ctx, addedKey, "x"); err != nil {
		return err
	}
	_, err := eventsCli.Put(ctx, addedEvent, "x")
	return err
}

// restored: main has deletedKey and not addedKey, events not addedEvent.
func restored(ctx context.Context, mainCli, eventsCli *clientv3.Client) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	count := func(cli *clientv3.Client, key string) int64 {
		resp, err := cli.Get(ctx, key, clientv3.WithCountOnly())
		if err != nil {
			return -1
		}
		return resp.Count
	}
	return count(mainCli, deletedKey) == 1 && count(mainCli, addedKey) == 0 && count(eventsCli, addedEvent) == 0
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// q quotes s for a POSIX shell when it needs it.
func q(s string) string {
	if strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-:=,+@", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
