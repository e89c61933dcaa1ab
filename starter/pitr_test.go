package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/kopsdr/kopsdr/internal/changelog"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// TestPITRBadInputStartsNothing: like TestBadInputStartsNothing, for the
// point-in-time commands and flags: exit 2, one line naming the flag and
// the value, before Temporal is dialled.
func TestPITRBadInputStartsNothing(t *testing.T) {
	temporal := countingListener(t)
	dir := t.TempDir()
	state := "file://" + dir + "/state"
	t.Setenv("KOPS_STATE_STORE", "")
	t.Setenv("KOPS_CLUSTER_NAME", "")
	cl := []string{"--cluster", "c.example.com"}
	enable := func(extra ...string) []string {
		return append(append([]string{"pitr", "enable", "--state-store", state, "--endpoints", "https://10.0.1.10:4001"}, cl...), extra...)
	}
	disable := func(extra ...string) []string { return append(append([]string{"pitr", "disable"}, cl...), extra...) }
	status := func(extra ...string) []string {
		return append(append([]string{"pitr", "status", "--state-store", state}, cl...), extra...)
	}
	mk := func(extra ...string) []string {
		return append(append([]string{"make-backup", "--state-store", state}, cl...), extra...)
	}
	restore := func(extra ...string) []string {
		return append([]string{"restore", "etcd-manager", "--cluster", "c.example.com", "--state-store", state,
			"--main-endpoints", "https://10.0.1.10:4001", "--events-endpoints", "https://10.0.1.10:4002",
			"--master", "name=a,docker=tcp://10.0.1.10:2376,ip=10.0.1.10"}, extra...)
	}
	sched := func(extra ...string) []string {
		return append([]string{"schedule", "create", "--cluster", "c.example.com", "--state-store", state,
			"--main-endpoints", "https://10.0.1.10:4001", "--events-endpoints", "https://10.0.1.10:4002", "--every", "1h"}, extra...)
	}
	mainStore := "file://" + dir + "/state/c.example.com/backups/etcd/main"
	cases := []struct {
		name string
		args []string
		want []string
	}{
		// pitr enable
		{"enable without cluster", []string{"pitr", "enable", "--state-store", state, "--endpoints", "https://10.0.1.10:4001"}, []string{"--cluster", "kops cluster name"}},
		{"enable etcd typo", enable("--etcd", "mian"), []string{"--etcd", `"mian"`, `"main" or "events"`}},
		{"enable empty etcd", enable("--etcd", ""), []string{"--etcd", "leave the flag out"}},
		{"enable without endpoints", append([]string{"pitr", "enable", "--state-store", state}, cl...), []string{"--endpoints", "https://10.0.1.10:4001"}},
		{"enable endpoint without scheme", enable("--endpoints", "10.0.1.10:4001"), []string{"--endpoints", `"10.0.1.10:4001"`}},
		{"enable without store", append([]string{"pitr", "enable", "--endpoints", "https://10.0.1.10:4001"}, cl...), []string{"--state-store", "KOPS_STATE_STORE"}},
		{"enable both stores", enable("--backup-store", mainStore), []string{"--backup-store", "not both"}},
		{"enable cert without key", enable("--cert", "/etc/c.crt"), []string{"--cert", "both"}},
		{"enable negative window", enable("--window", "-1h"), []string{"--window", "positive"}},
		{"enable window not a duration", enable("--window", "7d"), []string{"--window", "7d"}},
		{"enable interval too long", enable("--interval", "2m"), []string{"--interval", `"2m0s"`, "at most 60s"}},
		{"enable zero interval", enable("--interval", "0s"), []string{"--interval", "positive"}},
		{"enable change store in the backup store", enable("--change-store", state+"/c.example.com/backups/etcd/main/changes"), []string{"--change-store", "outside the backup store"}},
		{"enable change store scheme", enable("--change-store", "gs://bucket/changes"), []string{"--change-store", `"gs://bucket/changes"`}},
		{"enable change store without parent", enable("--change-store", "file:///nonexistent/dir/changes"), []string{"--change-store", "mkdir -p /nonexistent/dir"}},
		{"enable backup store not in kops layout", append([]string{"pitr", "enable", "--endpoints", "https://10.0.1.10:4001", "--backup-store", "file://" + dir + "/main"}, cl...), []string{"--change-store", "kops's layout"}},
		// pitr disable
		{"disable without cluster", []string{"pitr", "disable"}, []string{"--cluster"}},
		{"disable bad cluster", []string{"pitr", "disable", "--cluster", "My_Cluster"}, []string{"--cluster", `"My_Cluster"`}},
		{"disable etcd typo", disable("--etcd", "both"), []string{"--etcd", `"both"`}},
		{"disable empty etcd", disable("--etcd", ""), []string{"--etcd", "leave the flag out"}},
		// pitr status
		{"status without store", append([]string{"pitr", "status"}, cl...), []string{"--state-store"}},
		{"status etcd typo", status("--etcd", "evnets"), []string{"--etcd", `"evnets"`}},
		{"status change store in the backup store", status("--change-store", mainStore+"/x"), []string{"--change-store", "outside the backup store"}},
		{"status file store without parent", append([]string{"pitr", "status", "--state-store", "file:///nonexistent/dir/state"}, cl...), []string{"--state-store", "mkdir -p /nonexistent/dir"}},
		// make-backup
		{"make-backup neither at nor revision", mk(), []string{"--at", "--revision"}},
		{"make-backup both at and revision", mk("--at", "2026-11-30T07:15:00Z", "--revision", "42"), []string{"--revision", `"42"`, "not both"}},
		{"make-backup bad time", mk("--at", "yesterday"), []string{"--at", `"yesterday"`, "RFC 3339"}},
		{"make-backup time without zone", mk("--at", "2026-11-30T07:15:00"), []string{"--at", "RFC 3339"}},
		{"make-backup negative revision", mk("--revision", "-5"), []string{"--revision", `"-5"`, "positive"}},
		{"make-backup revision not a number", mk("--revision", "latest"), []string{"--revision", "latest"}},
		{"make-backup etcd typo", mk("--at", "2026-11-30T07:15:00Z", "--etcd", "both"), []string{"--etcd", `"both"`}},
		{"make-backup without store", append([]string{"make-backup", "--at", "2026-11-30T07:15:00Z"}, cl...), []string{"--state-store"}},
		{"make-backup change store in the backup store", mk("--revision", "42", "--change-store", mainStore+"/c"), []string{"--change-store", "outside"}},
		// restore etcd-manager to a point
		{"restore bad at", restore("--at", "noon"), []string{"--at", `"noon"`, "RFC 3339"}},
		{"restore at and revision", restore("--at", "2026-11-30T07:15:00Z", "--revision", "42"), []string{"--revision", "not both"}},
		{"restore at and backup", restore("--at", "2026-11-30T07:15:00Z", "--backup", "latest"), []string{"--backup", "a backup or to a point"}},
		{"restore revision and main backup", restore("--revision", "42", "--main-backup", "latest"), []string{"--main-backup", "a backup or to a point"}},
		{"restore negative revision", restore("--revision", "-1"), []string{"--revision", "positive"}},
		{"restore change store without a point", restore("--main-change-store", "s3://b/changes"), []string{"--main-change-store", "--at or --revision"}},
		{"restore events change store in its backup store", restore("--at", "2026-11-30T07:15:00Z", "--events-change-store", state+"/c.example.com/backups/etcd/events/c"),
			[]string{"--events-change-store", "outside the backup store"}},
		// schedule create --pitr
		{"schedule pitr-events without pitr", sched("--pitr-events"), []string{"--pitr-events", "--pitr too"}},
		{"schedule pitr with volume snapshots", []string{"schedule", "create", "--cluster", "c.example.com", "--volume-snapshots", "--region", "eu-central-1", "--every", "1h", "--pitr"},
			[]string{"--pitr", "--volume-snapshots"}},
		{"schedule main change store without pitr", sched("--main-change-store", "s3://b/changes"), []string{"--main-change-store", "--pitr"}},
		{"schedule events change store without pitr-events", sched("--pitr", "--events-change-store", "s3://b/changes"), []string{"--events-change-store", "--pitr-events"}},
		{"schedule pitr main store not in kops layout", []string{"schedule", "create", "--cluster", "c.example.com", "--main-backup-store", "file://" + dir + "/main",
			"--events-backup-store", "file://" + dir + "/events", "--main-endpoints", "https://10.0.1.10:4001", "--events-endpoints", "https://10.0.1.10:4002", "--every", "1h", "--pitr"},
			[]string{"--main-change-store", "kops's layout"}},
		{"schedule pitr change store in the backup store", sched("--pitr", "--main-change-store", mainStore+"/c"), []string{"--main-change-store", "outside the backup store"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			a := newApp(&out, &errOut)
			root := a.root()
			root.SetArgs(append(tc.args, "--address", temporal.addr))
			code := a.report(root.Execute())
			msg := errOut.String()
			require.Equal(t, exitBadInput, code, "stderr: %s", msg)
			require.Equal(t, 1, strings.Count(strings.TrimSpace(msg), "\n")+1, "one line: %q", msg)
			for _, w := range tc.want {
				require.Contains(t, msg, w)
			}
			require.Empty(t, out.String(), "nothing on stdout")
		})
	}
	require.Zero(t, temporal.accepted.Load(), "bad input must not reach Temporal")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "bad input must not write a file")
}

