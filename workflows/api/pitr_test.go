package api

import (
	"strings"
	"testing"
)

func TestChangeStoreFor(t *testing.T) {
	for _, c := range []struct{ backup, change, want, err string }{
		{"s3://bkt/c.example.com/backups/etcd/main", "", "s3://bkt/c.example.com/backups/kopsdr-changes/main", ""},
		{"file:///srv/state/c/backups/etcd/events/", "", "file:///srv/state/c/backups/kopsdr-changes/events", ""},
		{"s3://bkt/somewhere/else", "", "", "not in kops's layout"},
		{"s3://bkt/somewhere/else", "s3://bkt/changes/", "s3://bkt/changes", ""},
		{"s3://bkt/c/backups/etcd/main", "s3://bkt/c/backups/etcd/main/changes", "", "outside the backup store"},
		{"s3://bkt/c/backups/etcd/main", "s3://bkt/c/backups/etcd/main", "", "outside the backup store"},
	} {
		got, err := ChangeStoreFor(c.backup, c.change, "changeStore")
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ChangeStoreFor(%q, %q) = %q, %v; want an error containing %q", c.backup, c.change, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ChangeStoreFor(%q, %q) = %q, %v; want %q", c.backup, c.change, got, err, c.want)
		}
	}
}

func TestPointInputs(t *testing.T) {
	ok := MakeBackupInput{Cluster: "c.example.com", StateStore: "s3://bkt", At: "2026-11-30T07:15:00Z"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		in    MakeBackupInput
		field string
	}{
		{MakeBackupInput{Cluster: "c.example.com", StateStore: "s3://bkt"}, "at"},
		{MakeBackupInput{Cluster: "c.example.com", StateStore: "s3://bkt", At: "yesterday"}, "at"},
		{MakeBackupInput{Cluster: "c.example.com", StateStore: "s3://bkt", At: "2026-11-30T07:15:00Z", Revision: 4}, "revision"},
		{MakeBackupInput{Cluster: "c.example.com", StateStore: "s3://bkt", Revision: -1}, "revision"},
		{MakeBackupInput{Cluster: "c.example.com", StateStore: "s3://bkt", Revision: 9, EtcdCluster: "mian"}, "etcdCluster"},
	} {
		err := c.in.Validate()
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%+v: %v; want an error naming %s", c.in, err, c.field)
		}
	}
	r := EtcdManagerRestoreInput{Cluster: "c.example.com", StateStore: "s3://bkt", At: "2026-11-30T07:15:00Z", Backup: "latest",
		Main: RestoreTarget{Endpoints: []string{"https://10.0.1.10:4001"}}, Events: RestoreTarget{Endpoints: []string{"https://10.0.1.10:4002"}},
		Masters: []MasterInput{{Name: "m1", Docker: "tcp://10.0.1.10:2376", IP: "10.0.1.10"}}}
	if err := r.Validate(); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("a restore to a backup and a point: %v", err)
	}
	r.Backup = ""
	if err := r.Validate(); err != nil {
		t.Errorf("a restore to a point: %v", err)
	}
	r.At, r.Main.ChangeStore = "", "s3://bkt/changes"
	if err := r.Validate(); err == nil || !strings.Contains(err.Error(), "main.changeStore") {
		t.Errorf("a change store without a point: %v", err)
	}
	c := ChangeCaptureInput{Cluster: "c.example.com", StateStore: "s3://bkt", Endpoints: []string{"https://10.0.1.10:4001"}, Interval: "2m"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "interval") {
		t.Errorf("an interval over a minute: %v", err)
	}
}
