package api

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/storeurl"
)

// The checks every input shares. Each returns an *inputerr.Error naming the
// field as the operator typed it in JSON, the value and the fix; the CLI
// maps JSON fields to its flags when it prints them.

func invalid(field, value, fix string) error { return inputerr.New(field, value, fix) }

// kops cluster names are DNS names.
var clusterName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// CheckCluster refuses what cannot be a kops cluster name.
func CheckCluster(name string) error {
	if len(name) > 253 || !clusterName.MatchString(name) {
		return invalid("cluster", name, "give the kops cluster name, a DNS name such as test.my.clusters (kops get clusters lists them)")
	}
	return nil
}

// CheckEtcdCluster refuses anything but main and events.
func CheckEtcdCluster(field, name string) error {
	if !slices.Contains(EtcdClusters, name) {
		return invalid(field, name, `use "main" or "events"`)
	}
	return nil
}

// EtcdClusterList checks a list of etcd cluster names, defaulting to both.
func EtcdClusterList(field string, ecs []string) ([]string, error) {
	if len(ecs) == 0 {
		return slices.Clone(EtcdClusters), nil
	}
	seen := map[string]bool{}
	for _, ec := range ecs {
		if err := CheckEtcdCluster(field, ec); err != nil {
			return nil, err
		}
		if seen[ec] {
			return nil, invalid(field, ec, "name each etcd cluster once")
		}
		seen[ec] = true
	}
	return ecs, nil
}

// defaultClientPort is kops's etcd client port per etcd cluster.
var defaultClientPort = map[string]int{"main": 4001, "events": 4002}

// CheckEndpoints wants at least one etcd client URL, each http(s) with a
// host and a port, none twice.
func CheckEndpoints(field, etcdCluster string, eps []string) error {
	example := fmt.Sprintf(`list etcd %s's client URLs, e.g. ["https://10.0.1.10:%d"]`, etcdCluster, defaultClientPort[etcdCluster])
	if len(eps) == 0 {
		return invalid(field, "", example)
	}
	seen := map[string]bool{}
	for _, ep := range eps {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
			return invalid(field, ep, "write each endpoint as https://<host>:<port>; "+example)
		}
		if seen[ep] {
			return invalid(field, ep, "list each endpoint once")
		}
		seen[ep] = true
	}
	return nil
}

// checkStoreURL parses a store URL; "" is not checked (it is optional).
func checkStoreURL(field, raw string) error {
	if raw == "" {
		return nil
	}
	_, err := storeurl.Parse(field, raw)
	return err
}

// BackupStoreFor derives the backup store of one etcd cluster the way kops
// lays it out: <stateStore>/<cluster>/backups/etcd/<etcdCluster>, or the
// backup store given instead. Giving both is refused: one would be ignored
// without a word.
func BackupStoreFor(stateStore, backupStore, cluster, etcdCluster, backupStoreField string) (string, error) {
	switch {
	case backupStore != "" && stateStore != "":
		return "", invalid(backupStoreField, backupStore, fmt.Sprintf(
			"give either stateStore (%s; the backup store is then <stateStore>/%s/backups/etcd/%s) or %s, not both",
			stateStore, cluster, etcdCluster, backupStoreField))
	case backupStore != "":
		return backupStore, checkStoreURL(backupStoreField, backupStore)
	case stateStore == "":
		return "", invalid("stateStore", "", "give the kops state store (as in KOPS_STATE_STORE, e.g. s3://my.clusters) or "+backupStoreField+
			" (e.g. s3://my.clusters/test.my.clusters/backups/etcd/"+etcdCluster+")")
	}
	if err := checkStoreURL("stateStore", stateStore); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s/%s/backups/etcd/%s", strings.TrimRight(stateStore, "/"), cluster, etcdCluster), nil
}

// Duration reads a Go duration ("30m", "168h") that must be positive,
// returning def when val is empty.
func Duration(field, val string, def time.Duration) (time.Duration, error) {
	if val == "" {
		return def, nil
	}
	d, err := time.ParseDuration(val)
	if err != nil {
		return def, invalid(field, val, `use a Go duration such as "30m", "24h" or "2160h" (90 days); units are ns, us, ms, s, m and h`)
	}
	if d <= 0 {
		return def, invalid(field, val, fmt.Sprintf("give a positive duration, e.g. %q; leave it out for the default (%s)", strings.TrimPrefix(val, "-"), def))
	}
	return d, nil
}

// DurationOrOff is Duration for a rule that "0s" turns off: zero is
// allowed, a negative duration is not.
func DurationOrOff(field, val string, def time.Duration) (time.Duration, error) {
	if d, err := time.ParseDuration(val); err == nil && d == 0 {
		return 0, nil
	}
	return Duration(field, val, def)
}

// checkAttempts allows 0 (the default) and positive counts.
func checkAttempts(field string, n int32) error {
	if n < 0 {
		return invalid(field, strconv.Itoa(int(n)), "give a positive number of attempts, or leave it out for the default")
	}
	return nil
}

// CheckIP wants a literal IPv4 or IPv6 address.
func CheckIP(field, ip string) error {
	if net.ParseIP(ip) == nil {
		return invalid(field, ip, "give the master's private IP address, e.g. 10.0.1.10")
	}
	return nil
}

// AWS region names: us-east-1, eu-central-1, us-gov-west-1, cn-north-1.
var regionName = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)

// CheckRegion refuses what cannot be an AWS region name.
func CheckRegion(field, region string) error {
	if !regionName.MatchString(region) {
		return invalid(field, region, "give the AWS region of the cluster's masters, e.g. us-east-1")
	}
	return nil
}

// Kubernetes node names (kops on AWS: ip-10-0-1-10.ec2.internal).
var nodeName = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`)

// CheckTime reads an RFC 3339 time.
func CheckTime(field, val string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, val)
	if err != nil {
		return t, invalid(field, val, "give an RFC 3339 time such as 2026-11-21T22:00:00Z")
	}
	return t.UTC(), nil
}

// oneOf checks an enumerated value; "" takes def.
func oneOf(field, val, def string, allowed ...string) (string, error) {
	if val == "" {
		return def, nil
	}
	if !slices.Contains(allowed, val) {
		return def, invalid(field, val, "use "+quoteList(allowed))
	}
	return val, nil
}

func quoteList(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = strconv.Quote(v)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
