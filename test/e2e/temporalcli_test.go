package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	operatorservice "go.temporal.io/api/operatorservice/v1"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/ebs"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/test/etcdtest"
	"github.com/kopsdr/kopsdr/test/fakeec2"
	"github.com/kopsdr/kopsdr/test/s3test"
	"github.com/kopsdr/kopsdr/test/testenv"
	"github.com/kopsdr/kopsdr/workflows"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// tcliSkipped are the README's `temporal workflow` commands this test does
// not run, each with the reason. Every other command must be run below: a
// new example fails the test until it is run here or listed here.
var tcliSkipped = map[string]string{
	// Its masters are containerd masters reached over SSH through a kops
	// bastion (ssh.jump): the containerd harness (test/cmasters) has no
	// bastion, so the input could only run with its ssh settings rewritten,
	// which is not the example any more. The same restore without a jump
	// host runs in TestContainerdRestoreOverSSH.
	"start EtcdManagerRestore containerd": "needs a bastion host the tests do not have",
}

// The README's region: the fake EC2 serves it.
const tcliRegion = "eu-central-1"

// tcliStateStore replaces the README's s3://my.clusters: gofakes3 refuses
// bucket names with dots, which S3 allows.
const tcliStateStore = "s3://" + bucket

// TestREADMETemporalCLI runs the README's `temporal workflow start`, `query`
// and `update execute` examples with the real temporal CLI against the
// test Temporal server and kopsdr's real worker, so that an operator who
// pastes them gets what the README says. The commands are read from
// README.md, run with their flags, workflow types and ids as written; only
// the values that name the operator's environment in the JSON inputs (etcd
// endpoints, TLS file paths, masters, a state store on this machine, the
// cluster name the Docker harness chose, a snapshot time) are replaced by
// the fixtures', key by key.
func TestREADMETemporalCLI(t *testing.T) {
	bin := tcliBinary(t)
	cmds := tcliREADMECommands(t)
	byKind := map[string]tcliCommand{}
	for _, c := range cmds {
		k := tcliKind(t, c)
		if prev, dup := byKind[k]; dup {
			t.Fatalf("README.md:%d and :%d are both %q: this test runs each example once; tell them apart in tcliKind", prev.Line, c.Line, k)
		}
		byKind[k] = c
	}
	ran := map[string]bool{}
	take := func(t *testing.T, kind string) tcliCommand {
		t.Helper()
		c, ok := byKind[kind]
		if !ok {
			t.Fatalf("README has no %q example any more; update this test", kind)
		}
		ran[kind] = true
		return c
	}
	// Every README command is run or skipped on purpose, so a new example
	// is named. Checked once every step passed: a failed step leaves the
	// later ones unrun.
	t.Cleanup(func() {
		for k, c := range byKind {
			if why, skip := tcliSkipped[k]; skip {
				t.Logf("README.md:%d (%s) not run: %s", c.Line, k, why)
			} else if !ran[k] && !t.Failed() {
				t.Errorf("README.md:%d (%s) is not run by TestREADMETemporalCLI: run it or add it to tcliSkipped with the reason: %s", c.Line, k, c.Text)
			}
		}
		for k := range tcliSkipped {
			if _, ok := byKind[k]; !ok {
				t.Errorf("tcliSkipped lists %q, which the README does not have any more", k)
			}
		}
	})

	// The environment the in-process worker reads, as a real worker would:
	// S3 and EC2 endpoints on this machine. Set before the worker starts.
	s3srv := s3test.StartGoFakeS3(t, bucket)
	s3srv.Setenv(t)
	ec2 := fakeec2.Start(t, fakeec2.WithRegion(tcliRegion), fakeec2.WithTransitionDelay(100*time.Millisecond))
	t.Setenv("AWS_ENDPOINT_URL_EC2", ec2.URL())
	// The Temporal server, the worker, and the Docker masters with kopsdr
	// backups and later changes for a restore to undo.
	f := newRestoreFixture(t, true)
	r := &tcliRunner{bin: bin, tp: f.tp, home: t.TempDir()}
	ctx := testenv.Context(t, 10*time.Minute)

	t.Run("search attributes", func(t *testing.T) {
		// What an operator runs once per namespace (workflows/api), with
		// the same CLI.
		words, err := tcliShellWords(api.SearchAttributeCreateCommand(f.tp.Namespace))
		require.NoError(t, err)
		require.Equal(t, "temporal", words[0])
		r.run(t, ctx, words[1:]...)
		resp, err := f.tp.Client.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: f.tp.Namespace})
		require.NoError(t, err)
		for _, name := range api.SearchAttrs {
			require.Equal(t, enumspb.INDEXED_VALUE_TYPE_KEYWORD, resp.CustomAttributes[name], name)
		}
	})

	t.Run("ClusterBackup", func(t *testing.T) {
		// Real etcd with TLS, one member each as the example lists one
		// endpoint each; the cluster stays as written.
		k := startKopsCluster(t, 1)
		putKubernetesBasics(t, k.main.Client(t)) // for the drill below
		c := take(t, "start ClusterBackup")
		args := append([]string{}, c.Args...)
		in := tcliDecodeInput(t, args[tcliFlag(args, "input")])
		require.Equal(t, k.name, in["cluster"], "the README's cluster is the fixture's")
		tcliReplace(t, in, "stateStore", tcliStateStore)
		tcliReplace(t, tcliObject(t, in, "main"), "endpoints", k.main.Endpoints)
		tcliReplace(t, tcliObject(t, in, "events"), "endpoints", k.events.Endpoints)
		cc := k.main.ConnConfig()
		tcliReplace(t, in, "cacert", cc.CACert)
		tcliReplace(t, in, "cert", cc.Cert)
		tcliReplace(t, in, "key", cc.Key)
		args[tcliFlag(args, "input")] = tcliEncode(t, in)
		out := r.run(t, ctx, args...)

		var res workflows.ClusterBackupResult
		require.NoError(t, temporalconn.Await(ctx, f.tp.Client.GetWorkflow(ctx, tcliFlagValue(args, "workflow-id"), tcliRunID(t, out)), &res))
		for _, ec := range []struct {
			name    string
			res     *workflows.EtcdBackupResult
			cluster *etcdtest.Cluster
			prefix  string
		}{{"main", res.Main, k.main, "/registry/pods/"}, {"events", res.Events, k.events, "/registry/events/"}} {
			require.NotNil(t, ec.res, ec.name)
			storeURL := fmt.Sprintf("%s/%s/backups/etcd/%s", in["stateStore"], k.name, ec.name)
			require.Equal(t, storeURL, ec.res.Store)
			store, err := backupstore.Open(ctx, storeURL, backupstore.Options{})
			require.NoError(t, err)
			names, err := etcdmanager.ListBackups(ctx, store)
			require.NoError(t, err)
			require.Equal(t, []string{ec.res.Backup}, names, "the backup is in the state store where etcd-manager looks")
			// And it holds the data: etcd started from it serves every key.
			requireSameKeys(t, ctx, ec.cluster, etcdtest.StartFromSnapshot(t, downloadSnapshot(t, ctx, store, ec.res.Backup)), ec.prefix)
		}
	})

	t.Run("RestoreDrill", func(t *testing.T) {
		// The newest backup of main, just taken above, restored on the worker.
		c := take(t, "start RestoreDrill")
		args := append([]string{}, c.Args...)
		in := tcliDecodeInput(t, args[tcliFlag(args, "input")])
		tcliReplace(t, in, "stateStore", tcliStateStore)
		args[tcliFlag(args, "input")] = tcliEncode(t, in)
		out := r.run(t, ctx, args...)
		var res api.RestoreDrillResult
		require.NoError(t, temporalconn.Await(ctx, f.tp.Client.GetWorkflow(ctx, tcliFlagValue(args, "workflow-id"), tcliRunID(t, out)), &res))
		require.Len(t, res.Drills, 1)
		require.True(t, res.Drills[0].Passed, "%v", res.Drills[0].Failures)
		require.True(t, res.Drills[0].CountsCompared)
	})

	t.Run("ChangeCapture and MakeBackup", func(t *testing.T) {
		// Capture main of a one-member cluster, change it, and make a backup
		// at a second after the change, as the README shows.
		k := startKopsCluster(t, 1)
		c := take(t, "start ChangeCapture")
		args := append([]string{}, c.Args...)
		in := tcliDecodeInput(t, args[tcliFlag(args, "input")])
		require.Equal(t, k.name, in["cluster"])
		tcliReplace(t, in, "stateStore", tcliStateStore)
		tcliReplace(t, in, "endpoints", k.main.Endpoints)
		cc := k.main.ConnConfig()
		tcliReplace(t, in, "cacert", cc.CACert)
		tcliReplace(t, in, "cert", cc.Cert)
		tcliReplace(t, in, "key", cc.Key)
		args[tcliFlag(args, "input")] = tcliEncode(t, in)
		r.run(t, ctx, args...)
		captureID := tcliFlagValue(args, "workflow-id")
		t.Cleanup(func() { _ = f.tp.Client.CancelWorkflow(context.Background(), captureID, "") })
		changes := openStore(t, ctx, fmt.Sprintf("%s/%s/backups/kopsdr-changes/main", tcliStateStore, k.name))
		waitChains(t, ctx, changes, 1)
		put, err := k.main.Client(t).Put(ctx, "/registry/configmaps/default/readme", "v")
		require.NoError(t, err)
		waitDurable(t, ctx, changes, put.Header.Revision)
		at := time.Now().UTC()

		c = take(t, "start MakeBackup")
		args = append([]string{}, c.Args...)
		in = tcliDecodeInput(t, args[tcliFlag(args, "input")])
		tcliReplace(t, in, "stateStore", tcliStateStore)
		tcliReplace(t, in, "at", at.Format(time.RFC3339Nano))
		args[tcliFlag(args, "input")] = tcliEncode(t, in)
		out := r.run(t, ctx, args...)
		var res api.MakeBackupResult
		require.NoError(t, temporalconn.Await(ctx, f.tp.Client.GetWorkflow(ctx, tcliFlagValue(args, "workflow-id"), tcliRunID(t, out)), &res))
		require.Equal(t, put.Header.Revision, res.Revision, "the last revision observed by the time given")
	})

	// The etcd-manager restore example runs on the Docker masters. Its
	// workflow id must be restore/<cluster>, so the harness's cluster name
	// replaces the README's in the id too (the shape stays).
	restore := take(t, "start EtcdManagerRestore docker")
	readmeCluster := tcliDecodeInput(t, restore.Args[tcliFlag(restore.Args, "input")])["cluster"].(string)
	restoreID := func(t *testing.T, args []string) []string {
		args = append([]string{}, args...)
		i := tcliFlag(args, "workflow-id")
		require.Equal(t, api.RestoreWorkflowID(readmeCluster), args[i])
		args[i] = api.RestoreWorkflowID(f.c.Name)
		return args
	}
	restoreArgs := func(t *testing.T, edit func(in map[string]any)) []string {
		args := restoreID(t, restore.Args)
		in := tcliDecodeInput(t, args[tcliFlag(args, "input")])
		tcliReplace(t, in, "cluster", f.c.Name)
		// The harness's state store is a folder the masters mount, laid out
		// as kops lays out S3: <stateStore>/<cluster>/backups/etcd/{main,events}.
		tcliReplace(t, in, "stateStore", "file://"+f.c.StoreDir)
		tcliReplace(t, tcliObject(t, in, "main"), "endpoints", f.c.MainEndpoints)
		tcliReplace(t, tcliObject(t, in, "events"), "endpoints", f.c.EventsEndpoints)
		tcliReplace(t, in, "cacert", f.c.CACert)
		tcliReplace(t, in, "cert", f.c.ClientCert)
		tcliReplace(t, in, "key", f.c.ClientKey)
		ms, ok := in["masters"].([]any)
		require.True(t, ok && len(ms) == len(f.c.Masters), "the README lists %d masters, the harness has %d", len(ms), len(f.c.Masters))
		for i, m := range f.c.Masters {
			mi := ms[i].(map[string]any)
			tcliReplace(t, mi, "name", m.Node)
			tcliReplace(t, mi, "docker", f.c.DockerHost)
			tcliReplace(t, mi, "ip", m.IP)
			// The harness's masters share this machine's Docker engine on
			// its unix socket, and Docker TLS files go with a tcp://
			// endpoint only (the input's validation refuses them on a
			// socket): the first master's tlsCA/tlsCert/tlsKey paths are
			// dropped. Docker over TLS is not exercised here.
			delete(mi, "tlsCA")
			delete(mi, "tlsCert")
			delete(mi, "tlsKey")
		}
		edit(in)
		args[tcliFlag(args, "input")] = tcliEncode(t, in)
		return args
	}
	query := take(t, "query status")
	var dryRunID string

	t.Run("EtcdManagerRestore dry run and status", func(t *testing.T) {
		args := restoreArgs(t, func(in map[string]any) {
			require.Equal(t, true, in["dryRun"], "the README's first restore is a dry run")
		})
		dryRunID = tcliRunID(t, r.run(t, ctx, args...))
		var res workflows.EtcdManagerRestoreResult
		require.NoError(t, temporalconn.Await(ctx, f.tp.Client.GetWorkflow(ctx, api.RestoreWorkflowID(f.c.Name), dryRunID), &res))
		require.True(t, res.DryRun)

		st := tcliStatus(t, r.run(t, ctx, restoreID(t, query.Args)...))
		require.Equal(t, "dry run: plan ready, nothing changed", st.Step)
		require.NotNil(t, st.Plan)
		require.Len(t, st.Plan.Backups, 2)
		for _, b := range st.Plan.Backups { // "backup": "latest" is the kopsdr backup of the fixture
			require.Equal(t, f.backups[b.EtcdCluster], b.Backup, b.EtcdCluster)
		}
		require.Len(t, st.Plan.Masters, len(f.c.Masters))
		for i, m := range f.c.Masters {
			require.Equal(t, m.Node, st.Plan.Masters[i].Master)
			require.Len(t, st.Plan.Masters[i].Containers, 2, "etcd-manager-main and -events on %s", m.Node)
			require.Contains(t, st.Plan.LiveIPs, m.IP)
		}
		require.Contains(t, st.Plan.LeaseRule, "never a live master's key")
		f.requireUntouched(t)
	})

	t.Run("EtcdManagerRestore approved with update", func(t *testing.T) {
		require.NotEmpty(t, dryRunID, "the dry run ran")
		// "Then start it again without dryRun": the same command, dryRun gone.
		args := restoreArgs(t, func(in map[string]any) { delete(in, "dryRun") })
		runID := tcliRunID(t, r.run(t, ctx, args...))
		// The CLI answers an id still in use with the running execution;
		// a new run proves the dry run had ended and this one started.
		require.NotEqual(t, dryRunID, runID)
		run := f.tp.Client.GetWorkflow(ctx, api.RestoreWorkflowID(f.c.Name), runID)
		require.Eventually(t, func() bool { return f.status(ctx, run).Step == api.StepAwaitingApproval },
			2*time.Minute, 200*time.Millisecond, "the restore waits for approval after its pre-flight")
		st := tcliStatus(t, r.run(t, ctx, restoreID(t, query.Args)...))
		require.Equal(t, api.StepAwaitingApproval, st.Step)
		require.NotNil(t, st.Plan)
		require.False(t, st.ApprovalDeadline.IsZero())
		require.Nil(t, st.Approval)
		f.requireUntouched(t) // nothing happens before the approval

		out := r.run(t, ctx, restoreID(t, take(t, "update approve").Args)...)
		require.Contains(t, out, "alice", "the update answers with the decision")
		st = tcliStatus(t, r.run(t, ctx, restoreID(t, query.Args)...))
		require.NotNil(t, st.Approval, "status after the update: %+v", st)
		require.Equal(t, api.Decision{Decision: api.Approved, By: "alice", Comment: "INC-42", Via: "update", At: st.Approval.At}, *st.Approval)

		// And the approved restore does what it says: the backup's data is back.
		var res workflows.EtcdManagerRestoreResult
		require.NoError(t, temporalconn.Await(ctx, run, &res))
		require.Equal(t, "alice", res.Approval.By)
		require.Nil(t, f.get(t, ctx, "/registry/configmaps/default/after-backup"))
		require.NotNil(t, f.get(t, ctx, "/registry/configmaps/default/cm-001"))
		f.requireCommandsConsumed(t, ctx)
		for _, m := range f.c.Masters {
			require.Equal(t, 1, f.c.RestartCount(t, m.MainContainer), m.MainContainer)
		}
	})

	// The legacy volume examples run on the fake EC2 in the README's
	// region, seeded with the README's cluster; the kops cluster spec is in
	// the fake S3.
	var set workflows.VolumeSnapshotResult
	t.Run("VolumeSnapshot", func(t *testing.T) {
		tcliSeedVolumes(t, ctx, ec2, s3srv)
		c := take(t, "start VolumeSnapshot")
		in := tcliDecodeInput(t, c.Args[tcliFlag(c.Args, "input")])
		require.Equal(t, volCluster, in["cluster"])
		require.Equal(t, tcliRegion, in["region"])
		out := r.run(t, ctx, c.Args...)
		require.NoError(t, temporalconn.Await(ctx, f.tp.Client.GetWorkflow(ctx, tcliFlagValue(c.Args, "workflow-id"), tcliRunID(t, out)), &set))
		require.Len(t, set.Snapshots, 6, "main and events of three masters")
		for _, s := range set.Snapshots {
			require.Equal(t, ebs.SnapshotCompleted, s.State)
		}
		require.Len(t, ec2.Snapshots(), 6)
	})

	t.Run("VolumeRestore dry run", func(t *testing.T) {
		require.NotEmpty(t, set.Set, "the snapshot set was taken")
		c := take(t, "start VolumeRestore")
		args := append([]string{}, c.Args...)
		in := tcliDecodeInput(t, args[tcliFlag(args, "input")])
		require.Equal(t, true, in["dryRun"])
		tcliReplace(t, in, "stateStore", tcliStateStore)
		// "at" picks the newest set taken at or before it: the README's
		// time is before this run's snapshots, so it becomes the time of the
		// set just taken, rounded up to the second RFC 3339 gives.
		setTime, ok := ebs.SetTime(set.Set)
		require.True(t, ok, set.Set)
		tcliReplace(t, in, "at", setTime.Truncate(time.Second).Add(time.Second).Format(time.RFC3339))
		args[tcliFlag(args, "input")] = tcliEncode(t, in)
		before := len(mutatingCalls(ec2))
		out := r.run(t, ctx, args...)
		var rep workflows.VolumeRestoreReport
		require.NoError(t, temporalconn.Await(ctx, f.tp.Client.GetWorkflow(ctx, tcliFlagValue(args, "workflow-id"), tcliRunID(t, out)), &rep))
		require.True(t, rep.DryRun)
		require.NotNil(t, rep.Plan)
		require.Equal(t, set.Set, rep.Plan.SnapshotSet)
		require.Equal(t, in["restart"], rep.Plan.Restart)
		require.Equal(t, in["oldVolumes"], rep.Plan.OldVolumes)
		require.Len(t, rep.Plan.Members, 6)
		require.Len(t, rep.Plan.Instances, 3)
		require.Len(t, mutatingCalls(ec2), before, "a dry run changes nothing in EC2")
	})
}

