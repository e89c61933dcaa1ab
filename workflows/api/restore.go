package api

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// EtcdManagerRestoreInput restores main and events (or one of them) of one
// kops cluster from etcd-manager backups. Start it with workflow id
// restore/<cluster>.
type EtcdManagerRestoreInput struct {
	Cluster    string `json:"cluster"`
	StateStore string `json:"stateStore,omitempty"` // stores are <stateStore>/<cluster>/backups/etcd/{main,events}
	// EtcdClusters restores only these ("main", "events"); default both.
	EtcdClusters []string `json:"etcdClusters,omitempty"`
	// Backup selects the backup of both etcd clusters unless one sets its
	// own: "latest" (default), a backup name, or "latest-before:<RFC3339>".
	Backup string `json:"backup,omitempty"`
	// At or Revision restore to a point instead of a backup (point-in-time
	// restore, from the changes ChangeCapture recorded): a backup is made
	// at that point after approval and restored. At is RFC 3339 and means
	// the last revision kopsdr had observed by then; Revision is main's
	// (or the one selected etcd cluster's). The other etcd cluster goes to
	// the same time: from its own changes when they are captured, else its
	// newest backup at or before that time.
	At       string        `json:"at,omitempty"`
	Revision int64         `json:"revision,omitempty"`
	Main     RestoreTarget `json:"main"`
	Events   RestoreTarget `json:"events"`
	// etcd client TLS files on the worker, for verification and clean-up.
	CACert string `json:"cacert,omitempty"`
	Cert   string `json:"cert,omitempty"`
	Key    string `json:"key,omitempty"`
	// Masters lists each master and how to restart its etcd-manager; or
	// Discover finds them in EC2.
	Masters  []MasterInput  `json:"masters,omitempty"`
	Discover *DiscoverInput `json:"discover,omitempty"`
	// SSH is how the worker logs in to containerd masters: paths on the
	// worker, never keys.
	SSH *SSHInput `json:"ssh,omitempty"`
	// Region is the masters' EC2 region, for listed masters restarted by
	// reboot (discover has its own).
	Region string `json:"region,omitempty"`
	// LiveMasterIPs are the apiserver IPs whose master leases stay; default
	// the masters' ip fields, or the discovered instances' private IPs.
	LiveMasterIPs []string `json:"liveMasterIPs,omitempty"`

	DryRun          bool   `json:"dryRun,omitempty"`
	Approve         bool   `json:"approve,omitempty"`
	ApprovalTimeout string `json:"approvalTimeout,omitempty"` // default 24h
	RestoreTimeout  string `json:"restoreTimeout,omitempty"`  // per etcd cluster, default 15m
	NoSafetyBackup  bool   `json:"noSafetyBackup,omitempty"`
	NoLeaseCleanup  bool   `json:"noLeaseCleanup,omitempty"`
}

// Restore defaults.
const (
	DefaultApprovalTimeout = 24 * time.Hour
	DefaultRestoreTimeout  = 15 * time.Minute
)

// LatestBefore is the backup selector prefix for "the newest backup at or
// before a time": "latest-before:2026-11-20T10:00:00Z".
const LatestBefore = "latest-before:"

// RestoreTarget is one etcd cluster: its backup, store and endpoints.
type RestoreTarget struct {
	Backup      string   `json:"backup,omitempty"`
	BackupStore string   `json:"backupStore,omitempty"`
	ChangeStore string   `json:"changeStore,omitempty"` // for at/revision; default derived from the backup store
	Endpoints   []string `json:"endpoints"`
}