// TestPITRHelp: each new command and flag says what it does, and --at says
// exactly what a time means.
func TestPITRHelp(t *testing.T) {
	const atMeaning = "--at TIME means the last revision kopsdr had observed by that time"
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"pitr", "--help"}, []string{"enable", "disable", "status", "pitr/<cluster>/<etcd>"}},
		{[]string{"pitr", "enable", "--help"}, []string{"--endpoints", "--cacert", "--change-store", "--window", "--interval", "--state-store", "exit code 2"}},
		{[]string{"pitr", "disable", "--help"}, []string{"--cluster", "--etcd", "end of its chain", "Exit code 1"}},
		{[]string{"pitr", "status", "--help"}, []string{"--change-store", "lag", "gaps", "earliest"}},
		{[]string{"make-backup", "--help"}, []string{atMeaning, "--revision", "--wait", "make-backup/<cluster>/<etcd>/<point>"}},
		{[]string{"restore", "etcd-manager", "--help"}, []string{"--at means the last revision kopsdr had observed by that time", "--revision", "--main-change-store", "--events-change-store"}},
		{[]string{"schedule", "create", "--help"}, []string{"--pitr", "--pitr-events", "all or nothing"}},
		{[]string{"schedule", "delete", "--help"}, []string{"disables its change capture"}},
	} {
		var out, errOut bytes.Buffer
		a := newApp(&out, &errOut)
		root := a.root()
		root.SetArgs(tc.args)
		require.Equal(t, exitOK, a.report(root.Execute()), errOut.String())
		for _, w := range tc.want {
			require.Contains(t, out.String(), w, strings.Join(tc.args, " "))
		}
	}
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestDescribeChangeLog: two chains with a gap between, the second open:
// lag, gaps, bytes, rate and the restorable points come from the listing.
func TestDescribeChangeLog(t *testing.T) {
	t0 := mustTime("2026-11-28T00:00:00Z")
	chains := []changelog.ChainState{
		{ // listed newest first: the view orders by time
			Chain: changelog.Chain{ID: "b", StartRevision: 501, BaseBackup: "2026-11-29T00:00:00Z-000002", BaseRevision: 500, Started: t0.Add(24 * time.Hour)},
			Head:  &changelog.Head{Revision: 700, Observed: t0.Add(48 * time.Hour)},
			Segments: []changelog.SegmentInfo{
				{Key: "b1", First: 501, Last: 600, LastObserved: t0.Add(30 * time.Hour), Bytes: 3000},
				{Key: "b2", First: 601, Last: 700, LastObserved: t0.Add(40 * time.Hour), Bytes: 3000},
			},
			LastRevision: 700,
		},
		{
			Chain: changelog.Chain{ID: "a", StartRevision: 101, BaseBackup: "2026-11-28T00:00:00Z-000001", BaseRevision: 100, Started: t0},
			End:   &changelog.End{Reason: changelog.EndCompacted, LastRevision: 300, At: t0.Add(13 * time.Hour), Detail: "compacted at 450"},
			Segments: []changelog.SegmentInfo{
				{Key: "a1", First: 101, Last: 300, LastObserved: t0.Add(12 * time.Hour), Bytes: 6000},
			},
			LastRevision: 300,
		},
	}
	now := t0.Add(48*time.Hour + 3*time.Second)
	v := describeChangeLog(chains, now)

	require.Len(t, v.Chains, 2)
	require.Equal(t, "a", v.Chains[0].ID)
	require.Nil(t, v.Chains[0].LagSeconds, "an ended chain has no lag")
	require.NotNil(t, v.Chains[1].LagSeconds)
	require.InDelta(t, 3, *v.Chains[1].LagSeconds, 0.001, "lag: now minus the head's observation")
	require.Equal(t, int64(700), v.Chains[1].LastRevision)

	require.Equal(t, []api.Gap{{After: "a", Reason: "compacted: compacted at 450", FromRev: 301, ToRev: 500,
		FromTime: t0.Add(12 * time.Hour), ToTime: t0.Add(24 * time.Hour), NextChain: "b"}}, v.Gaps)

	require.Equal(t, 3, v.Segments)
	require.Equal(t, int64(12000), v.Bytes)
	require.Equal(t, (36 * time.Hour).Seconds(), v.CapturedSeconds, "12h of a and 24h of b; the gap is not capture")
	require.Equal(t, int64(8000), v.BytesPerDay)

	require.Equal(t, &changelog.Point{Chain: "a", Revision: 101}, v.Earliest)
	require.Equal(t, &changelog.Point{Chain: "b", Revision: 700, Observed: t0.Add(48 * time.Hour)}, v.Newest)

	var text bytes.Buffer
	v.Cluster, v.EtcdCluster, v.ChangeStore = "c.example.com", "main", "s3://b/c.example.com/backups/kopsdr-changes/main"
	v.Temporal = captureState{WorkflowID: "pitr/c.example.com/main", Address: "127.0.0.1:7233", Error: "connection refused"}
	v.text(&text)
	for _, w := range []string{"gap: revisions 301 to 500", "compacted", "did not answer", "read from the store", "7.8 KiB per day", "from revision 101 to revision 700"} {
		require.Contains(t, text.String(), w)
	}
}

