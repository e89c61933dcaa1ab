// Command etcdmanager-sim is a stand-in for etcd-manager for kopsdr's
// tests: see package etcdmanagersim. It runs as the entrypoint of a
// FROM-scratch image, one container per master and etcd cluster.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kopsdr/kopsdr/test/etcdmanagersim"
)

func main() {
	cfg, err := etcdmanagersim.ParseFlags(os.Args[1:], os.Stderr)
	if err == flag.ErrHelp {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdmanager-sim:", err)
		os.Exit(2)
	}
	// docker stop sends SIGTERM: stop etcd cleanly. docker kill sends
	// SIGKILL, which nothing can catch: that is the crash case.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := etcdmanagersim.Run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "etcdmanager-sim:", err)
		os.Exit(1)
	}
}