// MasterInput is one master: its node name, how its etcd-manager is
// restarted, and its IP.
type MasterInput struct {
	Name string `json:"name,omitempty"` // kubelet node name; narrows the container match
	// Runtime is docker, containerd or reboot; default docker when
	// "docker" is given, containerd when "ssh" or "containerd" is.
	Runtime string `json:"runtime,omitempty"`
	Docker  string `json:"docker,omitempty"` // unix:///var/run/docker.sock or tcp://10.0.1.10:2376
	// SSH is the master's sshd, [user@]host[:port], through which its
	// containerd socket is reached.
	SSH string `json:"ssh,omitempty"`
	// Containerd is the containerd socket on the master, default
	// unix:///run/containerd/containerd.sock. Without "ssh" it is the
	// worker's own socket (a worker on the master, or a test).
	Containerd string `json:"containerd,omitempty"`
	InstanceID string `json:"instanceId,omitempty"` // the EC2 instance, for runtime reboot
	IP         string `json:"ip,omitempty"`         // the apiserver IP, for the lease clean-up
	TLSCA      string `json:"tlsCA,omitempty"`
	TLSCert    string `json:"tlsCert,omitempty"`
	TLSKey     string `json:"tlsKey,omitempty"`
}

// The runtimes through which a master's etcd-manager is restarted.
const (
	RuntimeDocker     = "docker"     // kill the containers through the Docker API
	RuntimeContainerd = "containerd" // kill the tasks through containerd, over SSH
	RuntimeReboot     = "reboot"     // reboot the EC2 instances: no host access needed
)

// RuntimeOf is the master's runtime, given or implied by its fields.
func (m MasterInput) RuntimeOf() string {
	switch {
	case m.Runtime != "":
		return m.Runtime
	case m.Docker != "":
		return RuntimeDocker
	case m.SSH != "" || m.Containerd != "":
		return RuntimeContainerd
	case m.InstanceID != "":
		return RuntimeReboot
	}
	return ""
}

// SSHInput is how the worker logs in to containerd masters (and a jump
// host). Files are on the worker.
type SSHInput struct {
	User       string `json:"user,omitempty"`       // default ubuntu (kops's Ubuntu images)
	Key        string `json:"key,omitempty"`        // private key file; default the SSH agent at $SSH_AUTH_SOCK
	KnownHosts string `json:"knownHosts,omitempty"` // default ~/.ssh/known_hosts
	Jump       string `json:"jump,omitempty"`       // [user@]bastion[:port], e.g. the kops bastion
	// Sudo opens the containerd socket as root through sudo -n on the
	// master (it is root's alone on kops's images). Default: on unless
	// the login user is root.
	Sudo *bool `json:"sudo,omitempty"`
}

// DefaultSSHUser is the login of kops's default (Ubuntu) images.
const DefaultSSHUser = "ubuntu"

// DefaultContainerdSocket is where a kops master's containerd listens.
const DefaultContainerdSocket = "unix:///run/containerd/containerd.sock"

// DiscoverInput finds masters as running EC2 instances tagged for the cluster.
type DiscoverInput struct {
	Region string `json:"region"`
	// Runtime is docker, containerd or reboot. Default: what the kops
	// cluster spec in the state store declares (containerRuntime, else
	// containerd from Kubernetes 1.24 on); without a spec, docker when
	// dockerEndpointTemplate is given.
	Runtime                string `json:"runtime,omitempty"`
	DockerEndpointTemplate string `json:"dockerEndpointTemplate,omitempty"` // default tcp://{{.PrivateIP}}:2376
	SSHAddressTemplate     string `json:"sshAddressTemplate,omitempty"`     // default {{.PrivateIP}}:22
	ContainerdSocket       string `json:"containerdSocket,omitempty"`       // default unix:///run/containerd/containerd.sock
	TLSCA                  string `json:"tlsCA,omitempty"`
	TLSCert                string `json:"tlsCert,omitempty"`
	TLSKey                 string `json:"tlsKey,omitempty"`
}

// Default templates over a discovered master (fields PrivateIP, NodeName,
// Name, InstanceID, AvailabilityZone).
const (
	DefaultDockerEndpointTemplate = "tcp://{{.PrivateIP}}:2376"
	DefaultSSHAddressTemplate     = "{{.PrivateIP}}:22"
)