// TestDescribeChangeLogStopped: capture disabled leaves an open gap from
// the last observation on; a chain without changes restores nothing.
func TestDescribeChangeLogStopped(t *testing.T) {
	t0 := mustTime("2026-11-28T00:00:00Z")
	v := describeChangeLog([]changelog.ChainState{{
		Chain:        changelog.Chain{ID: "a", StartRevision: 101, Started: t0},
		End:          &changelog.End{Reason: changelog.EndDisabled, LastRevision: 100, At: t0.Add(time.Minute)},
		LastRevision: 100,
	}}, t0.Add(time.Hour))
	require.Len(t, v.Gaps, 1)
	require.Equal(t, api.Gap{After: "a", Reason: "disabled", FromRev: 101, FromTime: t0}, v.Gaps[0])
	require.Nil(t, v.Earliest)
	require.Nil(t, v.Newest)
	require.Zero(t, v.BytesPerDay, "no rate from under an hour")

	empty := describeChangeLog(nil, t0)
	b, err := json.Marshal(empty)
	require.NoError(t, err)
	require.Contains(t, string(b), `"chains":[]`)
	require.Contains(t, string(b), `"gaps":[]`)
}

// TestRestorePlanShowsPoint: the plan of a restore to a point says how
// the backup will be made and from which bases.
func TestRestorePlanShowsPoint(t *testing.T) {
	var w bytes.Buffer
	printRestorePlan(&w, api.RestorePlan{Backups: []api.PlannedBackup{{
		EtcdCluster: "main", Store: "s3://b/c/backups/etcd/main", Backup: "2026-11-30T06:00:00Z-000001", Age: "1h15m0s", Bytes: 1 << 20,
		PointInTime: &api.PointPlan{Chain: "ch", Revision: 1234, Observed: mustTime("2026-11-30T07:15:00Z"), ReplayFrom: 1001,
			Bases:       []api.PlannedBase{{Backup: "2026-11-30T06:00:00Z-000001", Revision: 1000, UpTo: 1010}, {Backup: "2026-11-30T00:00:00Z-000001", Revision: 500}},
			Description: "restore full backup 2026-11-30T06:00:00Z-000001 (revision 1000) and replay revisions 1001 to 1234 from chain ch"},
	}}})
	out := w.String()
	for _, want := range []string{"point in time: revision 1234", "2026-11-30T07:15:00Z", "replay revisions 1001 to 1234 from chain ch",
		"2026-11-30T06:00:00Z-000001 (revision 1000 to 1010), 2026-11-30T00:00:00Z-000001 (revision >= 500)", "pre-flight checked base 2026-11-30T06:00:00Z-000001"} {
		require.Contains(t, out, want)
	}
	require.NotContains(t, out, "made backup")
}

