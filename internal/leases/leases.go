// Package leases does the clean-up the kops runbook asks for after an
// etcd-manager restore: each kube-apiserver keeps /registry/masterleases/<its
// IP> alive with a 15 s etcd lease, and endpoints/kubernetes lists the IPs
// found there. The restore copies every key WITHOUT its lease, so the keys
// of masters that are gone never expire and clients are sent to dead
// apiservers. The fix is to delete the keys of IPs that are not live
// masters; live apiservers re-create their own within about 10 s.
package leases

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kopsdr/kopsdr/internal/inputerr"
)

// Prefix is where kube-apiservers keep their master leases.
const Prefix = "/registry/masterleases/"

// Key is one master lease key.
type Key struct {
	Key         string
	IP          string // the key's last part, as the apiserver wrote it
	Lease       int64  // etcd lease id; 0 = none (as every key is right after a restore)
	ModRevision int64  // lets Apply notice a key rewritten since it was listed
}

// Plan is what Apply will do: Delete and Keep are keys, Live the live
// masters' IPs as Decide understood them.
type Plan struct {
	Keys   []Key
	Live   []string
	Delete []string
	Keep   []string
}

// ErrNoLiveKey means no master lease key belongs to a live master, so
// Decide cannot tell stale keys from good ones. Right after a restore onto
// new masters this is expected: wait for the live apiservers to write
// their keys (WaitRenewed) and decide again. If it persists, the list of
// live masters is probably wrong.
var ErrNoLiveKey = errors.New("no master lease key belongs to a live master")

// List returns the master lease keys, sorted by key. It reads the values
// too (a few small Endpoints objects) because a keys-only range on etcd
// 3.6+ answers from the index, which does not know a key's lease.
func List(ctx context.Context, cli *clientv3.Client) ([]Key, error) {
	resp, err := cli.Get(ctx, Prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", Prefix, err)
	}
	keys := make([]Key, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		keys = append(keys, Key{Key: k, IP: strings.TrimPrefix(k, Prefix), Lease: kv.Lease, ModRevision: kv.ModRevision})
	}
	return keys, nil
}

// Decide plans the clean-up: delete every key whose IP is not a live
// master's, keep the live ones. It never deletes the last key: if no key is
// live it refuses (ErrNoLiveKey) rather than guess, because an empty
// endpoints/kubernetes breaks every in-cluster client until an apiserver
// writes its key again. Keys whose last part is not an IP are not the
// apiserver's and are kept. live must name at least one master
// (*inputerr.Error "masters" otherwise).
func Decide(keys []Key, live []string) (Plan, error) {
	liveSet, err := normalizeLive(live)
	if err != nil {
		return Plan{}, err
	}
	p := Plan{Keys: keys, Live: sortedKeys(liveSet)}
	anyLive := false
	for _, k := range keys {
		ip, ok := normalizeIP(k.IP)
		switch {
		case !ok:
			p.Keep = append(p.Keep, k.Key)
		case liveSet[ip]:
			p.Keep = append(p.Keep, k.Key)
			anyLive = true
		default:
			p.Delete = append(p.Delete, k.Key)
		}
	}
	if len(p.Delete) > 0 && !anyLive {
		return Plan{}, fmt.Errorf("%w: keys for %s, live masters %s; refusing to delete them all (wait for the live apiservers to write their keys, or check the masters list)",
			ErrNoLiveKey, ipsOf(keys), strings.Join(p.Live, ", "))
	}
	return p, nil
}

func normalizeLive(live []string) (map[string]bool, error) {
	fix := "list the private IPs of the masters that are running now, e.g. [\"10.0.1.10\", \"10.0.2.10\", \"10.0.3.10\"]"
	if len(live) == 0 {
		return nil, inputerr.New("masters", "", fix)
	}
	set := map[string]bool{}
	for _, s := range live {
		ip, ok := normalizeIP(s)
		if !ok {
			return nil, inputerr.New("masters", s, "not an IP address: "+fix)
		}
		set[ip] = true
	}
	return set, nil
}

