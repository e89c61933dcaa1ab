package replay

import (
	"fmt"
	"strings"
	"time"

	"github.com/coreos/go-semver/semver"
	"go.etcd.io/etcd/api/v3/version"
	"go.etcd.io/etcd/server/v3/storage/backend"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.uber.org/zap"
)

// lockTimeout bounds the wait for the database's file lock: the scratch
// etcd has released it when it stopped.
const lockTimeout = 10 * time.Second

// minTarget is the oldest version etcd's storage schema migration knows
// (schemaChanges in server/v3/storage/schema/schema.go starts after 3.5;
// `etcdutl migrate` refuses a target below it).
var minTarget = version.V3_5

// targetVersion is the etcd minor version the output database is lowered
// to for a base that etcd-manager restores with etcd baseVersion ("3.5.9",
// "v3.5.9" or "3.5"): that minor version, but not below 3.5. ok is false when
// nothing is to be lowered: the base's version is unknown, or not older
// than the scratch etcd's.
func targetVersion(baseVersion string) (target semver.Version, ok bool) {
	s := strings.TrimPrefix(strings.TrimSpace(baseVersion), "v")
	if strings.Count(s, ".") == 1 {
		s += ".0" // "3.5", as `etcdutl migrate` takes it
	}
	v, err := semver.NewVersion(s)
	if err != nil || v.Major != minTarget.Major {
		return semver.Version{}, false
	}
	target = semver.Version{Major: v.Major, Minor: v.Minor}
	if target.LessThan(minTarget) {
		target = minTarget
	}
	return target, target.LessThan(scratchVersion())
}

// scratchVersion is the scratch etcd's minor version, the one it writes.
func scratchVersion() semver.Version {
	v := semver.New(version.Version)
	return semver.Version{Major: v.Major, Minor: v.Minor}
}

// lowerVersions marks the database file at path, which no etcd has open,
// for etcd target (from targetVersion), the way etcd itself leaves a
// database it downgraded. It only ever lowers: a mark already at or below
// the target stays (a short replay may stop the scratch etcd before it
// raised the base's marks to its own version).
//
// Two marks stop an older etcd from starting on a database the scratch
// etcd wrote, and both are lowered with etcd's own code:
//
//   - meta/storageVersion, the storage schema version (etcd 3.6 and
//     later). etcd 3.6's bootstrap (server/etcdserver/bootstrap.go,
//     schema.Validate) refuses a database whose schema it cannot migrate
//     to its own, and it knows no schema newer than 3.6. schema.Migrate
//     (server/v3/storage/schema/migration.go, what `etcdutl migrate
//     --target-version` runs) steps the schema down minor by minor with
//     the changes etcd records per version (schemaChanges: 3.7 changed
//     nothing, 3.6 added storageVersion itself, so going to 3.5 deletes
//     the key and 3.6 sets it to "3.6.0"). Its check that the WAL holds
//     no entries too new for the target does not apply: only the database
//     ships, and etcd-manager's restore (`etcdutl snapshot restore`,
//     etcdutl/snapshot/v3_snapshot.go saveWALAndSnap) writes a new WAL of
//     only the new members' ConfChanges; so the WAL passed is an empty one.
//
//   - cluster/clusterVersion, the cluster version (etcd 3.5 and later).
//     Restore leaves it alone (saveDB only trims the members buckets,
//     membership.TrimMembershipFromBackend). etcd 3.6 reads it from the
//     database when it starts (membership/cluster.go RaftCluster.Recover,
//     UnsafeLoad, ClusterVersionFromBackend) and panics ("invalid
//     downgrade; server version is lower than determined cluster version",
//     server/etcdserver/version/downgrade.go MustDetectDowngrade) when it
//     is a newer minor than its own. etcd 3.5 (v3.5.33 RaftCluster.Recover)
//     takes it from the v2 store in the restore's new snapshot, which has
//     none, so the database's value does not stop 3.5; it overwrites it
//     once the members agree (SetVersion, mustSaveClusterVersionToBackend).
//     Removing the key would start both 3.5 and 3.6 as well (no cluster
//     version: nothing to check). It is set to the target instead because
//     that is what a cluster of the target version stores, and what etcd's
//     own downgrade leaves (it lowers the cluster version through
//     RaftCluster.SetVersion, which saves it with
//     MustSaveClusterVersionToBackend, called here too).
//
// The downgrade info (cluster/downgrade), the one other version record,
// stays as the base had it: the scratch etcd never starts or ends a
// downgrade.
func lowerVersions(lg *zap.Logger, path string, target semver.Version) (err error) {
	// etcd's backend panics when bolt cannot open the file.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("opening the database: %v", r)
		}
	}()
	be := backend.NewDefaultBackend(lg, path, backend.WithTimeout(lockTimeout))
	defer be.Close()
	current, err := schema.DetectSchemaVersion(lg, be.ReadTx())
	if err != nil {
		return fmt.Errorf("storage version of the database: %w", err)
	}
	if target.LessThan(current) {
		if err := schema.Migrate(lg, be.BatchTx(), noWAL{}, target); err != nil {
			return fmt.Errorf("lowering the storage version from %s to %s: %w", minor(current), minor(target), err)
		}
	}
	mb := schema.NewMembershipBackend(lg, be)
	if cv := mb.ClusterVersionFromBackend(); cv != nil && target.LessThan(semver.Version{Major: cv.Major, Minor: cv.Minor}) {
		mb.MustSaveClusterVersionToBackend(&target)
	}
	be.ForceCommit()
	return nil
}

// minor is v as etcd names storage versions: "3.5".
func minor(v semver.Version) string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// noWAL is the WAL that goes with the shipped database: none (see
// lowerVersions).
type noWAL struct{}

func (noWAL) MinimalEtcdVersion() *semver.Version { return nil }
