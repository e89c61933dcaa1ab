package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/kopsdr/kopsdr/internal/ebs"
	"github.com/kopsdr/kopsdr/internal/temporalconn"
	"github.com/kopsdr/kopsdr/test/fakeec2"
	"github.com/kopsdr/kopsdr/test/stack"
	"github.com/kopsdr/kopsdr/worker/registry"
	"github.com/kopsdr/kopsdr/workflows"
)

// The legacy EBS path's test stack: the real Temporal server, the fake EC2
// behind the real SDK, a file:// kops state store, and a kopsdr worker that
// runs the volume workflows, in this process or as a child process that can
// be killed.

const (
	volCluster = "k8s.mycompany.tld"
	volRegion  = "us-east-1"
	kmsKeyA    = "arn:aws:kms:us-east-1:123456789012:key/aaaaaaaa-1111-2222-3333-444444444444"
)

var volZones = []string{"us-east-1a", "us-east-1b", "us-east-1c"}

type volStack struct {
	tp         *stack.Temporal
	ec2        *fakeec2.Server
	stateStore string
	// volumes are the seeded etcd volumes by member key ("main/us-east-1a"),
	// masters the seeded instances by zone.
	volumes map[string]string
	masters map[string]string
}

// startVolStack starts Temporal and the fake EC2 and points this process's
// AWS environment at the fake (the in-process worker reads it as a real
// worker would). It does not start a worker.
func startVolStack(t *testing.T) *volStack {
	vs := &volStack{tp: stack.StartTemporal(t), ec2: fakeec2.Start(t, fakeec2.WithTransitionDelay(100*time.Millisecond))}
	for _, kv := range vs.env(vs.ec2.URL()) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	vs.stateStore = "file://" + dir
	require.NoError(t, os.MkdirAll(filepath.Join(dir, volCluster), 0o755))
	return vs
}

// env is a worker's AWS environment for an EC2 endpoint. No credential ever
// goes through Temporal: the worker has them, as on a real deployment.
func (vs *volStack) env(endpoint string) []string {
	none := filepath.Join(os.TempDir(), "kopsdr-no-aws-file")
	return []string{
		"AWS_ENDPOINT_URL_EC2=" + endpoint, "AWS_ACCESS_KEY_ID=AKIDKOPSDRTEST", "AWS_SECRET_ACCESS_KEY=kopsdr-test",
		"AWS_REGION=" + volRegion, "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=" + none,
		"AWS_SHARED_CREDENTIALS_FILE=" + none, "AWS_PROFILE=",
	}
}

// startWorker runs the volume workflows in this process until the test ends.
func (vs *volStack) startWorker(t *testing.T) {
	w := worker.New(vs.tp.Client, temporalconn.TaskQueue, worker.Options{})
	registry.RegisterVolumes(w)
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
}

// seed adds three masters, one per zone, each with its main and events
// volume attached and tagged as kops 1.x does (members named after zones,
// as in docs/formats.md's eu-central-1a/eu-central-1a example).
func (vs *volStack) seed(encrypted bool, key string) {
	vs.volumes, vs.masters = map[string]string{}, map[string]string{}
	all := strings.Join(volZones, ",")
	for _, az := range volZones {
		inst := vs.ec2.AddInstance(fakeec2.Instance{AvailabilityZone: az, Tags: map[string]string{
			"KubernetesCluster": volCluster, "k8s.io/role/master": "1", "kubernetes.io/cluster/" + volCluster: "owned",
			"Name": "master-" + az + ".masters." + volCluster,
		}})
		vs.masters[az] = inst
		for i, ec := range []string{"main", "events"} {
			vs.volumes[ec+"/"+az] = vs.ec2.AddVolume(fakeec2.Volume{
				AvailabilityZone: az, Size: 20, Type: "gp3", Iops: 3000, Throughput: 125, Encrypted: encrypted, KmsKeyID: key,
				Tags:       wantKopsTags(ec, az, all),
				Attachment: &fakeec2.Attachment{InstanceID: inst, Device: []string{"/dev/xvdu", "/dev/xvdv"}[i]},
			})
		}
	}
}

