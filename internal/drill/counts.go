package drill

import (
	"context"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Counts are a keyspace's size: every key, and the keys under each
// /registry/<resource>/ prefix. Kubernetes keeps one resource type under
// each such prefix, so these are object counts per type.
type Counts struct {
	Total    int64            `json:"total"`
	Bytes    int64            `json:"bytes,omitempty"` // keys and values; only a drill reads values
	ByPrefix map[string]int64 `json:"byPrefix,omitempty"`
}

// registryPrefix is where the Kubernetes API server keeps its objects.
const registryPrefix = "/registry/"

// prefixOf is the /registry/<resource>/ prefix a key is counted under, or
// "" for a key outside any (such as /registry/health).
func prefixOf(key []byte) string {
	k := string(key)
	if !strings.HasPrefix(k, registryPrefix) {
		return ""
	}
	i := strings.IndexByte(k[len(registryPrefix):], '/')
	if i <= 0 {
		return ""
	}
	return k[:len(registryPrefix)+i+1]
}

func (c *Counts) add(key []byte, bytes int64) {
	c.Total++
	c.Bytes += bytes
	if p := prefixOf(key); p != "" {
		if c.ByPrefix == nil {
			c.ByPrefix = map[string]int64{}
		}
		c.ByPrefix[p]++
	}
}

// compare lists each disagreement between got and the expected counts,
// naming the prefix and both numbers. A prefix that one side lacks counts
// as 0 there.
func compare(got Counts, want Counts) []string {
	var diffs []string
	if got.Total != want.Total {
		diffs = append(diffs, fmt.Sprintf("key count %d, expected %d", got.Total, want.Total))
	}
	for _, p := range sortedUnion(got.ByPrefix, want.ByPrefix) {
		if g, w := got.ByPrefix[p], want.ByPrefix[p]; g != w {
			diffs = append(diffs, fmt.Sprintf("%s: %d keys, expected %d", p, g, w))
		}
	}
	return diffs
}

// CountKeys counts the keys of a live cluster at revision rev (0: the
// newest) without reading a single value: a keys-only page finds the next
// key, and when it belongs to a /registry/<resource>/ prefix one count-only
// range takes the whole prefix and the scan jumps past it. That is a few
// requests per resource type, so the backup can afford it at every
// snapshot. Bytes stays 0. Reading at one revision makes the counts
// consistent with each other even while the cluster is written to.
func CountKeys(ctx context.Context, cli *clientv3.Client, rev int64) (Counts, error) {
	var c Counts
	from := "\x00" // the smallest key
	for {
		resp, err := cli.Get(ctx, from, clientv3.WithFromKey(), clientv3.WithKeysOnly(),
			clientv3.WithLimit(countPage), clientv3.WithRev(rev))
		if err != nil {
			return Counts{}, fmt.Errorf("counting keys from %q: %w", from, err)
		}
		if rev == 0 {
			// The header has the newest revision, also when reading an older
			// one; pin it so the following pages read what this one did.
			rev = resp.Header.Revision
		}
		if len(resp.Kvs) == 0 {
			return c, nil
		}
		next := ""
		for _, kv := range resp.Kvs {
			p := prefixOf(kv.Key)
			if p == "" {
				c.Total++
				next = string(kv.Key) + "\x00"
				continue
			}
			n, err := cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(rev))
			if err != nil {
				return Counts{}, fmt.Errorf("counting %s: %w", p, err)
			}
			if c.ByPrefix == nil {
				c.ByPrefix = map[string]int64{}
			}
			c.Total += n.Count
			c.ByPrefix[p] = n.Count
			next = clientv3.GetPrefixRangeEnd(p)
			break // the rest of this page is inside p
		}
		if !resp.More && next == string(resp.Kvs[len(resp.Kvs)-1].Key)+"\x00" {
			return c, nil
		}
		from = next
	}
}

// countPage bounds one keys-only page of CountKeys; keys are small.
const countPage = 1000
