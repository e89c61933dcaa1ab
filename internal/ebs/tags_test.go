package ebs

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseEtcdTag(t *testing.T) {
	et, err := ParseEtcdTag("a/a,b,c")
	require.NoError(t, err)
	require.Equal(t, EtcdTag{Member: "a", Members: []string{"a", "b", "c"}}, et)
	require.Equal(t, "a/a,b,c", et.String())

	et, err = ParseEtcdTag("eu-central-1a/eu-central-1a")
	require.NoError(t, err)
	require.Equal(t, "eu-central-1a", et.Member)

	for _, bad := range []string{"", "a", "a/", "/a", "d/a,b,c", "a/a,,b"} {
		_, err := ParseEtcdTag(bad)
		require.Error(t, err, bad)
	}
}

func TestProtokubeTagsKeepOtherKopsTags(t *testing.T) {
	had := map[string]string{
		"KubernetesCluster": "k8s.mycompany.tld", "Name": "eu-central-1a.etcd-main.k8s.mycompany.tld",
		"k8s.io/etcd/main": "eu-central-1a/eu-central-1a", "k8s.io/role/master": "1",
		"k8s.io/role/control-plane": "1", "kubernetes.io/cluster/k8s.mycompany.tld": "owned",
		"team": "platform", "aws:cloudformation:stack-name": "x", "kopsdr.io/replaces": "vol-1",
	}
	got := ProtokubeTags("k8s.mycompany.tld", "main", EtcdTag{Member: "eu-central-1a", Members: []string{"eu-central-1a"}}, had)
	require.Equal(t, map[string]string{
		"KubernetesCluster": "k8s.mycompany.tld", "Name": "eu-central-1a.etcd-main.k8s.mycompany.tld",
		"k8s.io/etcd/main": "eu-central-1a/eu-central-1a", "k8s.io/role/master": "1",
		"k8s.io/role/control-plane": "1", "kubernetes.io/cluster/k8s.mycompany.tld": "owned",
	}, got)
	require.Equal(t, map[string]string{"team": "platform"}, UserTags(had))

	// With nothing recorded, the four protokube tags are derived.
	got = ProtokubeTags("c.example.com", "events", EtcdTag{Member: "b", Members: []string{"a", "b", "c"}}, nil)
	require.Equal(t, map[string]string{
		"KubernetesCluster": "c.example.com", "Name": "b.etcd-events.c.example.com",
		"k8s.io/etcd/events": "b/a,b,c", "k8s.io/role/master": "1",
	}, got)
}

func TestCopiedRoundTrip(t *testing.T) {
	tags := map[string]string{"KubernetesCluster": "c", "k8s.io/etcd/main": "a/a", "kubernetes.io/cluster/" + strings.Repeat("x", 120): "owned"}
	copied := Copied(tags)
	require.Len(t, copied, 2, "a key too long to prefix is left out")
	for k := range copied {
		require.True(t, strings.HasPrefix(k, TagCopyPrefix))
		require.False(t, IsKopsTag(k), "a copy is invisible to protokube: %s", k)
	}
	require.Equal(t, map[string]string{"KubernetesCluster": "c", "k8s.io/etcd/main": "a/a"}, Uncopied(copied))
}

func TestSnapshotTagsStayUnderLimit(t *testing.T) {
	v := testVolume("main", "a", "us-east-1a", nil)
	for i := range 60 {
		v.Tags["user-"+string(rune('a'+i%26))+strings.Repeat("z", i/26)] = "v"
	}
	tags := SnapshotTags(v, "2026-01-01T00:00:00Z-00000000", 6, "volume-snapshots/c")
	require.LessOrEqual(t, len(tags), MaxTags)
	for _, k := range []string{TagCluster, TagSet, TagSetSize, TagWorkflowID, TagEtcdCluster, TagMember, TagZone, TagVolumeID, TagVolumeSpec,
		TagCopyPrefix + "KubernetesCluster", TagCopyPrefix + "k8s.io/etcd/main"} {
		require.Contains(t, tags, k, "kopsdr's and the kops tags come before operator tags")
	}
}

func TestSetIDSortsByTime(t *testing.T) {
	t1 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a, b := SetID(t1, "run-1"), SetID(t1.Add(time.Millisecond), "run-0")
	require.Less(t, a, b)
	require.NotEqual(t, SetID(t1, "run-1"), SetID(t1, "run-2"))
	got, ok := SetTime(a)
	require.True(t, ok)
	require.Equal(t, t1, got)
	_, ok = SetTime("nightly")
	require.False(t, ok)
}

func TestClientToken(t *testing.T) {
	tok := ClientToken("restore/c", "run", "main", "a")
	require.LessOrEqual(t, len(tok), 64, "EC2's limit")
	require.Equal(t, tok, ClientToken("restore/c", "run", "main", "a"), "stable across retries")
	require.NotEqual(t, tok, ClientToken("restore/c", "run", "events", "a"))
	require.NotEqual(t, tok, ClientToken("restore/c", "run2", "main", "a"), "another restore under the same id")
}

func TestVolumeSpecRoundTrip(t *testing.T) {
	for _, s := range []VolumeSpec{{"gp3", 20, 3000, 125}, {"gp2", 100, 300, 0}, {"io2", 50, 5000, 0}} {
		got, ok := ParseVolumeSpec(s.String())
		require.True(t, ok)
		require.Equal(t, s, got)
	}
	_, ok := ParseVolumeSpec("gp3/x/1/2")
	require.False(t, ok)

	typ, size, iops, tp := VolumeSpec{"gp2", 100, 300, 0}.CreateParams()
	require.Equal(t, "gp2", string(typ))
	require.EqualValues(t, 100, *size)
	require.Nil(t, iops, "EC2 refuses iops for gp2")
	require.Nil(t, tp)
	_, _, iops, tp = VolumeSpec{"gp3", 20, 4000, 250}.CreateParams()
	require.EqualValues(t, 4000, *iops)
	require.EqualValues(t, 250, *tp)
}

func TestSameKey(t *testing.T) {
	arn := "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	require.True(t, SameKey(arn, arn))
	require.True(t, SameKey("1234abcd-12ab-34cd-56ef-1234567890ab", arn))
	require.False(t, SameKey("arn:aws:kms:us-east-1:123456789012:key/other", arn))
	require.False(t, SameKey("alias/etcd", arn), "an alias cannot be resolved here")
	require.False(t, SameKey("", arn))
}

// testVolume is one member's volume as kops tags it.
func testVolume(ec, member, az string, members []string) EtcdVolume {
	if members == nil {
		members = []string{"a", "b", "c"}
	}
	et := EtcdTag{Member: member, Members: members}
	return EtcdVolume{Cluster: "c.example.com", EtcdCluster: ec, Etcd: et, Volume: Volume{
		ID: "vol-" + ec + member, AvailabilityZone: az, State: "in-use", InstanceID: "i-" + member,
		Spec: VolumeSpec{Type: "gp3", Size: 20, Iops: 3000, Throughput: 125},
		Tags: map[string]string{
			"KubernetesCluster": "c.example.com", "Name": VolumeName(member, ec, "c.example.com"),
			"k8s.io/etcd/" + ec: et.String(), "k8s.io/role/master": "1",
			"kubernetes.io/cluster/c.example.com": "owned",
		},
	}}
}