// normalizeIP writes an IP the way the apiserver does (net.IP.String), so
// that e.g. an IPv6 address given in another spelling still matches.
func normalizeIP(s string) (string, bool) {
	ip := net.ParseIP(strings.TrimSpace(s))
	if ip == nil {
		return "", false
	}
	return ip.String(), true
}

// Apply deletes plan.Delete and returns the keys that are gone: deleted now
// or already gone, so that a retried Apply reports the same. A key that was
// rewritten since it was listed (another ModRevision) is left alone and
// reported as an error: the plan is stale, so list and decide again.
func Apply(ctx context.Context, cli *clientv3.Client, plan Plan) (deleted []string, err error) {
	rev := map[string]int64{}
	for _, k := range plan.Keys {
		rev[k.Key] = k.ModRevision
	}
	var changed []string
	for _, key := range plan.Delete {
		if !strings.HasPrefix(key, Prefix) || key == Prefix {
			return deleted, fmt.Errorf("refusing to delete %q: not a master lease key", key)
		}
		gone, err := deleteIfUnchanged(ctx, cli, key, rev[key])
		if err != nil {
			return deleted, err
		}
		if gone {
			deleted = append(deleted, key)
		} else {
			changed = append(changed, key)
		}
	}
	if len(changed) > 0 {
		return deleted, fmt.Errorf("master lease keys changed since they were listed, not deleted: %s; list and decide again", strings.Join(changed, ", "))
	}
	return deleted, nil
}

// deleteIfUnchanged deletes key if its mod revision is still rev (any
// revision when rev is 0). gone is true when the key no longer exists.
func deleteIfUnchanged(ctx context.Context, cli *clientv3.Client, key string, rev int64) (gone bool, err error) {
	if rev == 0 {
		if _, err := cli.Delete(ctx, key); err != nil {
			return false, fmt.Errorf("delete %s: %w", key, err)
		}
		return true, nil
	}
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpDelete(key)).
		Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return false, fmt.Errorf("delete %s: %w", key, err)
	}
	if resp.Succeeded {
		return true, nil
	}
	// A missing key has mod revision 0, so the compare failed: already gone.
	return len(resp.Responses[0].GetResponseRange().Kvs) == 0, nil
}

// WaitRenewed waits until exactly the live masters' IPs have keys, each
// with a lease: a lease proves that apiserver renewed its key in this etcd
// since the restore (restored keys carry none). It polls every poll
// (default 1 s). When ctx ends first it reports what was missing, not yet
// renewed and extra.
func WaitRenewed(ctx context.Context, cli *clientv3.Client, live []string, poll time.Duration) error {
	liveSet, err := normalizeLive(live)
	if err != nil {
		return err
	}
	if poll <= 0 {
		poll = time.Second
	}
	var st status
	var lastErr error
	for {
		keys, err := List(ctx, cli)
		if err == nil {
			st = check(keys, liveSet)
			if st.settled() {
				return nil
			}
		} else if ctx.Err() == nil {
			lastErr = err // etcd may be briefly unavailable; keep polling
		}
		select {
		case <-ctx.Done():
			msg := fmt.Sprintf("master leases not settled (live masters %s): %s", strings.Join(sortedKeys(liveSet), ", "), st)
			if lastErr != nil {
				msg += fmt.Sprintf("; last error: %v", lastErr)
			}
			return fmt.Errorf("%s: %w", msg, ctx.Err())
		case <-time.After(poll):
		}
	}
}

type status struct {
	seen                      bool
	missing, unrenewed, extra []string
}

func (s status) settled() bool {
	return s.seen && len(s.missing) == 0 && len(s.unrenewed) == 0 && len(s.extra) == 0
}