// fakeTemporal answers what the pitr commands ask of Temporal: starts,
// descriptions, queries, cancellations and schedules, and records them.
type fakeTemporal struct {
	client.Client
	mu        sync.Mutex
	running   map[string]bool // workflow id -> running
	closed    map[string]enumspb.WorkflowExecutionStatus
	failStart map[string]error
	started   []string
	cancelled []string
	schedules *fakeSchedules
	stopped   chan struct{} // closed: a cancelled workflow has stopped
}

func newFakeTemporal() *fakeTemporal {
	f := &fakeTemporal{running: map[string]bool{}, closed: map[string]enumspb.WorkflowExecutionStatus{},
		failStart: map[string]error{}, schedules: &fakeSchedules{}, stopped: make(chan struct{})}
	close(f.stopped)
	return f
}

func (f *fakeTemporal) Close() {}

func (f *fakeTemporal) ExecuteWorkflow(_ context.Context, o client.StartWorkflowOptions, _ any, _ ...any) (client.WorkflowRun, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failStart[o.ID]; err != nil {
		return nil, err
	}
	if f.running[o.ID] {
		return nil, serviceerror.NewWorkflowExecutionAlreadyStarted("already started", "", "run-1")
	}
	f.running[o.ID] = true
	f.started = append(f.started, o.ID)
	return fakeRun{id: o.ID}, nil
}

