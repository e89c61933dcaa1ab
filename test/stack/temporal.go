// Package stack is kopsdr's test stack: a real Temporal server in process
// and kopsdr's own binaries built once per test run. The machine's Docker
// engine and the skip-or-fail rule are in test/testenv, etcd and S3 in
// test/etcdtest and test/s3test, EC2 in test/fakeec2.
package stack

import (
	"context"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/server/temporaltest"

	"github.com/kopsdr/kopsdr/internal/searchattr"
	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/worker/registry"
	"github.com/kopsdr/kopsdr/workflows"
)

// Temporal is a running in-process Temporal server.
type Temporal struct {
	Server    *temporaltest.TestServer
	Client    client.Client
	Namespace string
	Address   string
}

// StartTemporal starts a real Temporal server (SQLite in memory) for this
// test, with kopsdr's search attributes registered as an operator of a real
// server would have them.
func StartTemporal(t testing.TB) *Temporal {
	t.Helper()
	tt, ok := t.(*testing.T)
	var opts []temporaltest.TestServerOption
	if ok {
		opts = append(opts, temporaltest.WithT(tt))
	}
	ts := temporaltest.NewServer(opts...)
	if !ok {
		t.Cleanup(ts.Stop)
	}
	tp := &Temporal{Server: ts, Client: ts.GetDefaultClient(), Namespace: ts.GetDefaultNamespace(), Address: ts.GetFrontendHostPort()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := searchattr.Ensure(ctx, tp.Client, tp.Namespace); err != nil {
		t.Fatalf("register kopsdr's search attributes in the test server: %v", err)
	}
	return tp
}

// StartWorker runs kopsdr's real registry in this process on task queue
// "kopsdr", stopped at the end of the test.
func (tp *Temporal) StartWorker(t testing.TB) worker.Worker {
	t.Helper()
	w := worker.New(tp.Client, temporalconn.TaskQueue, worker.Options{})
	workflows.SetSearchAttributesRegistered(true) // StartTemporal registered them
	registry.Register(w)
	if err := w.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(w.Stop)
	return w
}

// ConnFlags are the flags that point kopsdr's binaries at this server.
func (tp *Temporal) ConnFlags() []string {
	return []string{"--address", tp.Address, "--namespace", tp.Namespace}
}
