package etcdconn

import (
	"strings"
	"testing"
)

func TestMembershipComplete(t *testing.T) {
	const old, restored = 0xaaa, 0xbbb
	ep := func(name string, cluster uint64, members int) EndpointState {
		return EndpointState{Endpoint: name, ClusterID: cluster, MemberID: 1, Members: members}
	}
	down := EndpointState{Endpoint: "https://c:4002", Error: "connection refused"}
	for _, tc := range []struct {
		name     string
		eps      []EndpointState
		old      uint64
		wantID   uint64
		complete bool
		says     []string
	}{
		{"all restored", []EndpointState{ep("https://a:4002", restored, 3), ep("https://b:4002", restored, 3), ep("https://c:4002", restored, 3)},
			old, restored, true, nil},
		{"all still old", []EndpointState{ep("https://a:4002", old, 3), ep("https://b:4002", old, 3), ep("https://c:4002", old, 3)},
			old, 0, false, []string{"still serves the old cluster"}},
		{"one member left on the old cluster", []EndpointState{ep("https://a:4002", restored, 3), ep("https://b:4002", old, 3), ep("https://c:4002", restored, 3)},
			old, restored, false, []string{"https://b:4002 still serves the OLD cluster aaa", "2 of 3 endpoints"}},
		{"old id unknown: the majority is the new cluster", []EndpointState{ep("https://a:4002", restored, 3), ep("https://b:4002", old, 3), ep("https://c:4002", restored, 3)},
			0, restored, false, []string{"https://b:4002 serves cluster aaa"}},
		{"one endpoint never answers", []EndpointState{ep("https://a:4002", restored, 3), ep("https://b:4002", restored, 3), down},
			old, restored, false, []string{"https://c:4002 does not answer"}},
		{"too few members listed", []EndpointState{ep("https://a:4002", restored, 2), ep("https://b:4002", restored, 2)},
			old, restored, false, []string{"2 of 3 members"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, complete, msg := Membership{Endpoints: tc.eps}.Complete(3, tc.old)
			if id != tc.wantID || complete != tc.complete {
				t.Fatalf("Complete = %x, %v, %q; want %x, %v", id, complete, msg, tc.wantID, tc.complete)
			}
			for _, s := range tc.says {
				if !strings.Contains(msg, s) {
					t.Errorf("message %q does not say %q", msg, s)
				}
			}
		})
	}
}