// RestorePlan is what the restore will do; dryRun returns it.
type RestorePlan struct {
	Backups    []PlannedBackup `json:"backups"`
	Masters    []PlannedMaster `json:"masters"`
	LiveIPs    []string        `json:"liveMasterIps"`
	LeaseRule  string          `json:"leaseRule"`
	SafetyNote string          `json:"safetyBackup"`
}

// PlannedBackup is one etcd cluster's chosen backup.
type PlannedBackup struct {
	EtcdCluster string `json:"etcdCluster"`
	Store       string `json:"store"`
	Backup      string `json:"backup"`
	Age         string `json:"age"`
	Revision    int64  `json:"revision,omitempty"`
	Bytes       int64  `json:"bytes"`
	EtcdVersion string `json:"etcdVersion"`
	MemberCount int32  `json:"memberCount"`
	// PointInTime, for a restore to a point, is how the backup restored
	// will be made after approval; Backup is then the base it starts from.
	PointInTime *PointPlan `json:"pointInTime,omitempty"`
}

// PlannedMaster lists the containers that will be restarted on a master,
// or the instance that will be rebooted.
type PlannedMaster struct {
	Master     string   `json:"master"`
	Runtime    string   `json:"runtime,omitempty"`
	Endpoint   string   `json:"endpoint"`
	SSH        string   `json:"ssh,omitempty"`
	Containers []string `json:"containers"`
	// Downtime says how long etcd is expected to be down on this master.
	Downtime string `json:"downtime,omitempty"`
}

// RestoreStatus is the "status" query of the etcd-manager restore.
type RestoreStatus struct {
	Step             string            `json:"step"`
	Masters          map[string]string `json:"masters,omitempty"` // master -> state
	Steps            []StepTime        `json:"steps"`
	Plan             *RestorePlan      `json:"plan,omitempty"`
	ApprovalDeadline time.Time         `json:"approvalDeadline,omitzero"`
	Approval         *Decision         `json:"approval,omitempty"`
	LastError        string            `json:"lastError,omitempty"`
}

// RestoredCluster describes an etcd cluster after etcd-manager restored it.
type RestoredCluster struct {
	ClusterID uint64 `json:"clusterId"`
	Members   int    `json:"members"`
	Revision  int64  `json:"revision"`
	Keys      int64  `json:"keys"`
}

// EtcdManagerRestoreResult is what was done.
type EtcdManagerRestoreResult struct {
	DryRun        bool                       `json:"dryRun,omitempty"`
	Plan          RestorePlan                `json:"plan"`
	Approval      *Decision                  `json:"approval,omitempty"`
	SafetyBackups map[string]string          `json:"safetyBackups,omitempty"` // etcd cluster -> backup name
	Commands      map[string]string          `json:"commands,omitempty"`
	Restarts      []ContainerRestart         `json:"restarts,omitempty"`
	Restored      map[string]RestoredCluster `json:"restored,omitempty"`
	LeasesDeleted []string                   `json:"leasesDeleted,omitempty"`
	Steps         []StepTime                 `json:"steps"`
}

// ContainerRestart is what the restart step did to one etcd-manager
// container.
type ContainerRestart struct {
	Master      string `json:"master"`
	EtcdCluster string `json:"etcdCluster"`
	Before      string `json:"before"`          // container name before
	After       string `json:"after"`           // container name running now
	Action      string `json:"action"`          // killed | already-restarted | started-by-kopsdr
	Proof       string `json:"proof,omitempty"` // why the running container is a new one
}

// Selected is the etcd clusters this restore touches.
func (in EtcdManagerRestoreInput) Selected() []string {
	ecs, err := EtcdClusterList("etcdClusters", in.EtcdClusters)
	if err != nil {
		return nil
	}
	return ecs
}

