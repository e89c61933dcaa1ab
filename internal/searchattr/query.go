package searchattr

import (
	"strings"

	"github.com/kopsdr/kopsdr/workflows/api"
)

// Quote makes s a string literal of Temporal's visibility query language:
// in single quotes, with backslash and quote escaped as its SQL-like parser
// reads them, so no value can change the query's meaning. (The SQL
// visibility stores then re-escape a value's backslashes and double quotes
// their own way, so a value holding those is not found there; kopsdr's are
// DNS names, main or events, and backup names, which hold neither.)
func Quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// Filter selects the runs of one kops cluster.
type Filter struct {
	Cluster     string // required
	EtcdCluster string // main or events; "" for runs of either or both
	Failed      bool   // only runs that ended failed (not cancelled, terminated or timed out)
}

// Query is the visibility query for f, e.g.
// KopsCluster = 'test.my.clusters' AND ExecutionStatus = 'Failed'.
func (f Filter) Query() string {
	q := api.SearchAttrKopsCluster + " = " + Quote(f.Cluster)
	if f.EtcdCluster != "" {
		q += " AND " + api.SearchAttrEtcdCluster + " = " + Quote(f.EtcdCluster)
	}
	if f.Failed {
		q += " AND ExecutionStatus = 'Failed'"
	}
	return q
}
