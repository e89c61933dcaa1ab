package etcdmanager_test

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

// The examples in docs/formats.md, byte for byte.
const (
	formatsMeta    = `{"etcdVersion": "3.5.9", "timestamp": "1795301536", "clusterSpec": {"memberCount": 3, "etcdVersion": "3.5.9"}}`
	formatsCommand = `{"timestamp": "1795301699486996173", "restoreBackup": {"clusterSpec": {"memberCount": 3, "etcdVersion": "3.5.9"}, "backup": "2026-11-20T10:00:00Z-000042"}}`
	formatsSpec    = `{"memberCount": 3, "etcdVersion": "3.5.9"}`
)

var spec359 = etcdmanager.ClusterSpec{MemberCount: 3, EtcdVersion: "3.5.9"}

// The repository's formats document shows the examples kopsdr writes. It is
// part of every clone, so this never skips.
func TestFormatsMatchDoc(t *testing.T) {
	doc, err := os.ReadFile("../../docs/formats.md")
	require.NoError(t, err)
	for _, s := range []string{formatsMeta, formatsCommand, formatsSpec} {
		assert.Contains(t, string(doc), s)
	}
}

func TestMarshalIsByteExact(t *testing.T) {
	assert.Equal(t, formatsMeta, string(etcdmanager.MarshalBackupInfo(etcdmanager.BackupInfo{
		EtcdVersion: "3.5.9", Timestamp: 1795301536, ClusterSpec: &spec359,
	})))
	assert.Equal(t, formatsCommand, string(etcdmanager.MarshalCommand(etcdmanager.Command{
		Name:      "ignored: the folder name is not serialized",
		Timestamp: 1795301699486996173,
		RestoreBackup: &etcdmanager.RestoreBackupCommand{
			ClusterSpec: &spec359, Backup: "2026-11-20T10:00:00Z-000042",
		},
	})))
	assert.Equal(t, formatsSpec, string(etcdmanager.MarshalClusterSpec(spec359)))
	// proto3 JSON leaves zero values out.
	assert.Equal(t, `{"etcdVersion": "3.5.9"}`, string(etcdmanager.MarshalBackupInfo(etcdmanager.BackupInfo{EtcdVersion: "3.5.9"})))
	assert.Equal(t, `{}`, string(etcdmanager.MarshalCommand(etcdmanager.Command{})))
}

func TestParseRoundTrip(t *testing.T) {
	info, err := etcdmanager.ParseBackupInfo([]byte(formatsMeta))
	require.NoError(t, err)
	assert.Equal(t, etcdmanager.BackupInfo{EtcdVersion: "3.5.9", Timestamp: 1795301536, ClusterSpec: &spec359}, info)

	cmd, err := etcdmanager.ParseCommand([]byte(formatsCommand))
	require.NoError(t, err)
	assert.Equal(t, etcdmanager.Command{Timestamp: 1795301699486996173, RestoreBackup: &etcdmanager.RestoreBackupCommand{
		ClusterSpec: &spec359, Backup: "2026-11-20T10:00:00Z-000042",
	}}, cmd)
	assert.Equal(t, formatsCommand, string(etcdmanager.MarshalCommand(cmd)))

	spec, err := etcdmanager.ParseClusterSpec([]byte(formatsSpec))
	require.NoError(t, err)
	assert.Equal(t, spec359, spec)
}

func TestParseBackupInfoAcceptsWhatEtcdManagerWrites(t *testing.T) {
	for name, in := range map[string]string{
		// etcd-manager's own writer: protojson (formerly jsonpb) indented.
		"indented":           "{\n  \"etcdVersion\": \"3.5.9\",\n  \"timestamp\": \"1795301536\",\n  \"clusterSpec\": {\n    \"memberCount\": 3,\n    \"etcdVersion\": \"3.5.9\"\n  }\n}",
		"compact":            `{"etcdVersion":"3.5.9","timestamp":"1795301536","clusterSpec":{"memberCount":3,"etcdVersion":"3.5.9"}}`,
		"timestamp number":   `{"etcdVersion": "3.5.9", "timestamp": 1795301536, "clusterSpec": {"memberCount": 3, "etcdVersion": "3.5.9"}}`,
		"proto field names":  `{"etcd_version": "3.5.9", "timestamp": "1795301536", "cluster_spec": {"member_count": 3, "etcd_version": "3.5.9"}}`,
		"memberCount string": `{"etcdVersion": "3.5.9", "timestamp": "1795301536", "clusterSpec": {"memberCount": "3", "etcdVersion": "3.5.9"}}`,
		"null spec":          `{"etcdVersion": "3.5.9", "timestamp": "1795301536", "clusterSpec": null}`,
	} {
		t.Run(name, func(t *testing.T) {
			info, err := etcdmanager.ParseBackupInfo([]byte(in))
			require.NoError(t, err)
			assert.Equal(t, "3.5.9", info.EtcdVersion)
			assert.Equal(t, int64(1795301536), info.Timestamp)
		})
	}
}