// Target is the input's part for one etcd cluster.
func (in EtcdManagerRestoreInput) Target(etcdCluster string) RestoreTarget {
	if etcdCluster == "events" {
		return in.Events
	}
	return in.Main
}

// BackupSelector is the backup chosen for one etcd cluster, "latest" by default.
func (in EtcdManagerRestoreInput) BackupSelector(etcdCluster string) string {
	if t := in.Target(etcdCluster); t.Backup != "" {
		return t.Backup
	}
	if in.Backup != "" {
		return in.Backup
	}
	return "latest"
}

// CleansLeases says whether the restore ends with the master-lease
// clean-up: the leases live in main.
func (in EtcdManagerRestoreInput) CleansLeases() bool {
	for _, ec := range in.Selected() {
		if ec == "main" {
			return !in.NoLeaseCleanup
		}
	}
	return false
}

// Validate checks the whole input without the network or the worker's
// files: the CLI calls it before starting, the workflow again.
func (in EtcdManagerRestoreInput) Validate() error {
	if err := CheckCluster(in.Cluster); err != nil {
		return err
	}
	ecs, err := EtcdClusterList("etcdClusters", in.EtcdClusters)
	if err != nil {
		return err
	}
	if in.Backup != "" {
		if err := CheckBackupSelector("backup", in.Backup); err != nil {
			return err
		}
	}
	for _, ec := range ecs {
		t := in.Target(ec)
		if _, err := BackupStoreFor(in.StateStore, t.BackupStore, in.Cluster, ec, ec+".backupStore"); err != nil {
			return err
		}
		if err := CheckEndpoints(ec+".endpoints", ec, t.Endpoints); err != nil {
			return err
		}
		if t.Backup != "" {
			if err := CheckBackupSelector(ec+".backup", t.Backup); err != nil {
				return err
			}
		}
	}
	if (in.Cert == "") != (in.Key == "") {
		return invalid("key", in.Key, "give both the etcd client certificate (cert) and its key (key), or neither")
	}
	if err := in.validateMasters(); err != nil {
		return err
	}
	if err := in.validatePoint(ecs); err != nil {
		return err
	}
	if in.DryRun && in.Approve {
		return invalid("approve", "true", "a dry run changes nothing and is never approved: drop approve, or dryRun to restore")
	}
	if _, err := Duration("approvalTimeout", in.ApprovalTimeout, DefaultApprovalTimeout); err != nil {
		return err
	}
	_, err = Duration("restoreTimeout", in.RestoreTimeout, DefaultRestoreTimeout)
	return err
}

// PointInTime says the restore is to a point (at or revision), not a backup.
func (in EtcdManagerRestoreInput) PointInTime() bool { return in.At != "" || in.Revision != 0 }

// ChangeStore is the change store of one etcd cluster, for at/revision.
func (in EtcdManagerRestoreInput) ChangeStore(etcdCluster string) (string, error) {
	t := in.Target(etcdCluster)
	store, err := BackupStoreFor(in.StateStore, t.BackupStore, in.Cluster, etcdCluster, etcdCluster+".backupStore")
	if err != nil {
		return "", err
	}
	return ChangeStoreFor(store, t.ChangeStore, etcdCluster+".changeStore")
}

func (in EtcdManagerRestoreInput) validatePoint(ecs []string) error {
	if !in.PointInTime() {
		for _, ec := range EtcdClusters {
			if cs := in.Target(ec).ChangeStore; cs != "" {
				return invalid(ec+".changeStore", cs, "a change store is read only for a restore to a point: give at or revision, or drop it")
			}
		}
		return nil
	}
	if _, err := CheckPoint("at", in.At, "revision", in.Revision); err != nil {
		return err
	}
	if in.Backup != "" {
		return invalid("backup", in.Backup, "a restore goes to a backup or to a point (at, revision), not both: drop one")
	}
	for _, ec := range ecs {
		if b := in.Target(ec).Backup; b != "" {
			return invalid(ec+".backup", b, "a restore goes to a backup or to a point (at, revision), not both: drop one")
		}
		if _, err := in.ChangeStore(ec); err != nil {
			return err
		}
	}
	return nil
}

