package api

import (
	"fmt"
	"time"
)

// Search attributes every kopsdr workflow sets on itself (all of type
// Keyword), so runs can be found by cluster in the Web UI and with
// `kopsdr runs`. `kopsdr-worker --dev` registers them; a real server needs
// them registered once (SearchAttributeCreateCommand). A worker that finds
// them missing runs the workflows without them rather than fail them.
const (
	SearchAttrKopsCluster = "KopsCluster" // the kops cluster name
	SearchAttrEtcdCluster = "EtcdCluster" // main or events; unset for runs of both
	SearchAttrBackupName  = "BackupName"  // the backup taken, restored or drilled, once known
)

// SearchAttrs are the names above in the order the docs list them.
var SearchAttrs = []string{SearchAttrKopsCluster, SearchAttrEtcdCluster, SearchAttrBackupName}

// SearchAttributeCreateCommand is what an operator runs once per namespace
// of a real Temporal server.
func SearchAttributeCreateCommand(namespace string) string {
	return "temporal operator search-attribute create --namespace " + namespace +
		" --name KopsCluster --type Keyword --name EtcdCluster --type Keyword --name BackupName --type Keyword"
}

// Restore drills: one etcd cluster (RestoreDrill), or both as children of
// ClusterDrill, which is what a drill schedule runs.
const (
	WorkflowRestoreDrill = "RestoreDrill"
	WorkflowClusterDrill = "ClusterDrill"
)

// DrillWorkflowID is the id of a one-off drill of one etcd cluster
// started at t.
func DrillWorkflowID(cluster, etcdCluster string, t time.Time) string {
	return fmt.Sprintf("drill/%s/%s/%s", cluster, etcdCluster, t.UTC().Format("20060102T150405Z"))
}

// DrillScheduleID is the id of a cluster's drill schedule, created beside
// its backup schedule by `kopsdr schedule create`.
func DrillScheduleID(cluster string) string { return "drill/" + cluster }