func (f *fakeTemporal) DescribeWorkflowExecution(_ context.Context, id, _ string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.closed[id]
	if f.running[id] {
		st, ok = enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, true
	}
	if !ok {
		return nil, serviceerror.NewNotFound("workflow not found")
	}
	return &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{Status: st}}, nil
}

func (f *fakeTemporal) QueryWorkflow(_ context.Context, _, _, _ string, _ ...any) (converter.EncodedValue, error) {
	p, err := converter.GetDefaultDataConverter().ToPayloads(api.CaptureStatus{Step: "capture", Chain: "chain-7"})
	if err != nil {
		return nil, err
	}
	return fakeValue{p: p}, nil
}

func (f *fakeTemporal) CancelWorkflow(_ context.Context, id, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancelled = append(f.cancelled, id)
	return nil
}

// GetWorkflow's run stops once f.stopped is closed: then the cancelled
// workflows are cancelled.
func (f *fakeTemporal) GetWorkflow(_ context.Context, id, _ string) client.WorkflowRun {
	return fakeRun{id: id, get: func(ctx context.Context) error {
		select {
		case <-f.stopped:
		case <-ctx.Done():
			return ctx.Err()
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.running[id] {
			delete(f.running, id)
			f.closed[id] = enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED
		}
		return errors.New("canceled")
	}}
}

func (f *fakeTemporal) ScheduleClient() client.ScheduleClient { return f.schedules }

type fakeRun struct {
	client.WorkflowRun
	id  string
	get func(context.Context) error
}

func (r fakeRun) GetID() string    { return r.id }
func (r fakeRun) GetRunID() string { return "run-1" }
func (r fakeRun) Get(ctx context.Context, _ any) error {
	if r.get == nil {
		return nil
	}
	return r.get(ctx)
}

type fakeValue struct {
	converter.EncodedValue
	p *commonpb.Payloads
}

func (v fakeValue) HasValue() bool { return true }
func (v fakeValue) Get(ptr any) error {
	return converter.GetDefaultDataConverter().FromPayloads(v.p, ptr)
}

// fakeSchedules records schedules created and deleted.
type fakeSchedules struct {
	client.ScheduleClient
	mu      sync.Mutex
	created []string
	deleted []string
}

func (s *fakeSchedules) Create(_ context.Context, o client.ScheduleOptions) (client.ScheduleHandle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.created = append(s.created, o.ID)
	return fakeSchedule{s: s, id: o.ID}, nil
}

func (s *fakeSchedules) GetHandle(_ context.Context, id string) client.ScheduleHandle {
	return fakeSchedule{s: s, id: id}
}

type fakeSchedule struct {
	client.ScheduleHandle
	s  *fakeSchedules
	id string
}

func (h fakeSchedule) Delete(context.Context) error {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	h.s.deleted = append(h.s.deleted, h.id)
	return nil
}

// runFake runs the CLI against f and returns the exit code, stdout and stderr.
func runFake(t *testing.T, f *fakeTemporal, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	a := newApp(&out, &errOut)
	a.fakeTemporal = func() client.Client { return f }
	root := a.root()
	root.SetArgs(args)
	return a.report(root.Execute()), out.String(), errOut.String()
}

// TestPITREnableTwice: the second enable of a running capture is refused
// as bad input, naming the workflow and what to do instead.
func TestPITREnableTwice(t *testing.T) {
	t.Setenv("KOPS_STATE_STORE", "")
	t.Setenv("KOPS_CLUSTER_NAME", "")
	f := newFakeTemporal()
	args := []string{"pitr", "enable", "--cluster", "c.example.com", "--state-store", "file://" + t.TempDir() + "/state", "--endpoints", "https://10.0.1.10:4001"}
	code, out, errOut := runFake(t, f, args...)
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "started change capture pitr/c.example.com/main")
	require.Contains(t, out, "/state/c.example.com/backups/kopsdr-changes/main")

	code, out, errOut = runFake(t, f, args...)
	require.Equal(t, exitBadInput, code)
	require.Empty(t, out)
	for _, w := range []string{"already running", "pitr/c.example.com/main", "kopsdr pitr status --cluster c.example.com --etcd main", "kopsdr pitr disable --cluster c.example.com --etcd main"} {
		require.Contains(t, errOut, w)
	}
	require.Equal(t, []string{"pitr/c.example.com/main"}, f.started)
}

