package drill

import (
	"context"
	"maps"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kopsdr/kopsdr/internal/scratchetcd"
)

// requiredKeys are objects no Kubernetes control plane starts well
// without: the two namespaces it creates first, and the service IP
// allocation (losing it makes the API server hand out ClusterIPs that are
// already taken).
var requiredKeys = []string{
	"/registry/namespaces/default",
	"/registry/namespaces/kube-system",
	"/registry/ranges/serviceips",
}

// masterLeases holds one key per API server; a backup of etcd main without
// any was not taken from a working cluster.
const masterLeases = "/registry/masterleases/"

// Paging of the full read: pages aim at pageTarget bytes, so memory stays
// bounded however big the values are. The first page is small because
// nothing is known about value sizes yet (etcd caps one at 1.5 MiB).
const (
	firstPage  = 64
	maxPage    = 1000
	pageTarget = 4 << 20
)

// check reads the whole keyspace back from the scratch etcd, at one
// revision, and records what it finds and what is missing in res.
func check(ctx context.Context, srv *scratchetcd.Server, opts Options, res *Result) error {
	// The revision, first: restored keys attached to leases (master leases
	// are, with a 15 s TTL) expire soon after etcd starts, and reading at the
	// restored revision still sees them as the backup held them.
	st, err := srv.Client.Status(ctx, srv.Client.Endpoints()[0])
	if err != nil {
		return readFailure(ctx, res, "status: %v", err)
	}
	rev := st.Header.Revision
	res.Revision, res.EtcdVersion, res.StorageVersion = rev, st.Version, st.StorageVersion
	if v := srv.Etcd.Server.ClusterVersion(); v != nil {
		res.ClusterVersion = v.String()
	}

	seen := map[string]bool{}
	from, limit := "\x00", int64(firstPage)
	for {
		resp, err := srv.Client.Get(ctx, from, clientv3.WithFromKey(), clientv3.WithLimit(limit), clientv3.WithRev(rev))
		if err != nil {
			return readFailure(ctx, res, "reading keys from %q at revision %d: %v", from, rev, err)
		}
		var pageBytes int64
		for _, kv := range resp.Kvs {
			n := int64(len(kv.Key) + len(kv.Value))
			res.Counts.add(kv.Key, n)
			pageBytes += n
			if slices.Contains(requiredKeys, string(kv.Key)) {
				seen[string(kv.Key)] = true
			}
		}
		opts.Progress("check", res.Counts.Bytes)
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		limit = nextPage(len(resp.Kvs), pageBytes)
	}

	if !opts.Events {
		for _, k := range requiredKeys {
			if !seen[k] {
				res.fail("required", "missing %s", k)
			}
		}
		if res.Counts.ByPrefix[masterLeases] == 0 {
			res.fail("required", "no master lease under %s", masterLeases)
		}
	}
	compareRecorded(res, opts.Expected)
	return nil
}

// nextPage sizes the next page from the average key+value size so far.
func nextPage(keys int, bytes int64) int64 {
	avg := max(bytes/int64(keys), 1)
	return min(max(pageTarget/avg, 1), maxPage)
}

// readFailure records a failed read of the restored data; a cancelled
// drill is an error instead, not the backup's fault.
func readFailure(ctx context.Context, res *Result, format string, args ...any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	res.fail("read", format, args...)
	return nil
}

func sortedUnion(a, b map[string]int64) []string {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// compareRecorded checks the restored counts against those recorded at
// the snapshot's revision. A revision outside the recording means the data
// is not the snapshot the backup took.
func compareRecorded(res *Result, rec *Recorded) {
	if rec == nil {
		return
	}
	res.CountsCompared = true
	want, ok := rec.At(res.Revision)
	if !ok {
		res.fail("count", "the restored data is at revision %d; the backup recorded revisions %d to %d", res.Revision, rec.Revision, rec.UpTo)
		return
	}
	for _, d := range compare(res.Counts, want) {
		res.fail("count", "%s", d)
	}
}
