// Package changelog is kopsdr's record of every change made to one etcd
// cluster between full backups: the format of its segments, where they live
// in the change store, and the chains they form. Capture (internal/capture)
// writes it; make-backup (internal/replay) reads it to rebuild the keyspace
// at any revision a chain reaches.
//
// Layout, relative to the change store's root (a store of its own, outside
// etcd-manager's backup store, so etcd-manager never lists or prunes it):
//
//	chains/<chain id>/chain.json          Chain, written once when the chain starts
//	chains/<chain id>/seg/<first>-<last>-<observed>.kcl   one segment (gzip)
//	chains/<chain id>/head.json           Head: the capture's newest observation
//	chains/<chain id>/end.json            End: why and where the chain ended
//
// <first> and <last> are the segment's first and last revision, 20 digits,
// zero-padded, so names sort by revision; <observed> is the time kopsdr
// observed <last>, in unix milliseconds, 13 digits, so a time can be mapped
// to a segment from a listing alone.
package changelog

import "time"

// Op is one key written or deleted by a transaction.
type Op struct {
	Delete bool   `json:"delete,omitempty"`
	Key    []byte `json:"key"`
	Value  []byte `json:"value,omitempty"` // puts only
	Lease  int64  `json:"lease,omitempty"` // puts only; 0 for none
}

// Txn is every change etcd made at one revision, in the order the watch
// delivered them, and when kopsdr observed it.
type Txn struct {
	Revision int64     `json:"revision"`
	Observed time.Time `json:"observed"`
	Ops      []Op      `json:"ops"`
}

// Chain is an unbroken run of revisions captured from one etcd cluster:
// every revision from StartRevision up to the newest segment is recorded,
// each exactly once. A chain ends when capture can no longer continue it
// (compaction past the resume point, a new cluster id) or is disabled.
type Chain struct {
	ID          string `json:"id"`
	EtcdCluster string `json:"etcdCluster"` // main or events
	// ClusterID is the etcd cluster id the chain was captured from; a
	// different id later means the cluster was restored or replaced.
	ClusterID string `json:"clusterId"`
	// StartRevision is the first revision the chain covers. BaseBackup, a
	// full backup at revision BaseRevision (< StartRevision), is where
	// replay of this chain starts when no newer backup is usable.
	StartRevision int64     `json:"startRevision"`
	BaseBackup    string    `json:"baseBackup,omitempty"`
	BaseRevision  int64     `json:"baseRevision,omitempty"`
	Started       time.Time `json:"started"`
}

// Head is the capture's newest observation of a chain: every revision up
// to Revision is durable, and at Observed etcd had no newer revision that
// kopsdr had seen. It is refreshed while capture runs, even when idle, so
// a time after the last change can still be answered.
type Head struct {
	Revision int64     `json:"revision"`
	Observed time.Time `json:"observed"`
}

// End says why a chain stopped and where.
type End struct {
	// Reason is one of EndCompacted, EndClusterChanged, EndDisabled.
	Reason       string    `json:"reason"`
	LastRevision int64     `json:"lastRevision"` // the last durable revision
	At           time.Time `json:"at"`
	Detail       string    `json:"detail,omitempty"`
}

const (
	// EndCompacted: etcd compacted past the revision capture had to resume at.
	EndCompacted = "compacted"
	// EndClusterChanged: the etcd cluster id differs from the chain's.
	EndClusterChanged = "cluster-changed"
	// EndDisabled: an operator disabled capture.
	EndDisabled = "disabled"
)

// SegmentInfo describes one stored segment. From a listing only the name's
// fields (Key, First, Last, LastObserved, Bytes) are known; reading the
// segment fills in the rest.
type SegmentInfo struct {
	Key           string    `json:"key"`
	First         int64     `json:"first"`
	Last          int64     `json:"last"`
	FirstObserved time.Time `json:"firstObserved,omitzero"`
	LastObserved  time.Time `json:"lastObserved"`
	Txns          int       `json:"txns,omitempty"`
	Ops           int       `json:"ops,omitempty"`
	Bytes         int64     `json:"bytes"` // stored (compressed) size
	SHA256        string    `json:"sha256,omitempty"`
}