// TestPITRDisable: a running capture is cancelled and awaited; one not
// running is an error that says so, and nothing is cancelled.
func TestPITRDisable(t *testing.T) {
	t.Setenv("KOPS_CLUSTER_NAME", "")
	f := newFakeTemporal()
	code, out, errOut := runFake(t, f, "pitr", "disable", "--cluster", "c.example.com")
	require.Equal(t, exitError, code)
	require.Empty(t, out)
	require.Contains(t, errOut, "pitr/c.example.com/main is not running")
	require.Empty(t, f.cancelled)

	f.running["pitr/c.example.com/events"] = true
	code, out, errOut = runFake(t, f, "pitr", "disable", "--cluster", "c.example.com", "--etcd", "events")
	require.Equal(t, exitOK, code, errOut)
	require.Equal(t, []string{"pitr/c.example.com/events"}, f.cancelled)
	require.Contains(t, out, "disabled change capture pitr/c.example.com/events: chain chain-7 was ended (reason disabled)")

	code, _, errOut = runFake(t, f, "pitr", "disable", "--cluster", "c.example.com", "--etcd", "events")
	require.Equal(t, exitError, code)
	require.Contains(t, errOut, "its last run cancelled")
}

// TestPITRDisableWaitIsBounded: a capture that does not stop is not
// waited on for ever.
func TestPITRDisableWaitIsBounded(t *testing.T) {
	t.Setenv("KOPS_CLUSTER_NAME", "")
	defer func(d time.Duration) { disableWait = d }(disableWait)
	disableWait = 50 * time.Millisecond
	f := newFakeTemporal()
	f.stopped = make(chan struct{}) // never stops
	f.running["pitr/c.example.com/main"] = true
	code, _, errOut := runFake(t, f, "pitr", "disable", "--cluster", "c.example.com")
	require.Equal(t, exitError, code)
	require.Contains(t, errOut, "has not closed within 50ms")
}

// TestMakeBackupIDs: the point in the workflow id is the time in compact
// form or r<revision>.
func TestMakeBackupIDs(t *testing.T) {
	t.Setenv("KOPS_CLUSTER_NAME", "")
	t.Setenv("KOPS_STATE_STORE", "")
	f := newFakeTemporal()
	state := "file://" + t.TempDir() + "/state"
	code, out, errOut := runFake(t, f, "make-backup", "--cluster", "c.example.com", "--state-store", state, "--at", "2026-11-30T08:15:00+01:00")
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "started make-backup/c.example.com/main/20261130T071500Z")
	code, _, errOut = runFake(t, f, "make-backup", "--cluster", "c.example.com", "--state-store", state, "--etcd", "events", "--revision", "42")
	require.Equal(t, exitOK, code, errOut)
	require.Equal(t, []string{"make-backup/c.example.com/main/20261130T071500Z", "make-backup/c.example.com/events/r42"}, f.started)

	code, _, errOut = runFake(t, f, "make-backup", "--cluster", "c.example.com", "--state-store", state, "--etcd", "events", "--revision", "42")
	require.Equal(t, exitError, code)
	require.Contains(t, errOut, "already running")
}