// tcliKind names a README command by what it does, for the scenario and
// the skip list: "start <type>" (with the masters' runtime for an
// etcd-manager restore), "query <type>", "update <name>".
func tcliKind(t *testing.T, c tcliCommand) string {
	t.Helper()
	if len(c.Args) < 2 || c.Args[0] != "workflow" {
		t.Fatalf("README.md:%d: not a temporal workflow command: %s", c.Line, c.Text)
	}
	switch sub := c.Args[1]; {
	case sub == "start":
		typ := tcliFlagValue(c.Args, "type")
		if typ != api.WorkflowEtcdManagerRestore {
			return "start " + typ
		}
		var in api.EtcdManagerRestoreInput
		require.NoError(t, json.Unmarshal([]byte(tcliFlagValue(c.Args, "input")), &in), "README.md:%d", c.Line)
		runtime := "discover"
		if len(in.Masters) > 0 {
			runtime = in.Masters[0].RuntimeOf()
		}
		return "start " + typ + " " + runtime
	case sub == "query":
		return "query " + tcliFlagValue(c.Args, "type")
	case sub == "update" && len(c.Args) > 2 && c.Args[2] == "execute":
		return "update " + tcliFlagValue(c.Args, "name")
	}
	t.Fatalf("README.md:%d: a temporal workflow command this test does not know: %s", c.Line, c.Text)
	return ""
}

