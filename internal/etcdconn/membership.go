package etcdconn

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// EndpointState is what one endpoint says about itself: the cluster it
// serves (from the response header, so a member left on an old cluster
// shows its old cluster id), its member id, and the member list of the
// cluster it serves.
type EndpointState struct {
	Endpoint  string `json:"endpoint"`
	ClusterID uint64 `json:"clusterId,omitempty"`
	MemberID  uint64 `json:"memberId,omitempty"`
	Members   int    `json:"members,omitempty"` // in the member list this endpoint serves
	Error     string `json:"error,omitempty"`   // set when it did not answer
}

// Answers reports whether the endpoint answered.
func (e EndpointState) Answers() bool { return e.Error == "" }

// Membership is one look at every endpoint of an etcd cluster. Each
// endpoint is asked on its own connection: a client balancing over all
// endpoints would let a member still serving an old cluster answer for the
// whole cluster now and then, or hide behind the others.
type Membership struct {
	Endpoints []EndpointState `json:"endpoints"`
}

// CheckMembership asks every endpoint for its status and member list, at
// once. An endpoint that does not answer within ctx is reported with its
// error, never dropped. cli must have been made for these endpoints (New),
// so that its TLS settings apply.
func CheckMembership(ctx context.Context, cli *clientv3.Client, endpoints []string) Membership {
	out := make([]EndpointState, len(endpoints))
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = endpointState(ctx, cli, ep)
		}()
	}
	wg.Wait()
	return Membership{Endpoints: out}
}

func endpointState(ctx context.Context, cli *clientv3.Client, ep string) EndpointState {
	st := EndpointState{Endpoint: ep}
	conn, err := cli.Dial(ep)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	defer conn.Close()
	status, err := pb.NewMaintenanceClient(conn).Status(ctx, &pb.StatusRequest{}, grpc.WaitForReady(true))
	if err != nil {
		st.Error = err.Error()
		return st
	}
	st.ClusterID, st.MemberID = status.GetHeader().GetClusterId(), status.GetHeader().GetMemberId()
	// Linearizable=false: a member list this member knows is enough to
	// count members, and a member that has lost its quorum still says
	// which cluster it belongs to.
	ml, err := pb.NewClusterClient(conn).MemberList(ctx, &pb.MemberListRequest{Linearizable: false}, grpc.WaitForReady(true))
	if err != nil {
		st.Error = "member list: " + err.Error()
		return st
	}
	st.Members = len(ml.GetMembers())
	return st
}

// Clusters counts the answering endpoints per cluster id.
func (m Membership) Clusters() map[uint64]int {
	out := map[uint64]int{}
	for _, e := range m.Endpoints {
		if e.Answers() {
			out[e.ClusterID]++
		}
	}
	return out
}

// Majority is the cluster id most answering endpoints serve, other than
// exclude (the old cluster's id when it is known, 0 for none), and how
// many serve it; ties go to the smaller id so that the answer is stable.
func (m Membership) Majority(exclude uint64) (uint64, int) {
	var best uint64
	n := 0
	ids := make([]uint64, 0)
	for id := range m.Clusters() {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if c := m.Clusters()[id]; (exclude == 0 || id != exclude) && c > n {
			best, n = id, c
		}
	}
	return best, n
}

// Outside lists the endpoints that are not serving cluster: the ones that
// do not answer and the ones that answer for another cluster.
func (m Membership) Outside(cluster uint64) []EndpointState {
	var out []EndpointState
	for _, e := range m.Endpoints {
		if !e.Answers() || e.ClusterID != cluster {
			out = append(out, e)
		}
	}
	return out
}

// Members is how many members cluster's member list has, as the first
// endpoint serving it says (0 when none answers for it).
func (m Membership) Members(cluster uint64) int {
	for _, e := range m.Endpoints {
		if e.Answers() && e.ClusterID == cluster {
			return e.Members
		}
	}
	return 0
}

// Complete reports whether every endpoint answers for one cluster whose
// member list has want members, and says what is missing when not. With
// old set, a cluster with that id does not count (the restore replaced it).
func (m Membership) Complete(want int, old uint64) (uint64, bool, string) {
	id, n := m.Majority(old)
	if n == 0 {
		if old != 0 && m.Clusters()[old] > 0 {
			return 0, false, fmt.Sprintf("every answering endpoint still serves the old cluster %x", old)
		}
		return 0, false, "no endpoint answers"
	}
	var missing []string
	for _, e := range m.Outside(id) {
		missing = append(missing, e.Describe(old))
	}
	sort.Strings(missing)
	if got := m.Members(id); got != want || len(missing) > 0 {
		msg := fmt.Sprintf("cluster %x: %d of %d members listed, %d of %d endpoints serve it", id, got, want, len(m.Endpoints)-len(missing), len(m.Endpoints))
		if len(missing) > 0 {
			msg += "; " + strings.Join(missing, "; ")
		}
		return id, false, msg
	}
	return id, true, fmt.Sprintf("cluster %x: %d members, every endpoint serves it", id, want)
}

// Describe says what an endpoint serves, naming the old cluster as such.
func (e EndpointState) Describe(old uint64) string {
	switch {
	case !e.Answers():
		return fmt.Sprintf("%s does not answer (%s)", e.Endpoint, e.Error)
	case old != 0 && e.ClusterID == old:
		return fmt.Sprintf("%s still serves the OLD cluster %x as member %x", e.Endpoint, e.ClusterID, e.MemberID)
	default:
		return fmt.Sprintf("%s serves cluster %x as member %x", e.Endpoint, e.ClusterID, e.MemberID)
	}
}