func schedArgs(dir string, extra ...string) []string {
	return append([]string{"schedule", "create", "--cluster", "c.example.com", "--state-store", "file://" + dir + "/state",
		"--main-endpoints", "https://10.0.1.10:4001", "--events-endpoints", "https://10.0.1.10:4002", "--every", "1h"}, extra...)
}

// TestSchedulePITR: --pitr and --pitr-events start both captures with
// the schedule; a capture already running is left alone.
func TestSchedulePITR(t *testing.T) {
	t.Setenv("KOPS_CLUSTER_NAME", "")
	t.Setenv("KOPS_STATE_STORE", "")
	f := newFakeTemporal()
	f.running["pitr/c.example.com/events"] = true
	code, out, errOut := runFake(t, f, schedArgs(t.TempDir(), "--pitr", "--pitr-events", "-o", "json")...)
	require.Equal(t, exitOK, code, errOut)
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	require.Equal(t, "backup/c.example.com", res["scheduleId"])
	require.Equal(t, []any{"pitr/c.example.com/main"}, res["captureWorkflowIds"])
	require.Equal(t, []any{"pitr/c.example.com/events"}, res["captureAlreadyRunning"])
	require.Equal(t, []string{"backup/c.example.com", "drill/c.example.com"}, f.schedules.created)
	require.Empty(t, f.schedules.deleted)
	require.Empty(t, f.cancelled)
}

// TestSchedulePITRAllOrNothing: when a capture cannot start, the
// schedules and the captures this command created are removed again.
func TestSchedulePITRAllOrNothing(t *testing.T) {
	t.Setenv("KOPS_CLUSTER_NAME", "")
	t.Setenv("KOPS_STATE_STORE", "")
	f := newFakeTemporal()
	f.failStart["pitr/c.example.com/events"] = errors.New("namespace throttled")
	code, out, errOut := runFake(t, f, schedArgs(t.TempDir(), "--pitr", "--pitr-events")...)
	require.Equal(t, exitError, code)
	require.Empty(t, out)
	for _, w := range []string{"namespace throttled", "removed again", "schedule backup/c.example.com", "schedule drill/c.example.com", "pitr/c.example.com/main"} {
		require.Contains(t, errOut, w)
	}
	require.Equal(t, []string{"backup/c.example.com", "drill/c.example.com"}, f.schedules.deleted)
	require.Equal(t, []string{"pitr/c.example.com/main"}, f.cancelled)
}

// TestScheduleWithoutPITR: without --pitr nothing but the schedules.
func TestScheduleWithoutPITR(t *testing.T) {
	t.Setenv("KOPS_CLUSTER_NAME", "")
	t.Setenv("KOPS_STATE_STORE", "")
	f := newFakeTemporal()
	code, out, errOut := runFake(t, f, schedArgs(t.TempDir())...)
	require.Equal(t, exitOK, code, errOut)
	require.Equal(t, "created schedule backup/c.example.com\ncreated schedule drill/c.example.com (a restore drill of the newest backups every 24h0m0s)\n", out)
	require.Empty(t, f.started)
}

// TestScheduleDeleteDisablesCapture: deleting a cluster's schedules
// cancels its running captures; a schedule id alone leaves them.
func TestScheduleDeleteDisablesCapture(t *testing.T) {
	f := newFakeTemporal()
	f.running["pitr/c.example.com/main"] = true
	code, _, errOut := runFake(t, f, "schedule", "delete", "backup/c.example.com")
	require.Equal(t, exitOK, code, errOut)
	require.Empty(t, f.cancelled)

	code, out, errOut := runFake(t, f, "schedule", "delete", "c.example.com")
	require.Equal(t, exitOK, code, errOut)
	require.Equal(t, []string{"pitr/c.example.com/main"}, f.cancelled)
	require.Contains(t, out, "delete: backup/c.example.com\n")
	require.Contains(t, out, "disabled change capture pitr/c.example.com/main")
}
