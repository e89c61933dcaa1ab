package leases_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/leases"
	"github.com/kopsdr/kopsdr/test/etcdtest"
)

func key(ip string) string { return leases.Prefix + ip }

// restored writes keys as an etcd-manager restore leaves them: plain puts,
// no lease.
func restored(t *testing.T, cli *clientv3.Client, ips ...string) {
	t.Helper()
	for _, ip := range ips {
		if _, err := cli.Put(context.Background(), key(ip), `{"kind":"Endpoints","subsets":[{"addresses":[{"ip":"`+ip+`"}]}]}`); err != nil {
			t.Fatal(err)
		}
	}
}

// apiserver simulates a live kube-apiserver's lease reconciler: it keeps
// re-writing its key under a fresh 15 s lease, faster than the real 10 s
// so tests stay short, until the test ends.
func apiserver(t *testing.T, cli *clientv3.Client, ip string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if l, err := cli.Grant(ctx, 15); err == nil {
				_, _ = cli.Put(ctx, key(ip), "apiserver "+ip, clientv3.WithLease(l.ID))
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestCleanupAfterRestore is the runbook's scenario: the restore brought
// back the keys of three old masters; one master kept its IP, two are new.
func TestCleanupAfterRestore(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	ctx := ctxT(t, 60*time.Second)
	restored(t, cli, "10.0.1.10", "10.0.2.10", "10.0.3.10")
	// Someone else's key under the prefix that is no IP stays untouched.
	if _, err := cli.Put(ctx, key("not-an-ip"), "x"); err != nil {
		t.Fatal(err)
	}
	live := []string{"10.0.1.10", "10.0.2.20", "10.0.3.20"}

	keys, err := leases.List(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 4 || keys[0].IP != "10.0.1.10" || keys[0].Lease != 0 || keys[0].ModRevision == 0 {
		t.Fatalf("List = %+v", keys)
	}
	plan, err := leases.Decide(keys, live)
	if err != nil {
		t.Fatal(err)
	}
	wantDelete := []string{key("10.0.2.10"), key("10.0.3.10")}
	wantKeep := []string{key("10.0.1.10"), key("not-an-ip")}
	if !slices.Equal(plan.Delete, wantDelete) || !slices.Equal(plan.Keep, wantKeep) {
		t.Fatalf("plan delete %v keep %v; want %v and %v", plan.Delete, plan.Keep, wantDelete, wantKeep)
	}

	deleted, err := leases.Apply(ctx, cli, plan)
	if err != nil || !slices.Equal(deleted, wantDelete) {
		t.Fatalf("Apply = %v, %v", deleted, err)
	}
	// A retry after a lost answer finds them gone and reports the same.
	deleted, err = leases.Apply(ctx, cli, plan)
	if err != nil || !slices.Equal(deleted, wantDelete) {
		t.Fatalf("second Apply = %v, %v", deleted, err)
	}
	after, _ := leases.List(ctx, cli)
	if got := ipsOf(after); !slices.Equal(got, []string{"10.0.1.10", "not-an-ip"}) {
		t.Fatalf("keys after Apply: %v", got)
	}

	// The live apiservers come up and renew; then exactly the live IPs have
	// leased keys.
	for _, ip := range live {
		apiserver(t, cli, ip)
	}
	if err := leases.WaitRenewed(ctxT(t, 30*time.Second), cli, live, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	final, _ := leases.List(ctx, cli)
	for _, k := range final {
		if k.IP != "not-an-ip" && (!slices.Contains(live, k.IP) || k.Lease == 0) {
			t.Errorf("after renewal: %+v", k)
		}
	}
}

func TestDecideNeverDeletesTheLastKey(t *testing.T) {
	keys := []leases.Key{{Key: key("10.0.1.10"), IP: "10.0.1.10"}, {Key: key("10.0.2.10"), IP: "10.0.2.10"}}
	_, err := leases.Decide(keys, []string{"10.0.9.9"})
	if !errors.Is(err, leases.ErrNoLiveKey) || !strings.Contains(err.Error(), "10.0.1.10, 10.0.2.10") || !strings.Contains(err.Error(), "live masters 10.0.9.9") {
		t.Fatalf("err = %v; want ErrNoLiveKey naming keys and live masters", err)
	}
	t.Log(err)
	if _, err := leases.Decide(keys[:1], []string{"10.0.9.9"}); !errors.Is(err, leases.ErrNoLiveKey) {
		t.Fatalf("single stale key: err = %v; want ErrNoLiveKey", err)
	}
	// Nothing to delete is not a refusal.
	if p, err := leases.Decide(nil, []string{"10.0.9.9"}); err != nil || len(p.Delete) != 0 {
		t.Fatalf("no keys: %+v, %v", p, err)
	}
}

func TestDecideBadInput(t *testing.T) {
	keys := []leases.Key{{Key: key("10.0.1.10"), IP: "10.0.1.10"}}
	for _, live := range [][]string{nil, {"10.0.1.10", "master-a"}} {
		_, err := leases.Decide(keys, live)
		if ie, ok := inputerr.As(err); !ok || ie.Field != "masters" {
			t.Errorf("Decide(live=%q) err = %v; want *inputerr.Error on masters", live, err)
		}
	}
	if err := leases.WaitRenewed(context.Background(), nil, nil, 0); err == nil {
		t.Error("WaitRenewed with no masters succeeded")
	} else if ie, ok := inputerr.As(err); !ok || ie.Field != "masters" {
		t.Errorf("WaitRenewed err = %v", err)
	}
}

func TestDecideMatchesIPv6Spellings(t *testing.T) {
	keys := []leases.Key{{Key: key("fd00::a"), IP: "fd00::a"}, {Key: key("fd00::b"), IP: "fd00::b"}}
	p, err := leases.Decide(keys, []string{"fd00:0:0:0:0:0:0:a"})
	if err != nil || !slices.Equal(p.Keep, []string{key("fd00::a")}) || !slices.Equal(p.Delete, []string{key("fd00::b")}) {
		t.Fatalf("Decide = %+v, %v", p, err)
	}
}

func TestApplyLeavesKeyRewrittenSinceListed(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	ctx := ctxT(t, 30*time.Second)
	restored(t, cli, "10.0.1.10", "10.0.2.10", "10.0.3.10")
	keys, err := leases.List(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := leases.Decide(keys, []string{"10.0.1.10"})
	if err != nil {
		t.Fatal(err)
	}
	// A new master got 10.0.3.10 and wrote its key after the listing.
	l, err := cli.Grant(ctx, 15)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, key("10.0.3.10"), "new master", clientv3.WithLease(l.ID)); err != nil {
		t.Fatal(err)
	}
	deleted, err := leases.Apply(ctx, cli, plan)
	if !slices.Equal(deleted, []string{key("10.0.2.10")}) || err == nil || !strings.Contains(err.Error(), key("10.0.3.10")) {
		t.Fatalf("Apply = %v, %v; want 10.0.2.10 deleted and an error naming 10.0.3.10", deleted, err)
	}
	if resp, _ := cli.Get(ctx, key("10.0.3.10")); len(resp.Kvs) != 1 || resp.Kvs[0].Lease != int64(l.ID) {
		t.Fatal("the rewritten key was deleted")
	}
}

func TestWaitRenewedReportsWhatIsWrong(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	restored(t, cli, "10.0.1.10", "10.0.9.9") // live but not renewed; extra
	apiserver(t, cli, "10.0.3.10")            // live and renewing

	err := leases.WaitRenewed(ctxT(t, time.Second), cli, []string{"10.0.1.10", "10.0.2.10", "10.0.3.10"}, 50*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v; want a deadline", err)
	}
	t.Log(err)
	msg := err.Error()
	for _, want := range []string{"missing 10.0.2.10", "not renewed (no lease) 10.0.1.10", "extra 10.0.9.9", "live masters 10.0.1.10, 10.0.2.10, 10.0.3.10"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}
	if _, findings, _ := strings.Cut(msg, "): "); strings.Contains(findings, "10.0.3.10") {
		t.Errorf("renewing master reported: %s", msg)
	}
}

func ipsOf(keys []leases.Key) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.IP
	}
	return out
}