func TestParseIsStrict(t *testing.T) {
	for name, in := range map[string]string{
		"extra top-level field":  `{"etcdVersion": "3.5.9", "timestamp": "1795301536", "kopsdr": {"sha256": "ab"}}`,
		"extra nested field":     `{"etcdVersion": "3.5.9", "clusterSpec": {"memberCount": 3, "etcdVersion": "3.5.9", "x": 1}}`,
		"missing etcdVersion":    `{"timestamp": "1795301536", "clusterSpec": {"memberCount": 3, "etcdVersion": "3.5.9"}}`,
		"empty etcdVersion":      `{"etcdVersion": "", "timestamp": "1795301536"}`,
		"duplicate field":        `{"etcdVersion": "3.5.9", "etcd_version": "3.5.10"}`,
		"timestamp not integer":  `{"etcdVersion": "3.5.9", "timestamp": "soon"}`,
		"timestamp fraction":     `{"etcdVersion": "3.5.9", "timestamp": 1.5}`,
		"etcdVersion not string": `{"etcdVersion": 3.5}`,
		"memberCount overflow":   `{"etcdVersion": "3.5.9", "clusterSpec": {"memberCount": 4294967296}}`,
		"trailing data":          `{"etcdVersion": "3.5.9"} {}`,
		"array":                  `[{"etcdVersion": "3.5.9"}]`,
		"empty":                  ``,
		"truncated":              `{"etcdVersion": "3.5.9"`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := etcdmanager.ParseBackupInfo([]byte(in))
			assert.Error(t, err)
		})
	}
	_, err := etcdmanager.ParseCommand([]byte(`{"timestamp": "1", "restoreBackup": {"backup": "x", "force": true}}`))
	assert.ErrorContains(t, err, `unknown field "force"`)
	_, err = etcdmanager.ParseCommand([]byte(`{"timestamp": "1", "createNewCluster": {}}`))
	assert.Error(t, err)
	_, err = etcdmanager.ParseClusterSpec([]byte(`{"memberCount": 3, "etcdVersion": "3.5.9", "extra": true}`))
	assert.Error(t, err)
}

// etcdManagerTypes describes etcd-manager's messages (pkg/apis/etcd
// etcdapi.proto) so the tests can check our bytes against real protojson,
// the parser etcd-manager uses.
func etcdManagerTypes(t *testing.T) protoreflect.FileDescriptor {
	t.Helper()
	f := func(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type, msg string) *descriptorpb.FieldDescriptorProto {
		fd := &descriptorpb.FieldDescriptorProto{
			Name: proto.String(name), Number: proto.Int32(num), Type: typ.Enum(),
			Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
		}
		if msg != "" {
			fd.TypeName = proto.String(".etcd." + msg)
		}
		return fd
	}
	const (
		i32 = descriptorpb.FieldDescriptorProto_TYPE_INT32
		i64 = descriptorpb.FieldDescriptorProto_TYPE_INT64
		str = descriptorpb.FieldDescriptorProto_TYPE_STRING
		msg = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	)
	file := &descriptorpb.FileDescriptorProto{
		Name: proto.String("etcdapi.proto"), Package: proto.String("etcd"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("ClusterSpec"), Field: []*descriptorpb.FieldDescriptorProto{
				f("member_count", 1, i32, ""), f("etcd_version", 2, str, "")}},
			{Name: proto.String("BackupInfo"), Field: []*descriptorpb.FieldDescriptorProto{
				f("etcd_version", 1, str, ""), f("timestamp", 2, i64, ""), f("cluster_spec", 3, msg, "ClusterSpec")}},
			{Name: proto.String("RestoreBackupCommand"), Field: []*descriptorpb.FieldDescriptorProto{
				f("cluster_spec", 1, msg, "ClusterSpec"), f("backup", 3, str, "")}},
			{Name: proto.String("Command"), Field: []*descriptorpb.FieldDescriptorProto{
				f("timestamp", 1, i64, ""), f("restore_backup", 10, msg, "RestoreBackupCommand")}},
		},
	}
	fd, err := protodesc.NewFile(file, nil)
	require.NoError(t, err)
	return fd
}

func protoParse(t *testing.T, fd protoreflect.FileDescriptor, msgName, data string) (*dynamicpb.Message, error) {
	m := dynamicpb.NewMessage(fd.Messages().ByName(protoreflect.Name(msgName)))
	return m, protojson.Unmarshal([]byte(data), m)
}