// wantKopsTags is the exact tag set protokube and kops expect on a member's volume.
func wantKopsTags(ec, member, all string) map[string]string {
	return map[string]string{
		"KubernetesCluster": volCluster, "Name": member + ".etcd-" + ec + "." + volCluster,
		"k8s.io/etcd/" + ec: member + "/" + all, "k8s.io/role/master": "1",
		"k8s.io/role/control-plane": "1", "kubernetes.io/cluster/" + volCluster: "owned",
	}
}

// writeSpec writes the cluster spec kops keeps at <state store>/<cluster>/config.
// member renders one etcd member's YAML lines for a zone.
func (vs *volStack) writeSpec(t *testing.T, member func(az string) string) {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: kops.k8s.io/v1alpha2\nkind: Cluster\nmetadata:\n  name: %s\nspec:\n  cloudProvider: aws\n  etcdClusters:\n", volCluster)
	for _, ec := range []string{"main", "events"} {
		fmt.Fprintf(&b, "  - name: %s\n    etcdMembers:\n", ec)
		for _, az := range volZones {
			fmt.Fprintf(&b, "    - name: %s\n      instanceGroup: master-%s\n%s", az, az, member(az))
		}
	}
	dir := strings.TrimPrefix(vs.stateStore, "file://")
	require.NoError(t, os.WriteFile(filepath.Join(dir, volCluster, "config"), []byte(b.String()), 0o644))
}

func noEncryption(string) string { return "" }

// snapshotSet runs VolumeSnapshot to completion and returns its result.
func (vs *volStack) snapshotSet(t *testing.T, ctx context.Context, in workflows.VolumeSnapshotInput) workflows.VolumeSnapshotResult {
	t.Helper()
	if in.Cluster == "" {
		in.Cluster, in.Region = volCluster, volRegion
	}
	run, err := vs.tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: workflows.VolumeSnapshotWorkflowID(in.Cluster), TaskQueue: temporalconn.TaskQueue,
	}, workflows.VolumeSnapshot, in)
	require.NoError(t, err)
	var res workflows.VolumeSnapshotResult
	require.NoError(t, temporalconn.Await(ctx, run, &res))
	return res
}

// restoreInput is a restore of the whole cluster with defaults.
func restoreInput(vs *volStack) workflows.VolumeRestoreInput {
	return workflows.VolumeRestoreInput{Cluster: volCluster, Region: volRegion, StateStore: vs.stateStore}
}

func (vs *volStack) startRestore(t *testing.T, ctx context.Context, in workflows.VolumeRestoreInput) client.WorkflowRun {
	t.Helper()
	run, err := vs.tp.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: workflows.RestoreWorkflowID(volCluster), TaskQueue: temporalconn.TaskQueue,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, workflows.VolumeRestore, in)
	require.NoError(t, err)
	return run
}

// status asks a restore's "status" query.
func (vs *volStack) status(t *testing.T, ctx context.Context, run client.WorkflowRun) workflows.VolumeRestoreReport {
	t.Helper()
	v, err := vs.tp.Client.QueryWorkflow(ctx, run.GetID(), run.GetRunID(), workflows.QueryStatus)
	require.NoError(t, err)
	var rep workflows.VolumeRestoreReport
	require.NoError(t, v.Get(&rep))
	return rep
}

func (vs *volStack) waitStep(t *testing.T, ctx context.Context, run client.WorkflowRun, step string) workflows.VolumeRestoreReport {
	t.Helper()
	var rep workflows.VolumeRestoreReport
	require.Eventually(t, func() bool {
		v, err := vs.tp.Client.QueryWorkflow(ctx, run.GetID(), run.GetRunID(), workflows.QueryStatus)
		return err == nil && v.Get(&rep) == nil && rep.Step == step
	}, time.Minute, 100*time.Millisecond, "restore reaches step %q (last seen %q)", step, rep.Step)
	return rep
}

// newVolumes are the volumes a restore created, by member key.
func (vs *volStack) newVolumes(t *testing.T) map[string]fakeec2.Volume {
	t.Helper()
	out := map[string]fakeec2.Volume{}
	for _, v := range vs.ec2.Volumes() {
		if v.Tags[ebs.TagRestoreWorkflow] == "" {
			continue
		}
		key := v.Tags[ebs.TagEtcdCluster] + "/" + v.Tags[ebs.TagMember]
		_, dup := out[key]
		require.False(t, dup, "two new volumes for %s", key)
		out[key] = v
	}
	return out
}

