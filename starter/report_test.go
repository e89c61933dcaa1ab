package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/drill"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

// fleet is a kops state store in a temp dir, filled the way etcd-manager
// and kopsdr lay backups out.
type fleet struct {
	t     *testing.T
	dir   string
	url   string
	now   time.Time
	seq   int
	ctx   context.Context
	cache map[string]backupstore.Store
}

func newFleet(t *testing.T) *fleet {
	dir := t.TempDir()
	return &fleet{t: t, dir: dir, url: "file://" + dir, now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC),
		ctx: context.Background(), cache: map[string]backupstore.Store{}}
}

func (f *fleet) store(cluster, etcd string) backupstore.Store {
	url := fmt.Sprintf("%s/%s/backups/etcd/%s", f.url, cluster, etcd)
	if s, ok := f.cache[url]; ok {
		return s
	}
	s, err := backupstore.Open(f.ctx, url, backupstore.Options{})
	require.NoError(f.t, err)
	f.cache[url] = s
	return s
}

func (f *fleet) put(s backupstore.Store, key, data string) {
	_, err := s.Put(f.ctx, key, strings.NewReader(data), backupstore.PutOptions{})
	require.NoError(f.t, err)
}

// backup writes a complete backup taken age ago; kopsdr's carry kopsdr.json.
func (f *fleet) backup(cluster, etcd string, age time.Duration, byKopsdr bool) string {
	s := f.store(cluster, etcd)
	f.seq++
	at := f.now.Add(-age)
	name := etcdmanager.BackupName(at, f.seq)
	f.put(s, name+"/"+etcdmanager.DataFile, "gzip")
	if byKopsdr {
		f.put(s, name+"/"+etcdmanager.KopsdrFile, "{}")
	}
	require.NoError(f.t, etcdmanager.WriteBackupInfo(f.ctx, s, name,
		etcdmanager.BackupInfo{EtcdVersion: "3.5.9", Timestamp: at.Unix()}, backupstore.PutOptions{}))
	return name
}

func (f *fleet) drilled(cluster, etcd, backup string, passed bool, rto float64) {
	r := drill.Result{Backup: backup, Passed: passed, At: f.now.Add(-time.Minute), Timings: drill.Timings{RTOSeconds: rto}}
	if !passed {
		r.Failures = []drill.Failure{{Check: "required", Reason: "/registry/namespaces/default is missing"}}
	}
	require.NoError(f.t, drill.WriteResult(f.ctx, f.store(cluster, etcd), backup, r))
}

// TestBackupsInMatchesListBackups: the report finds the same backups as
// etcd-manager-ctl list-backups (kopsdr list-backups), newest last.
func TestBackupsInMatchesListBackups(t *testing.T) {
	f := newFleet(t)
	var names []string
	for i, age := range []time.Duration{3 * time.Hour, time.Hour, 5 * time.Minute} {
		names = append(names, f.backup("a.example.com", "main", age, i%2 == 0))
	}
	s := f.store("a.example.com", "main")
	f.drilled("a.example.com", "main", names[1], true, 1)
	f.put(s, etcdmanager.BackupName(f.now, 99)+"/"+etcdmanager.DataFile, "still uploading: no meta yet")
	f.put(s, "control/etcd-cluster-spec", "{}")
	listed, err := etcdmanager.ListBackups(f.ctx, s)
	require.NoError(t, err)
	objs, err := s.List(f.ctx, "")
	require.NoError(t, err)
	var got []string
	for _, b := range backupsIn(objs) {
		got = append(got, b.name)
		assert.Equal(t, b.name == names[1], b.drilled, b.name)
		assert.Equal(t, b.name != names[1], b.byKopsdr, b.name)
	}
	require.Equal(t, listed, got)
	require.Equal(t, names, got)
}