func (in EtcdManagerRestoreInput) validateMasters() error {
	if len(in.Masters) > 0 && in.Discover != nil {
		return invalid("discover", in.Discover.Region, `give either "masters" or "discover", not both`)
	}
	if len(in.Masters) == 0 && in.Discover == nil {
		return invalid("masters", "", `give either "masters" (each {"name", "docker" or "ssh", "ip"}) or "discover" ({"region"})`)
	}
	names, ips, runtimes := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i, m := range in.Masters {
		f := fmt.Sprintf("masters[%d].", i)
		if m.Name != "" {
			if !nodeName.MatchString(m.Name) {
				return invalid(f+"name", m.Name, "give the master's Kubernetes node name as kubectl get nodes shows it (e.g. ip-10-0-1-10.ec2.internal)")
			}
			if names[m.Name] {
				return invalid(f+"name", m.Name, "list each master once")
			}
			names[m.Name] = true
		}
		if err := in.checkMaster(f, m); err != nil {
			return err
		}
		runtimes[m.RuntimeOf()] = true
		if m.IP != "" {
			if err := CheckIP(f+"ip", m.IP); err != nil {
				return err
			}
			if ips[m.IP] {
				return invalid(f+"ip", m.IP, "every master has its own IP: list each once")
			}
			ips[m.IP] = true
		}
	}
	if runtimes[RuntimeReboot] && len(runtimes) > 1 {
		return invalid("masters[].runtime", RuntimeReboot, "reboot every master or none: a master that comes back minutes after the others is not re-added by etcd-manager's leader")
	}
	if d := in.Discover; d != nil {
		if err := in.checkDiscover(d); err != nil {
			return err
		}
	}
	if err := in.checkSSH(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, ip := range in.LiveMasterIPs {
		if err := CheckIP("liveMasterIPs", ip); err != nil {
			return err
		}
		if seen[ip] {
			return invalid("liveMasterIPs", ip, "list each IP once")
		}
		seen[ip] = true
	}
	if in.CleansLeases() && in.Discover == nil && len(in.LiveMasterIPs) == 0 && len(ips) == 0 {
		return invalid("liveMasterIPs", "", `list the live masters' IPs (or give each master an "ip"), or set "noLeaseCleanup": true`)
	}
	return nil
}

// checkMaster checks that a listed master has what its runtime needs, and
// nothing another runtime would use (a mix-up shows at once).
func (in EtcdManagerRestoreInput) checkMaster(f string, m MasterInput) error {
	rt := m.RuntimeOf()
	switch rt {
	case "":
		return invalid(f+"docker", "", `say how to restart this master's etcd-manager: "docker" (its Docker endpoint), "ssh" (its sshd, for containerd) or "runtime": "reboot" with its "instanceId"`)
	}
	if _, err := oneOf(f+"runtime", rt, "", RuntimeDocker, RuntimeContainerd, RuntimeReboot); err != nil {
		return err
	}
	if rt != RuntimeDocker {
		if m.Docker != "" {
			return invalid(f+"docker", m.Docker, fmt.Sprintf("a %s master has no Docker endpoint: drop docker, or set runtime docker", rt))
		}
		if m.TLSCA != "" || m.TLSCert != "" || m.TLSKey != "" {
			return invalid(f+"tlsCA", m.TLSCA, "Docker TLS files go with runtime docker only")
		}
	}
	if rt != RuntimeContainerd && (m.SSH != "" || m.Containerd != "") {
		return invalid(f+"ssh", m.SSH+m.Containerd, fmt.Sprintf("ssh and containerd go with runtime containerd, not %s", rt))
	}
	if rt != RuntimeReboot && m.InstanceID != "" {
		return invalid(f+"instanceId", m.InstanceID, fmt.Sprintf("instanceId goes with runtime reboot, not %s", rt))
	}
	switch rt {
	case RuntimeDocker:
		if err := CheckDockerEndpoint(f+"docker", m.Docker); err != nil {
			return err
		}
		return checkTLSFiles(f, m.Docker, m.TLSCA, m.TLSCert, m.TLSKey)
	case RuntimeContainerd:
		if m.SSH != "" {
			if err := CheckSSHAddress(f+"ssh", m.SSH); err != nil {
				return err
			}
		}
		if m.Containerd != "" {
			return CheckUnixSocket(f+"containerd", m.Containerd)
		}
		if m.SSH == "" {
			return invalid(f+"ssh", "", "give the master's sshd as [user@]host[:port], through which kopsdr reaches its containerd socket")
		}
	case RuntimeReboot:
		if !instanceID.MatchString(m.InstanceID) {
			return invalid(f+"instanceId", m.InstanceID, "give the master's EC2 instance id, e.g. i-0123456789abcdef0")
		}
		if in.Region == "" {
			return invalid("region", "", "rebooting listed masters needs their EC2 region, e.g. us-east-1")
		}
		return CheckRegion("region", in.Region)
	}
	return nil
}

func (in EtcdManagerRestoreInput) checkDiscover(d *DiscoverInput) error {
	if err := CheckRegion("discover.region", d.Region); err != nil {
		return err
	}
	if _, err := oneOf("discover.runtime", d.Runtime, "", RuntimeDocker, RuntimeContainerd, RuntimeReboot); err != nil {
		return err
	}
	for _, t := range []struct{ field, value, example string }{
		{"discover.dockerEndpointTemplate", d.DockerEndpointTemplate, DefaultDockerEndpointTemplate},
		{"discover.sshAddressTemplate", d.SSHAddressTemplate, DefaultSSHAddressTemplate},
	} {
		if t.value == "" {
			continue
		}
		if _, err := template.New(t.field).Option("missingkey=error").Parse(t.value); err != nil {
			return invalid(t.field, t.value, "write a Go template such as "+t.example)
		}
	}
	if d.ContainerdSocket != "" {
		if err := CheckUnixSocket("discover.containerdSocket", d.ContainerdSocket); err != nil {
			return err
		}
	}
	return checkTLSFiles("discover.", "tcp://", d.TLSCA, d.TLSCert, d.TLSKey)
}

// checkSSH checks the login settings; they are refused where no master is
// reached over SSH, so that a forgotten runtime shows.
func (in EtcdManagerRestoreInput) checkSSH() error {
	s := in.SSH
	if s == nil {
		return nil
	}
	if s.User != "" && !sshUser.MatchString(s.User) {
		return invalid("ssh.user", s.User, "give a login name such as ubuntu (kops's Ubuntu images), admin (Debian) or ec2-user (Amazon Linux)")
	}
	if s.Jump != "" {
		if err := CheckSSHAddress("ssh.jump", s.Jump); err != nil {
			return err
		}
	}
	for _, f := range []struct{ field, path string }{{"ssh.key", s.Key}, {"ssh.knownHosts", s.KnownHosts}} {
		if f.path != "" && !strings.HasPrefix(f.path, "/") {
			return invalid(f.field, f.path, "give an absolute path on the worker (nothing expands ~ there)")
		}
	}
	usesSSH := in.Discover != nil && (in.Discover.Runtime == "" || in.Discover.Runtime == RuntimeContainerd)
	for _, m := range in.Masters {
		usesSSH = usesSSH || m.SSH != ""
	}
	if !usesSSH {
		return invalid("ssh", s.User+s.Key, `no master is reached over SSH: drop "ssh", or give masters an "ssh" address (or discover containerd masters)`)
	}
	return nil
}

var (
	instanceID = regexp.MustCompile(`^i-[0-9a-f]{8,17}$`)
	sshUser    = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,31}$`)
)

// CheckSSHAddress wants [user@]host[:port].
func CheckSSHAddress(field, addr string) error {
	fix := "write [user@]host[:port], e.g. ubuntu@10.0.1.10:22 or 10.0.1.10"
	user, hostport, hasUser := strings.Cut(addr, "@")
	if !hasUser {
		hostport, user = user, ""
	}
	if addr == "" || (hasUser && !sshUser.MatchString(user)) || strings.ContainsAny(hostport, "/ @") {
		return invalid(field, addr, fix)
	}
	host, port := hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	}
	if host == "" {
		return invalid(field, addr, fix)
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return invalid(field, addr, "the port must be 1-65535: "+fix)
		}
	}
	return nil
}

// CheckUnixSocket wants unix:///absolute/path.
func CheckUnixSocket(field, ep string) error {
	u, err := url.Parse(ep)
	if err != nil || u.Scheme != "unix" || !strings.HasPrefix(u.Path, "/") || u.Host != "" {
		return invalid(field, ep, "write unix:///<absolute socket path>, e.g. "+DefaultContainerdSocket)
	}
	return nil
}

// CheckDockerEndpoint wants unix:///path or tcp://host:port.
func CheckDockerEndpoint(field, ep string) error {
	fix := "use unix:///var/run/docker.sock or tcp://<master IP>:2376"
	u, err := url.Parse(ep)
	switch {
	case ep == "":
		return invalid(field, "", "give the master's Docker endpoint: "+fix)
	case err != nil:
		return invalid(field, ep, fix)
	case u.Scheme == "unix" && u.Path == "":
		return invalid(field, ep, "a unix endpoint needs the socket path: "+fix)
	case u.Scheme == "tcp" && (u.Hostname() == "" || u.Port() == ""):
		return invalid(field, ep, "a tcp endpoint needs host and port: "+fix)
	case u.Scheme != "unix" && u.Scheme != "tcp":
		return invalid(field, ep, fix)
	}
	return nil
}

// checkTLSFiles checks that Docker TLS settings go together: a CA for any
// TLS, cert and key in pairs, and only over tcp.
func checkTLSFiles(prefix, endpoint, ca, cert, key string) error {
	if ca == "" && cert == "" && key == "" {
		return nil
	}
	if !strings.HasPrefix(endpoint, "tcp://") {
		return invalid(prefix+"tlsCA", ca, "TLS settings need a tcp:// Docker endpoint; drop them for a unix socket")
	}
	if ca == "" {
		return invalid(prefix+"tlsCA", "", "give the PEM CA cert that signed the daemon's cert (Docker's ca.pem)")
	}
	if (cert == "") != (key == "") {
		return invalid(prefix+"tlsCert", cert, "give both the client cert and its key (Docker's cert.pem and key.pem), or neither")
	}
	return nil
}

// backupName is etcd-manager's backup folder name: UTC RFC 3339 to the
// second, "-", a sequence of at least 6 digits.
var backupName = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ-\d{6,}$`)

// CheckBackupSelector accepts latest, a backup name and latest-before:<RFC3339>.
func CheckBackupSelector(field, sel string) error {
	switch {
	case sel == "latest" || backupName.MatchString(sel):
		return nil
	case strings.HasPrefix(sel, LatestBefore):
		if _, err := time.Parse(time.RFC3339, strings.TrimPrefix(sel, LatestBefore)); err == nil {
			return nil
		}
		return invalid(field, sel, "write latest-before:<RFC 3339 time>, e.g. latest-before:2026-11-20T10:00:00Z")
	}
	return invalid(field, sel, "use latest, a backup name such as 2026-11-21T22:52:16Z-000001 (kopsdr list-backups), or latest-before:<RFC 3339 time>")
}