// mutatingCalls are the EC2 calls that change something.
func mutatingCalls(s *fakeec2.Server) []string {
	var out []string
	for _, c := range s.Calls() {
		if !strings.HasPrefix(c.Action, "Describe") {
			out = append(out, c.Action)
		}
	}
	return out
}

// kopsOnly is the part of a tag map protokube and kops see.
func kopsOnly(tags map[string]string) map[string]string { return ebs.KopsTags(tags) }

func appError(t *testing.T, err error) *temporal.ApplicationError {
	t.Helper()
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "%v", err)
	return ae
}

// TestVolumesWorkerProcess is not a test: it is the worker the kill tests
// start as a child process (this test binary re-executed), so that a
// SIGKILL is a real crash of the very code under test.
func TestVolumesWorkerProcess(t *testing.T) {
	addr := os.Getenv("KOPSDR_VOLUMES_WORKER_ADDRESS")
	if addr == "" {
		t.Skip("helper process for the worker-kill tests")
	}
	c, err := client.Dial(client.Options{HostPort: addr, Namespace: os.Getenv("KOPSDR_VOLUMES_WORKER_NAMESPACE")})
	if err != nil {
		t.Fatal(err)
	}
	w := worker.New(c, temporalconn.TaskQueue, worker.Options{})
	registry.RegisterVolumes(w)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	fmt.Println("kopsdr volumes worker started")
	select {}
}

// startWorkerProc runs the volume worker as a child process whose EC2
// endpoint is endpoint.
func (vs *volStack) startWorkerProc(t *testing.T, endpoint string) *stack.Proc {
	env := append(vs.env(endpoint), "KOPSDR_VOLUMES_WORKER_ADDRESS="+vs.tp.Address, "KOPSDR_VOLUMES_WORKER_NAMESPACE="+vs.tp.Namespace)
	p := stack.StartProc(t, os.Args[0], env, "-test.run=^TestVolumesWorkerProcess$", "-test.v", "-test.timeout=0")
	p.WaitOutput(t, "kopsdr volumes worker started", time.Minute)
	return p
}

// gateProxy sits between a worker and the fake EC2. An armed gate holds
// every request it matches until released; held requests are then sent to
// EC2 whatever became of their caller, so a worker killed while held leaves
// the action done and its answer lost.
type gateProxy struct {
	target string
	srv    *httptest.Server
	mu     sync.Mutex
	gate   *gate
}

type gate struct {
	name    string
	match   func(url.Values) bool
	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

func startGateProxy(t *testing.T, target string) *gateProxy {
	g := &gateProxy{target: target}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(g.srv.Close)
	return g
}

// arm makes the next requests matching match wait.
func (g *gateProxy) arm(name string, match func(url.Values) bool) *gate {
	gt := &gate{name: name, match: match, arrived: make(chan struct{}), release: make(chan struct{})}
	g.mu.Lock()
	g.gate = gt
	g.mu.Unlock()
	return gt
}

// open disarms the gate and lets the held requests through.
func (g *gateProxy) open(gt *gate) {
	g.mu.Lock()
	if g.gate == gt {
		g.gate = nil
	}
	g.mu.Unlock()
	close(gt.release)
}

func (g *gateProxy) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	form, _ := url.ParseQuery(string(body))
	g.mu.Lock()
	gt := g.gate
	g.mu.Unlock()
	if gt != nil && gt.match(form) {
		gt.once.Do(func() { close(gt.arrived) })
		<-gt.release
	}
	// A context of its own: the caller may be dead by now.
	req, _ := http.NewRequestWithContext(context.Background(), r.Method, g.target+r.URL.RequestURI(), bytes.NewReader(body))
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func action(name string, more ...func(url.Values) bool) func(url.Values) bool {
	return func(f url.Values) bool {
		if f.Get("Action") != name {
			return false
		}
		for _, m := range more {
			if !m(f) {
				return false
			}
		}
		return true
	}
}