func TestReportFromStateStore(t *testing.T) {
	f := newFleet(t)
	// a: fresh; main drilled and passed.
	aMain := f.backup("a.example.com", "main", 10*time.Minute, true)
	f.drilled("a.example.com", "main", aMain, true, 2.5)
	f.backup("a.example.com", "events", 10*time.Minute, false)
	root, err := backupstore.Open(f.ctx, f.url, backupstore.Options{})
	require.NoError(t, err)
	// b: main three days old, events never backed up.
	f.put(root, "b.example.com/config", "kops cluster spec")
	f.backup("b.example.com", "main", 72*time.Hour, false)
	// c: main's newest failed its drill, the one before passed an hour
	// ago; every events backup failed its drill.
	cGood := f.backup("c.example.com", "main", time.Hour, true)
	f.drilled("c.example.com", "main", cGood, true, 3)
	cBad := f.backup("c.example.com", "main", 5*time.Minute, true)
	f.drilled("c.example.com", "main", cBad, false, 0)
	for i := range maxDrillReads + 2 {
		f.drilled("c.example.com", "events", f.backup("c.example.com", "events", time.Duration(i+1)*time.Minute, true), false, 0)
	}
	// d: a kops cluster with no backups; and what is no cluster.
	f.put(root, "d.example.com/config", "kops cluster spec")
	f.put(root, "Not_A_Cluster/config", "?")
	f.put(root, "README", "?")

	rep, err := reporter{stateStore: f.url, maxAge: 2 * time.Hour, now: f.now}.run(f.ctx)
	require.NoError(t, err)
	byName := map[string]etcdReport{}
	var clusters []string
	for _, c := range rep.Clusters {
		clusters = append(clusters, c.Cluster)
		require.Len(t, c.Etcd, 2)
		assert.Nil(t, c.BackupSchedule, "no Temporal, no schedule state")
		for _, e := range c.Etcd {
			byName[c.Cluster+"/"+e.EtcdCluster] = e
		}
	}
	require.Equal(t, []string{"a.example.com", "b.example.com", "c.example.com", "d.example.com"}, clusters)

	a := byName["a.example.com/main"]
	assert.False(t, a.Stale)
	assert.Equal(t, aMain, a.Newest.Name)
	assert.Equal(t, 600.0, a.Newest.AgeSeconds)
	assert.Equal(t, "kopsdr", a.Newest.TakenBy)
	require.NotNil(t, a.LastDrill)
	assert.True(t, a.LastDrill.Passed)
	assert.Equal(t, 2.5, a.LastDrill.RTOSeconds)
	assert.Equal(t, f.url+"/a.example.com/backups/etcd/main", a.Store)
	assert.Equal(t, "etcd-manager", byName["a.example.com/events"].Newest.TakenBy)
	assert.Nil(t, byName["a.example.com/events"].LastDrill)

	assert.True(t, byName["b.example.com/main"].Stale)
	assert.Equal(t, "newest backup is 3d00h old (max 2h)", byName["b.example.com/main"].Reason)
	assert.Equal(t, "no backup", byName["b.example.com/events"].Reason)

	c := byName["c.example.com/main"]
	assert.False(t, c.Stale, "the backup before the failed one is an hour old")
	assert.Equal(t, cBad, c.Newest.Name)
	assert.Equal(t, cGood, c.NewestGood.Name)
	require.NotNil(t, c.LastDrill)
	assert.Equal(t, cBad, c.LastDrill.Backup)
	assert.False(t, c.LastDrill.Passed)
	assert.Equal(t, "required: /registry/namespaces/default is missing", c.LastDrill.Reason)
	ce := byName["c.example.com/events"]
	assert.True(t, ce.Stale)
	assert.Nil(t, ce.NewestGood)
	assert.Equal(t, fmt.Sprintf("no good backup: the drills of the newest %d drilled backups failed", maxDrillReads), ce.Reason)

	assert.Equal(t, "no backup", byName["d.example.com/main"].Reason)
	assert.Equal(t, []string{
		"b.example.com/main: newest backup is 3d00h old (max 2h)",
		"b.example.com/events: no backup",
		"c.example.com/events: " + ce.Reason,
		"d.example.com/main: no backup",
		"d.example.com/events: no backup",
	}, rep.Stale)

	// A tighter bound: c's main is stale too, and says why.
	rep, err = reporter{stateStore: f.url, only: []string{"c.example.com"}, maxAge: 30 * time.Minute, now: f.now}.run(f.ctx)
	require.NoError(t, err)
	require.Len(t, rep.Clusters, 1)
	assert.Equal(t, "newest good backup "+cGood+" is 1h00m old (max 30m); newer ones failed their drill", rep.Clusters[0].Etcd[0].Reason)
}