// TestProtojsonReadsOurBytes: what we write, etcd-manager's parser reads,
// to the same values.
func TestProtojsonReadsOurBytes(t *testing.T) {
	fd := etcdManagerTypes(t)
	for msgName, data := range map[string]string{
		"BackupInfo":  formatsMeta,
		"Command":     formatsCommand,
		"ClusterSpec": formatsSpec,
	} {
		m, err := protoParse(t, fd, msgName, data)
		require.NoError(t, err, msgName)
		// protojson's own output differs in spacing only.
		out, err := protojson.Marshal(m)
		require.NoError(t, err)
		var want, got any
		require.NoError(t, json.Unmarshal([]byte(data), &want))
		require.NoError(t, json.Unmarshal(out, &got))
		assert.Equal(t, want, got, msgName)
	}
}

// TestStrictnessMatchesProtojson: our parser accepts and refuses the same
// inputs as protojson (plus our one extra rule: etcdVersion is required).
func TestStrictnessMatchesProtojson(t *testing.T) {
	fd := etcdManagerTypes(t)
	for _, in := range []string{
		formatsMeta,
		`{"etcdVersion": "3.5.9", "timestamp": 1795301536}`,
		`{"etcd_version": "3.5.9", "cluster_spec": {"member_count": "3"}}`,
		`{"etcdVersion": "3.5.9", "clusterSpec": null}`,
		`{"etcdVersion": "3.5.9", "timestamp": null}`,
		`{"etcdVersion": "3.5.9", "extra": 1}`,
		`{"etcdVersion": "3.5.9", "etcd_version": "3.5.9"}`,
		`{"etcdVersion": "3.5.9", "timestamp": "x"}`,
		`{"etcdVersion": "3.5.9", "timestamp": 1.5}`,
		`{"etcdVersion": 3}`,
		`{"etcdVersion": "3.5.9", "clusterSpec": {"memberCount": 2147483648}}`,
		`{"etcdVersion": "3.5.9", "clusterSpec": {"memberCount": -1}}`,
		`{"etcdVersion": "3.5.9", "clusterSpec": []}`,
		`{"etcdVersion": "3.5.9"} x`,
		`[]`,
	} {
		_, protoErr := protoParse(t, fd, "BackupInfo", in)
		_, ourErr := etcdmanager.ParseBackupInfo([]byte(in))
		assert.Equal(t, protoErr == nil, ourErr == nil, "%s\nprotojson: %v\nours: %v", in, protoErr, ourErr)
	}
	for _, in := range []string{
		formatsCommand,
		`{"timestamp": 1795301699486996173, "restore_backup": {"backup": "b"}}`,
		`{"timestamp": "1", "restoreBackup": {"backup": "b", "extra": 1}}`,
		`{"timestamp": "1", "restoreBackup": {"backup": 7}}`,
		`{"timestamp": "1", "createNewCluster": {}}`,
	} {
		_, protoErr := protoParse(t, fd, "Command", in)
		_, ourErr := etcdmanager.ParseCommand([]byte(in))
		assert.Equal(t, protoErr == nil, ourErr == nil, "%s\nprotojson: %v\nours: %v", in, protoErr, ourErr)
	}
}

func TestBackupName(t *testing.T) {
	at := time.Date(2026, 11, 21, 23, 52, 16, 987654321, time.FixedZone("CET", 3600))
	assert.Equal(t, "2026-11-21T22:52:16Z-000001", etcdmanager.BackupName(at, 1))
	assert.Equal(t, "2026-11-21T22:52:16Z-1234567", etcdmanager.BackupName(at, 1234567))

	for name, want := range map[string]struct {
		t   time.Time
		seq int
		ok  bool
	}{
		"2026-11-21T22:52:16Z-000001":      {time.Date(2026, 11, 21, 22, 52, 16, 0, time.UTC), 1, true},
		"2026-11-20T10:00:00Z-000042":      {time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC), 42, true},
		"2026-11-21T22:52:16Z-1234567":     {time.Date(2026, 11, 21, 22, 52, 16, 0, time.UTC), 1234567, true},
		"2026-11-21T22:52:16Z-00001":       {},
		"2026-11-21T22:52:16Z-manual":      {},
		"2026-11-21T22:52:16Z":             {},
		"2026-11-21T22:52:16.5Z-000001":    {},
		"2026-11-21T23:52:16+01:00-000001": {},
		"2026-13-01T00:00:00Z-000001":      {},
		"my-backup":                        {},
		"":                                 {},
	} {
		got, seq, ok := etcdmanager.ParseBackupName(name)
		assert.Equal(t, want.ok, ok, name)
		if want.ok {
			assert.True(t, want.t.Equal(got), "%s: %v", name, got)
			assert.Equal(t, time.UTC, got.Location(), name)
			assert.Equal(t, want.seq, seq, name)
			assert.Equal(t, name, etcdmanager.BackupName(got, seq), "round trip")
		}
	}
	assert.Equal(t, "control/2026-11-21T22:52:16Z-000000", etcdmanager.CommandFolder(at))
}
