package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBadInputStartsNothing runs every command that starts a workflow or
// creates a schedule with bad input. Each must exit 2 with one message that
// names the flag and says how to fix it, before it contacts Temporal (the
// --address below counts every connection) and without writing a file.
func TestBadInputStartsNothing(t *testing.T) {
	temporal := countingListener(t)
	dir := t.TempDir()
	state := "file://" + dir + "/state"
	t.Setenv("KOPS_STATE_STORE", "")
	t.Setenv("KOPS_CLUSTER_NAME", "")
	eps := []string{"--main-endpoints", "https://10.0.1.10:4001", "--events-endpoints", "https://10.0.1.10:4002"}
	master := func(spec string) []string { return []string{"--master", spec} }
	goodMasters := append(master("name=a,docker=tcp://10.0.1.10:2376,ip=10.0.1.10"), master("name=b,docker=tcp://10.0.1.11:2376,ip=10.0.1.11")...)
	backup := func(extra ...string) []string {
		return append([]string{"backup", "--cluster", "c.example.com", "--etcd", "main", "--endpoints", "https://127.0.0.1:4001", "--state-store", state}, extra...)
	}
	sched := func(extra ...string) []string {
		return append(append([]string{"schedule", "create", "--cluster", "c.example.com", "--state-store", state}, eps...), extra...)
	}
	restore := func(extra ...string) []string {
		return append(append(append([]string{"restore", "etcd-manager", "--cluster", "c.example.com", "--state-store", state}, eps...), goodMasters...), extra...)
	}
	drillArgs := func(extra ...string) []string {
		return append([]string{"drill", "--cluster", "c.example.com", "--state-store", state}, extra...)
	}
	volRestore := func(extra ...string) []string {
		return append([]string{"restore", "volumes", "--cluster", "c.example.com", "--region", "eu-central-1", "--state-store", "s3://my.clusters"}, extra...)
	}
	snap := func(extra ...string) []string {
		return append([]string{"snapshot-volumes", "--cluster", "c.example.com", "--region", "eu-central-1"}, extra...)
	}
	cases := []struct {
		name string
		args []string
		want []string // each must be in the message
	}{
		// backup
		{"backup without cluster", []string{"backup", "--etcd", "main", "--endpoints", "https://127.0.0.1:4001", "--state-store", state}, []string{"--cluster", "kops cluster name"}},
		{"backup cluster with a space", backup("--cluster", "my cluster"), []string{"--cluster", `"my cluster"`, "DNS name"}},
		{"backup upper-case cluster", backup("--cluster", "Prod.Example.com"), []string{"--cluster", "DNS name"}},
		{"backup etcd typo", backup("--etcd", "mian"), []string{"--etcd", `"mian"`, `"main" or "events"`}},
		{"backup without endpoints", []string{"backup", "--cluster", "c.example.com", "--etcd", "main", "--state-store", state}, []string{"--endpoints", "https://"}},
		{"backup endpoint without scheme", backup("--endpoints", "10.0.1.10:4001"), []string{"--endpoints", "https://<host>:<port>"}},
		{"backup endpoint without port", backup("--endpoints", "https://10.0.1.10"), []string{"--endpoints"}},
		{"backup endpoint twice", backup("--endpoints", "https://a:4001,https://a:4001"), []string{"--endpoints", "once"}},
		{"backup without store", []string{"backup", "--cluster", "c.example.com", "--etcd", "main", "--endpoints", "https://127.0.0.1:4001"}, []string{"--state-store", "KOPS_STATE_STORE"}},
		{"backup state and backup store", backup("--backup-store", "s3://b/p"), []string{"--backup-store", "not both"}},
		{"backup store scheme", []string{"backup", "--cluster", "c.example.com", "--etcd", "main", "--endpoints", "https://127.0.0.1:4001", "--backup-store", "gs://bucket"}, []string{"--backup-store", "s3://bucket/prefix"}},
		{"backup relative file store", []string{"backup", "--cluster", "c.example.com", "--etcd", "main", "--endpoints", "https://127.0.0.1:4001", "--state-store", "file://state"}, []string{"--state-store", "file:///abs/path"}},
		{"backup file store without parent", []string{"backup", "--cluster", "c.example.com", "--etcd", "main", "--endpoints", "https://127.0.0.1:4001", "--state-store", "file:///nonexistent/dir/state"}, []string{"--state-store", "mkdir -p /nonexistent/dir"}},
		{"backup negative attempts", backup("--max-attempts", "-3"), []string{"--max-attempts", `"-3"`, "positive"}},
		{"backup compression level out of range", backup("--compression-level", "10"), []string{"--compression-level", `"10"`, "1 (fastest) to 9"}},
		{"backup cert without key", backup("--cert", "/etc/c.crt"), []string{"--key", "both"}},
		{"backup no-prune with dry run", backup("--no-prune", "--prune-dry-run"), []string{"--prune-dry-run", "drop one"}},
		{"backup unknown flag", backup("--endpoint", "x"), []string{"unknown flag", "--endpoint"}},
		// schedule create
		{"schedule negative keep-all-for", sched("--every", "1h", "--keep-all-for", "-1h"), []string{"--keep-all-for", "positive"}},
		{"schedule zero daily-for", sched("--every", "1h", "--daily-for", "0s"), []string{"--daily-for", "positive"}},
		{"schedule jitter as long as the interval", sched("--every", "1h", "--jitter", "1h"), []string{"--jitter", `"1h0m0s"`, "shorter than the interval"}},
		{"schedule daily-for forever", sched("--every", "1h", "--daily-for", "forever"), []string{"--daily-for", "forever"}},
		{"schedule without endpoints", []string{"schedule", "create", "--cluster", "c.example.com", "--state-store", state, "--every", "1h"}, []string{"--main-endpoints"}},
		{"schedule without events endpoints", []string{"schedule", "create", "--cluster", "c.example.com", "--state-store", state, "--main-endpoints", "https://a:4001", "--every", "1h"}, []string{"--events-endpoints"}},
		{"schedule without store", append(append([]string{"schedule", "create", "--cluster", "c.example.com"}, eps...), "--every", "1h"), []string{"--state-store"}},
		{"schedule cluster with a space", sched("--every", "1h", "--cluster", "my cluster"), []string{"--cluster", "DNS name"}},
		{"schedule neither every nor cron", sched(), []string{"--every", "--cron"}},
		{"schedule every and cron", sched("--every", "1h", "--cron", "0 * * * *"), []string{"--cron", "not both"}},
		{"schedule negative every", sched("--every", "-5m"), []string{"--every", "positive"}},
		{"schedule zero every", sched("--every", "0s"), []string{"--every", "positive"}},
		{"schedule bad cron", sched("--cron", "hourly"), []string{"--cron", "five fields"}},
		{"schedule zero catch-up", sched("--every", "1h", "--catchup-window", "0s"), []string{"--catchup-window", "positive"}},
		{"schedule state and main store", sched("--every", "1h", "--main-backup-store", "s3://b/main"), []string{"--main-backup-store", "not both"}},
		{"schedule volumes bad region", sched("--every", "1h", "--volume-snapshots", "--region", "europe"), []string{"--region", "us-east-1"}},
		{"schedule volumes negative keep-last", sched("--every", "1h", "--volume-snapshots", "--region", "eu-central-1", "--volume-keep-last", "-2"), []string{"--keep-last", "newest sets"}},
		// restore etcd-manager
		{"restore without masters", append(append([]string{"restore", "etcd-manager", "--cluster", "c.example.com", "--state-store", state}, eps...), "--live-master-ip", "10.0.1.10"), []string{"--masters", "discover"}},
		{"restore duplicate master names", append(append(append([]string{"restore", "etcd-manager", "--cluster", "c.example.com", "--state-store", state}, eps...), master("name=a,docker=tcp://10.0.1.10:2376,ip=10.0.1.10")...), master("name=a,docker=tcp://10.0.1.11:2376,ip=10.0.1.11")...), []string{"--master #2 name=", "once"}},
		{"restore invalid master ip", append(append([]string{"restore", "etcd-manager", "--cluster", "c.example.com", "--state-store", state}, eps...), master("name=a,docker=tcp://10.0.1.10:2376,ip=999.1.1.1")...), []string{"ip=", "999.1.1.1"}},
		{"restore duplicate master ips", append(append(append([]string{"restore", "etcd-manager", "--cluster", "c.example.com", "--state-store", state}, eps...), master("name=a,docker=tcp://10.0.1.10:2376,ip=10.0.1.10")...), master("name=b,docker=tcp://10.0.1.11:2376,ip=10.0.1.10")...), []string{"ip=", "once"}},
		{"restore master without docker", restore("--master", "name=c,ip=10.0.1.12"), []string{"--master", "docker="}},
		{"restore master unknown key", restore("--master", "name=c,dockr=tcp://x:1"), []string{"--master", "unknown key"}},
		{"restore master docker scheme", restore("--master", "name=c,docker=http://10.0.1.12:2376,ip=10.0.1.12"), []string{"docker=", "tcp://"}},
		{"restore master tls over unix", restore("--master", "name=c,docker=unix:///var/run/docker.sock,tlsca=/ca.pem"), []string{"tlsca=", "tcp://"}},
		{"restore backup selector", restore("--backup", "yesterday"), []string{"--backup", "latest-before:"}},
		{"restore latest-before time", restore("--backup", "latest-before:noon"), []string{"--backup", "RFC 3339"}},
		{"restore etcd typo", restore("--etcd", "evnets"), []string{"--etcd", `"evnets"`}},
		{"restore approve a dry run", restore("--dry-run", "--approve"), []string{"--approve", "dry run"}},
		{"restore negative approval timeout", restore("--approval-timeout", "-1h"), []string{"--approval-timeout", "positive"}},
		{"restore zero restore timeout", restore("--restore-timeout", "0s"), []string{"--restore-timeout", "positive"}},
		{"restore live ip invalid", restore("--live-master-ip", "10.0.1"), []string{"--live-master-ip", "10.0.1"}},
		{"restore discover and masters", restore("--discover-region", "eu-central-1"), []string{"--discover", "not both"}},
		{"restore discover bad region", append(append([]string{"restore", "etcd-manager", "--cluster", "c.example.com", "--state-store", state}, eps...), "--discover-region", "mars"), []string{"--discover-region", "us-east-1"}},
		{"restore template without discover", restore("--docker-endpoint-template", "tcp://{{.PrivateIP}}:2376"), []string{"--docker-endpoint-template", "--discover-region"}},
		{"restore ssh master bad address", restore("--master", "name=c,ssh=ubuntu@10.0.1.12:99999,ip=10.0.1.12"), []string{"--master #3 ssh=", "65535"}},
		{"restore ssh master with docker too", restore("--master", "name=c,runtime=containerd,docker=tcp://10.0.1.12:2376,ip=10.0.1.12"), []string{"--master #3 docker=", "runtime docker"}},
		{"restore runtime typo", restore("--master", "name=c,runtime=cri-o,ssh=10.0.1.12,ip=10.0.1.12"), []string{"--master #3 runtime=", `"cri-o"`}},
		{"restore containerd socket not unix", restore("--master", "name=c,ssh=10.0.1.12,containerd=/run/containerd/containerd.sock,ip=10.0.1.12"), []string{"containerd=", "unix:///"}},
		{"restore reboot without region", restore("--master", "name=c,runtime=reboot,instance=i-0123456789abcdef0,ip=10.0.1.12"), []string{"--region", "EC2 region"}},
		{"restore reboot mixed with docker", restore("--region", "us-east-1", "--master", "name=c,runtime=reboot,instance=i-0123456789abcdef0,ip=10.0.1.12"), []string{"reboot every master or none"}},
		{"restore reboot bad instance", append(append([]string{"restore", "etcd-manager", "--cluster", "c.example.com", "--state-store", state, "--region", "us-east-1"}, eps...), master("name=a,runtime=reboot,instance=web-1,ip=10.0.1.10")...), []string{"instance=", "i-0123456789abcdef0"}},
		{"restore ssh jump bad", restore("--master", "name=c,ssh=10.0.1.12,ip=10.0.1.12", "--ssh-jump", "bastion:ssh"), []string{"--ssh-jump", "bastion:ssh"}},
		{"restore ssh known hosts tilde", restore("--master", "name=c,ssh=10.0.1.12,ip=10.0.1.12", "--ssh-known-hosts", "~/.ssh/known_hosts"), []string{"--ssh-known-hosts", "absolute path"}},
		{"restore ssh key relative", restore("--master", "name=c,ssh=10.0.1.12,ip=10.0.1.12", "--ssh-key", "id_ed25519"), []string{"--ssh-key", "absolute path"}},
		{"restore ssh flags without ssh masters", restore("--ssh-user", "admin"), []string{"--ssh", "no master is reached over SSH"}},
		{"restore ssh flags with docker discovery", append(append([]string{"restore", "etcd-manager", "--cluster", "c.example.com", "--state-store", state}, eps...), "--discover-region", "us-east-1", "--runtime", "docker", "--ssh-user", "admin"), []string{"--ssh", "no master is reached over SSH"}},
		{"restore runtime without discover", restore("--runtime", "containerd"), []string{"--runtime", "--discover-region"}},
		{"restore discover runtime typo", append(append([]string{"restore", "etcd-manager", "--cluster", "c.example.com", "--state-store", state}, eps...), "--discover-region", "us-east-1", "--runtime", "podman"), []string{"--runtime", `"podman"`}},
		{"restore no lease IPs", append(append([]string{"restore", "etcd-manager", "--cluster", "c.example.com", "--state-store", state}, eps...), master("name=a,docker=tcp://10.0.1.10:2376")...), []string{"--live-master-ip", "noLeaseCleanup"}},
		// restore volumes, snapshot-volumes
		{"volumes without state store", []string{"restore", "volumes", "--cluster", "c.example.com", "--region", "eu-central-1"}, []string{"--state-store", "encrypted"}},
		{"volumes two selections", volRestore("--snapshot-set", "s1", "--at", "2026-11-21T22:00:00Z"), []string{"--snapshot-set", "at most one"}},
		{"volumes bad at", volRestore("--at", "yesterday"), []string{"--at", "RFC 3339"}},
		{"volumes bad restart", volRestore("--restart", "kick"), []string{"--restart", `"reboot"`}},
		{"volumes bad old-volumes", volRestore("--old-volumes", "keep"), []string{"--old-volumes", `"untag"`}},
		{"volumes bad snapshot id", volRestore("--snapshot-ids", "vol-123"), []string{"--snapshot-ids", "snap-"}},
		{"volumes approve a dry run", volRestore("--dry-run", "--approve"), []string{"--approve", "dry run"}},
		{"volumes verify for a cluster not restored", volRestore("--etcd", "events", "--verify-main-endpoints", "https://a:4001"), []string{"--verify-main-endpoints", "not restored"}},
		{"volumes old --yes", volRestore("--yes"), []string{"unknown flag", "--yes"}},
		{"snapshot negative keep-last", snap("--keep-last", "-1"), []string{"--keep-last", `"-1"`}},
		{"snapshot zero keep-last", snap("--keep-last", "0"), []string{"--keep-last", `"0"`, "at least 1"}},
		{"snapshot zero wait", snap("--wait-timeout", "0s"), []string{"--wait-timeout", "positive"}},
		{"snapshot without region", []string{"snapshot-volumes", "--cluster", "c.example.com", "--region", ""}, []string{"--region"}},
		{"snapshot duplicate etcd", snap("--etcd", "main,main"), []string{"--etcd", "once"}},
		// drills
		{"drill bad etcd", drillArgs("--etcd", "both"), []string{"--etcd", `"both"`}},
		{"drill bad backup", drillArgs("--backup", "newest"), []string{"--backup", `"newest"`, "undrilled"}},
		{"drill max-backups without undrilled", drillArgs("--max-backups", "3"), []string{"--max-backups", "undrilled"}},
		{"drill too many backups", drillArgs("--backup", "undrilled", "--max-backups", "1000"), []string{"--max-backups", "1 to 100"}},
		{"drill both stores", drillArgs("--backup-store", "s3://b/c.example.com/backups/etcd/main"), []string{"--backup-store", "not both"}},
		{"drill empty etcd", drillArgs("--etcd", ""), []string{"--etcd", "leave the flag out"}},
		{"drill empty backup", drillArgs("--backup", ""), []string{"--backup", "leave the flag out"}},
		{"drill without cluster", []string{"drill", "--state-store", state}, []string{"--cluster"}},
		{"schedule negative drill-every", sched("--every", "1h", "--drill-every", "-1h"), []string{"--drill-every", "positive"}},
		{"schedule drill-every with volume snapshots", []string{"schedule", "create", "--cluster", "c.example.com", "--volume-snapshots",
			"--region", "eu-central-1", "--every", "1h", "--drill-every", "24h"}, []string{"--drill-every", "not drilled"}},
		// the other commands
		{"clean-leases without live IPs", []string{"clean-leases", "--endpoints", "https://127.0.0.1:4001"}, []string{"--live-master-ip"}},
		{"clean-leases bad IP", []string{"clean-leases", "--endpoints", "https://127.0.0.1:4001", "--live-master-ip", "master-a"}, []string{"--live-master-ip", "master-a"}},
		{"list-backups bad etcd", []string{"list-backups", "--state-store", state, "--cluster", "c.example.com", "--etcd", "both"}, []string{"--etcd", `"both"`}},
		{"approve with empty by", []string{"approve", "restore/c.example.com", "--by", " "}, []string{"--by", "who decides"}},
		{"bad output format", []string{"status", "x", "-o", "yaml"}, []string{"--output", "text or json"}},
	}
	require.GreaterOrEqual(t, len(cases), 50)
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

// TestBadInputAsJSON: with -o json the error is one JSON object on stderr,
// naming the field, the value and the fix.
func TestBadInputAsJSON(t *testing.T) {
	var out, errOut bytes.Buffer
	a := newApp(&out, &errOut)
	root := a.root()
	root.SetArgs([]string{"backup", "--cluster", "my cluster", "--etcd", "main", "--endpoints", "https://127.0.0.1:4001",
		"--state-store", "s3://b", "-o", "json", "--address", "127.0.0.1:1"})
	require.Equal(t, exitBadInput, a.report(root.Execute()))
	var e map[string]any
	require.NoError(t, json.Unmarshal(errOut.Bytes(), &e), errOut.String())
	require.Equal(t, "cluster", e["field"])
	require.Equal(t, "my cluster", e["value"])
	require.Equal(t, "--cluster", e["flag"])
	require.NotEmpty(t, e["fix"])
	require.EqualValues(t, exitBadInput, e["exitCode"])
}

// TestKopsNames: --name and --state, and kops's environment variables,
// work as --cluster and --state-store; a flag-given backup store keeps the
// environment's state store out.
func TestKopsNames(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"--name", "my cluster", "--state", "s3://b"}, `--cluster (cluster) "my cluster"`},
		{map[string]string{"KOPS_CLUSTER_NAME": "Bad_Name"}, []string{"--state", "s3://b"}, `"Bad_Name"`},
		{map[string]string{"KOPS_STATE_STORE": "file://" + filepath.Join(dir, "no/such/state")}, []string{"--name", "c.example.com"}, "--state-store"},
		// With --backup-store, KOPS_STATE_STORE is not used: no conflict, the
		// next check (the parent folder) speaks.
		{map[string]string{"KOPS_STATE_STORE": "s3://b"}, []string{"--name", "c.example.com", "--backup-store", "file://" + filepath.Join(dir, "x/y")}, "--backup-store"},
	} {
		t.Setenv("KOPS_CLUSTER_NAME", tc.env["KOPS_CLUSTER_NAME"])
		t.Setenv("KOPS_STATE_STORE", tc.env["KOPS_STATE_STORE"])
		var out, errOut bytes.Buffer
		a := newApp(&out, &errOut)
		root := a.root()
		root.SetArgs(append([]string{"backup", "--etcd", "main", "--endpoints", "https://127.0.0.1:4001", "--address", "127.0.0.1:1"}, tc.args...))
		require.Equal(t, exitBadInput, a.report(root.Execute()), errOut.String())
		require.Contains(t, errOut.String(), tc.want)
		require.NotContains(t, errOut.String(), "not both")
	}
}

type counting struct {
	addr     string
	accepted atomic.Int64
}

// countingListener is a TCP port that counts connections and answers none:
// where the CLI would find Temporal if it dialled.
func countingListener(t *testing.T) *counting {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	c := &counting{addr: ln.Addr().String()}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.accepted.Add(1)
			conn.Close()
		}
	}()
	return c
}