// TestReportCommand runs the command as an operator would, with Temporal
// down: the store alone makes the report, and the exit code says stale.
func TestReportCommand(t *testing.T) {
	f := newFleet(t)
	f.now = time.Now().UTC()
	f.backup("a.example.com", "main", time.Minute, true)
	f.backup("a.example.com", "events", time.Minute, true)
	f.backup("b.example.com", "main", 5*time.Hour, false)
	t.Setenv("KOPS_STATE_STORE", "")
	down := "127.0.0.1:1"

	run := func(args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		a := newApp(&out, &errOut)
		root := a.root()
		root.SetArgs(append([]string{"report", "--state-store", f.url, "--address", down}, args...))
		code := a.report(root.Execute())
		return out.String(), errOut.String(), code
	}
	out, errOut, code := run()
	require.Equal(t, exitStale, code, "stderr: %s", errOut)
	assert.Contains(t, out, "a.example.com  main")
	assert.Regexp(t, `b\.example\.com\s+main\s+\S+\s+5h00m\s+etcd-manager\s+never\s+-\s+STALE: newest backup is 5h00m old`, out)
	assert.Regexp(t, `b\.example\.com\s+events\s+-.*STALE: no backup`, out)
	assert.Contains(t, out, "Temporal at "+down+" did not answer")
	assert.Contains(t, errOut, "kopsdr: 2 etcd clusters have no good backup younger than 2h: b.example.com/main")

	out, errOut, code = run("-o", "json", "--max-age", "6h")
	require.Equal(t, exitStale, code)
	var rep fleetReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	assert.False(t, rep.Temporal.Reachable)
	assert.Equal(t, []string{"b.example.com/events: no backup"}, rep.Stale)
	var e map[string]any
	require.NoError(t, json.Unmarshal([]byte(errOut), &e), errOut)
	assert.EqualValues(t, exitStale, e["exitCode"])
	assert.Equal(t, []any{"b.example.com/events: no backup"}, e["stale"])

	_, errOut, code = run("--cluster", "a.example.com")
	require.Equal(t, exitOK, code, errOut)

	empty := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(empty, "x"), 0o755))
	var o, eo bytes.Buffer
	a := newApp(&o, &eo)
	root := a.root()
	root.SetArgs([]string{"report", "--state-store", "file://" + empty, "--address", down})
	require.Equal(t, exitError, a.report(root.Execute()))
	assert.Contains(t, eo.String(), "no kops clusters in state store")
}

// Bad flags of runs and report are refused before Temporal is dialled.
func TestRunsAndReportBadFlags(t *testing.T) {
	temporal := countingListener(t)
	t.Setenv("KOPS_STATE_STORE", "")
	t.Setenv("KOPS_CLUSTER_NAME", "")
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"runs"}, []string{"--cluster", "kops cluster name"}},
		{[]string{"runs", "--cluster", "Bad Name"}, []string{"--cluster", `"Bad Name"`, "DNS name"}},
		{[]string{"runs", "--cluster", "c.example.com", "--etcd", "mian"}, []string{"--etcd", `"mian"`, `"main" or "events"`}},
		{[]string{"runs", "--cluster", "c.example.com", "--limit", "0"}, []string{"--limit", `"0"`, "1 to 1000"}},
		{[]string{"runs", "--cluster", "c.example.com", "--limit", "5000"}, []string{"--limit", `"5000"`}},
		{[]string{"report", "--max-age", "0s"}, []string{"--max-age", `"0s"`, "positive"}},
		{[]string{"report", "--max-age", "-1h"}, []string{"--max-age", "positive"}},
		{[]string{"report", "--max-age", "two hours"}, []string{"--max-age", "Go durations"}},
		{[]string{"report", "--cluster", "ok.example.com,Not_OK"}, []string{"--cluster", `"Not_OK"`}},
		{[]string{"report", "--state-store", "gs://bucket"}, []string{"--state-store", `"gs://bucket"`}},
	} {
		var out, errOut bytes.Buffer
		a := newApp(&out, &errOut)
		root := a.root()
		root.SetArgs(append(tc.args, "--address", temporal.addr))
		require.Equal(t, exitBadInput, a.report(root.Execute()), "%v: %s", tc.args, errOut.String())
		for _, w := range tc.want {
			assert.Contains(t, errOut.String(), w, "%v", tc.args)
		}
		assert.Empty(t, out.String())
	}
	require.Zero(t, temporal.accepted.Load(), "bad input must not reach Temporal")
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		2 * time.Hour: "2h", 30 * time.Minute: "30m", 90 * time.Minute: "1h30m", 90 * time.Second: "1m30s", 45 * time.Second: "45s",
	} {
		assert.Equal(t, want, shortDuration(d))
	}
}

func TestHumanAge(t *testing.T) {
	for secs, want := range map[float64]string{
		0: "0s", 59: "59s", 60: "1m", 3599: "59m", 3600: "1h00m", 3*3600 + 5*60: "3h05m",
		47*3600 + 59*60: "47h59m", 48 * 3600: "2d00h", 10*86400 + 4*3600: "10d04h",
	} {
		assert.Equal(t, want, humanAge(secs), "%v s", secs)
	}
}