func (s status) String() string {
	if !s.seen {
		return "never listed"
	}
	var parts []string
	add := func(what string, ips []string) {
		if len(ips) > 0 {
			parts = append(parts, what+" "+strings.Join(ips, ", "))
		}
	}
	add("missing", s.missing)
	add("not renewed (no lease)", s.unrenewed)
	add("extra", s.extra)
	return strings.Join(parts, "; ")
}

func check(keys []Key, live map[string]bool) status {
	st := status{seen: true}
	have := map[string]bool{}
	for _, k := range keys {
		ip, ok := normalizeIP(k.IP)
		if !ok {
			continue // not an apiserver's key; Decide keeps those too
		}
		have[ip] = true
		switch {
		case !live[ip]:
			st.extra = append(st.extra, ip)
		case k.Lease == 0:
			st.unrenewed = append(st.unrenewed, ip)
		}
	}
	for _, ip := range sortedKeys(live) {
		if !have[ip] {
			st.missing = append(st.missing, ip)
		}
	}
	return st
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func ipsOf(keys []Key) string {
	ips := make([]string, len(keys))
	for i, k := range keys {
		ips[i] = k.IP
	}
	return strings.Join(ips, ", ")
}

// CleanOptions tune Clean.
type CleanOptions struct {
	// DryRun decides and deletes nothing.
	DryRun bool
	// WaitLive is how long to wait for a live master's key when none is
	// there yet: right after a restore the live apiservers rewrite their
	// own keys within ~10 s, and until one does, stale and live keys
	// cannot be told apart. 0: do not wait.
	WaitLive time.Duration
	// WaitRenewed is how long to wait, after deleting, until exactly the
	// live masters hold a key. 0: do not wait.
	WaitRenewed time.Duration
	// Poll is how often to look while waiting (default 1 s).
	Poll time.Duration
	// Progress, if set, hears what Clean waits for (activities heartbeat it).
	Progress func(string)
}

// CleanResult is what Clean found and did.
type CleanResult struct {
	Plan    Plan     `json:"plan"`
	Deleted []string `json:"deleted"`
}

// ErrNotRenewed: after the clean-up the live masters did not all hold a
// key within WaitRenewed (or a stale one came back).
var ErrNotRenewed = errors.New("master leases after clean-up")

// Clean is the master-lease clean-up, the one flow the restore workflow
// and `kopsdr clean-leases` share: wait (bounded) for a live master's key,
// decide, delete the keys of IPs that are not live masters (never a live
// master's, never the last), and wait until exactly the live masters hold
// a key. Errors wrap ErrNoLiveKey, ErrNotRenewed, a bad live list, or
// etcd's own errors.
func Clean(ctx context.Context, cli *clientv3.Client, live []string, o CleanOptions) (CleanResult, error) {
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	progress := func(s string) {
		if o.Progress != nil {
			o.Progress(s)
		}
	}
	deadline := time.Now().Add(o.WaitLive)
	var res CleanResult
	for {
		keys, err := List(ctx, cli)
		if err != nil {
			return res, err
		}
		res.Plan, err = Decide(keys, live)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrNoLiveKey) || !time.Now().Before(deadline) {
			return res, err
		}
		progress("waiting for a live apiserver's lease key")
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(o.Poll):
		}
	}
	res.Deleted = []string{}
	if o.DryRun {
		return res, nil
	}
	deleted, err := Apply(ctx, cli, res.Plan)
	res.Deleted = append(res.Deleted, deleted...)
	if err != nil || o.WaitRenewed <= 0 {
		return res, err
	}
	progress("waiting for live apiservers to renew their leases")
	wctx, cancel := context.WithTimeout(ctx, o.WaitRenewed)
	defer cancel()
	if err := WaitRenewed(wctx, cli, live, o.Poll); err != nil {
		return res, fmt.Errorf("%w: %w", ErrNotRenewed, err)
	}
	return res, nil
}