func tcliEncode(t *testing.T, in map[string]any) string {
	t.Helper()
	b, err := json.Marshal(in)
	require.NoError(t, err)
	return string(b)
}

// tcliRunID is the run id `temporal workflow start` printed.
func tcliRunID(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*RunId\s+(\S+)\s*$`).FindStringSubmatch(out)
	require.NotNil(t, m, "no RunId in:\n%s", out)
	return m[1]
}

// tcliStatus decodes the restore status `temporal workflow query` printed
// ("Query result:" and the JSON after "QueryResult"), refusing any field
// the contract (workflows/api) does not have.
func tcliStatus(t *testing.T, out string) api.RestoreStatus {
	t.Helper()
	_, after, ok := strings.Cut(out, "QueryResult")
	require.True(t, ok, "no QueryResult in:\n%s", out)
	dec := json.NewDecoder(strings.NewReader(strings.TrimSpace(after)))
	dec.DisallowUnknownFields()
	var st api.RestoreStatus
	require.NoError(t, dec.Decode(&st), "status JSON in:\n%s", out)
	return st
}

// tcliSeedVolumes seeds the README's legacy cluster in the README's region:
// three masters, one per zone, each with its main and events volume as
// kops 1.x tags them, and the cluster spec in the state store.
func tcliSeedVolumes(t *testing.T, ctx context.Context, ec2 *fakeec2.Server, s3srv *s3test.Server) {
	t.Helper()
	zones := []string{tcliRegion + "a", tcliRegion + "b", tcliRegion + "c"}
	all := strings.Join(zones, ",")
	for _, az := range zones {
		inst := ec2.AddInstance(fakeec2.Instance{AvailabilityZone: az, Tags: map[string]string{
			"KubernetesCluster": volCluster, "k8s.io/role/master": "1", "kubernetes.io/cluster/" + volCluster: "owned",
			"Name": "master-" + az + ".masters." + volCluster,
		}})
		for i, ec := range []string{"main", "events"} {
			ec2.AddVolume(fakeec2.Volume{
				AvailabilityZone: az, Size: 20, Type: "gp3", Iops: 3000, Throughput: 125,
				Tags:       wantKopsTags(ec, az, all),
				Attachment: &fakeec2.Attachment{InstanceID: inst, Device: []string{"/dev/xvdu", "/dev/xvdv"}[i]},
			})
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: kops.k8s.io/v1alpha2\nkind: Cluster\nmetadata:\n  name: %s\nspec:\n  cloudProvider: aws\n  etcdClusters:\n", volCluster)
	for _, ec := range []string{"main", "events"} {
		fmt.Fprintf(&b, "  - name: %s\n    etcdMembers:\n", ec)
		for _, az := range zones {
			fmt.Fprintf(&b, "    - name: %s\n      instanceGroup: master-%s\n", az, az)
		}
	}
	_, err := s3srv.Client(t).PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(volCluster + "/config"),
		Body: strings.NewReader(b.String())})
	require.NoError(t, err)
}
