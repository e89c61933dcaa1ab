package fakeec2

import (
	"fmt"
	"slices"
	"strings"
)

// instanceFilters are the DescribeInstances filters the fake understands.
// block-device-mapping.* need the server, so the table is built per call.
func (s *Server) instanceFilters() filterTable[*instance] {
	return filterTable[*instance]{
		"instance-id":         func(in *instance) []string { return []string{in.ID} },
		"instance-state-name": func(in *instance) []string { return []string{in.State} },
		"instance-state-code": func(in *instance) []string { return int32String(stateCodes[in.State]) },
		"availability-zone":   func(in *instance) []string { return []string{in.AvailabilityZone} },
		"private-ip-address":  func(in *instance) []string { return []string{in.PrivateIP} },
		"instance-type":       func(in *instance) []string { return []string{in.InstanceType} },
		"block-device-mapping.volume-id": func(in *instance) []string {
			var ids []string
			for _, v := range s.attachedTo(in.ID) {
				ids = append(ids, v.ID)
			}
			return ids
		},
		"block-device-mapping.device-name": func(in *instance) []string {
			var devs []string
			for _, v := range s.attachedTo(in.ID) {
				devs = append(devs, v.Attachment.Device)
			}
			return devs
		},
	}
}

// attachedTo returns the volumes attached to an instance, by device name.
func (s *Server) attachedTo(instanceID string) []*volume {
	var out []*volume
	for _, v := range s.volumes {
		if v.Attachment != nil && v.Attachment.InstanceID == instanceID {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b *volume) int { return strings.Compare(a.Attachment.Device, b.Attachment.Device) })
	return out
}

type xmlState struct {
	Code int32  `xml:"code"`
	Name string `xml:"name"`
}

func stateOf(name string) xmlState { return xmlState{Code: stateCodes[name], Name: name} }

type xmlInstance struct {
	InstanceID     string   `xml:"instanceId"`
	ImageID        string   `xml:"imageId"`
	State          xmlState `xml:"instanceState"`
	PrivateDNSName string   `xml:"privateDnsName"`
	InstanceType   string   `xml:"instanceType"`
	LaunchTime     string   `xml:"launchTime"`
	Placement      struct {
		AvailabilityZone string `xml:"availabilityZone"`
		Tenancy          string `xml:"tenancy"`
	} `xml:"placement"`
	PrivateIP      string                     `xml:"privateIpAddress"`
	RootDeviceType string                     `xml:"rootDeviceType"`
	RootDeviceName string                     `xml:"rootDeviceName"`
	BlockDevices   set[xmlBlockDeviceMapping] `xml:"blockDeviceMapping"`
	Tags           *set[xmlTag]               `xml:"tagSet,omitempty"`
}

type xmlBlockDeviceMapping struct {
	DeviceName string `xml:"deviceName"`
	Ebs        struct {
		VolumeID            string `xml:"volumeId"`
		Status              string `xml:"status"`
		AttachTime          string `xml:"attachTime"`
		DeleteOnTermination bool   `xml:"deleteOnTermination"`
	} `xml:"ebs"`
}

type xmlReservation struct {
	ReservationID string           `xml:"reservationId"`
	OwnerID       string           `xml:"ownerId"`
	Groups        set[struct{}]    `xml:"groupSet"`
	Instances     set[xmlInstance] `xml:"instancesSet"`
}

func (s *Server) renderInstance(in *instance) xmlInstance {
	x := xmlInstance{
		InstanceID:     in.ID,
		ImageID:        "ami-0fa4e3c2b1d0f9e8a",
		State:          stateOf(in.State),
		PrivateDNSName: s.privateDNS(in.PrivateIP),
		InstanceType:   in.InstanceType,
		LaunchTime:     formatTime(in.LaunchTime),
		PrivateIP:      in.PrivateIP,
		RootDeviceType: "ebs",
		RootDeviceName: "/dev/xvda",
		Tags:           tagSet(in.Tags),
	}
	x.Placement.AvailabilityZone = in.AvailabilityZone
	x.Placement.Tenancy = "default"
	for _, v := range s.attachedTo(in.ID) {
		var m xmlBlockDeviceMapping
		m.DeviceName = v.Attachment.Device
		m.Ebs.VolumeID = v.ID
		m.Ebs.Status = v.Attachment.State
		m.Ebs.AttachTime = formatTime(v.Attachment.AttachTime)
		m.Ebs.DeleteOnTermination = v.Attachment.DeleteOnTermination
		x.BlockDevices.Items = append(x.BlockDevices.Items, m)
	}
	return x
}

// privateDNS follows EC2's naming: ec2.internal in us-east-1,
// <region>.compute.internal elsewhere.
func (s *Server) privateDNS(ip string) string {
	domain := s.region + ".compute.internal"
	if s.region == "us-east-1" {
		domain = "ec2.internal"
	}
	return "ip-" + strings.ReplaceAll(ip, ".", "-") + "." + domain
}

// lookupInstance finds an instance or answers EC2's error for the id.
func (s *Server) lookupInstance(id string) (*instance, error) {
	if in, ok := s.instances[id]; ok {
		return in, nil
	}
	if !wellFormed("i", id) {
		return nil, errorf("InvalidInstanceID.Malformed", "Invalid id: \"%s\"", id)
	}
	return nil, errorf("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
}

// lookupInstances resolves InstanceId.N, all or nothing, so that an action
// on several instances changes none when one id is wrong.
func (s *Server) lookupInstances(r *request) ([]*instance, error) {
	ids := r.list("InstanceId")
	if len(ids) == 0 {
		return nil, errorf("MissingParameter", "The request must contain the parameter InstanceId")
	}
	var out []*instance
	for _, id := range ids {
		in, err := s.lookupInstance(id)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, in) {
			out = append(out, in)
		}
	}
	return out, nil
}

type describeInstancesResponse struct {
	respMeta
	Reservations set[xmlReservation] `xml:"reservationSet"`
	NextToken    string              `xml:"nextToken,omitempty"`
}

func (s *Server) describeInstances(r *request) (any, error) {
	table := s.instanceFilters()
	ids := r.list("InstanceId")
	fs, err := filters(r, table)
	if err != nil {
		return nil, err
	}
	p, err := readPage(r, len(ids) > 0, 5, 1000)
	if err != nil {
		return nil, err
	}
	all := sortedBySeq(s.instances, instSeq)
	if len(ids) > 0 {
		if all, err = s.lookupInstances(r); err != nil {
			return nil, err
		}
	}
	var hits []*instance
	for _, in := range all {
		if matches(fs, table, in, in.Tags) {
			hits = append(hits, in)
		}
	}
	hits, next := cut(p, hits, instSeq)
	out := &describeInstancesResponse{NextToken: next}
	// One reservation per instance: the fake has no RunInstances that
	// would group them.
	for _, in := range hits {
		res := xmlReservation{ReservationID: fmt.Sprintf("r-0%016x", idBase+in.seq), OwnerID: s.account}
		res.Instances.Items = []xmlInstance{s.renderInstance(in)}
		out.Reservations.Items = append(out.Reservations.Items, res)
	}
	return out, nil
}

type xmlStateChange struct {
	InstanceID string   `xml:"instanceId"`
	Current    xmlState `xml:"currentState"`
	Previous   xmlState `xml:"previousState"`
}

type stateChangeResponse struct {
	respMeta
	Instances set[xmlStateChange] `xml:"instancesSet"`
}

// changeStates validates every instance against allowed (state -> next
// state, "" = leave as is) before changing any, then starts the
// transitions.
func (s *Server) changeStates(r *request, verb string, allowed map[string]string) (any, error) {
	ins, err := s.lookupInstances(r)
	if err != nil {
		return nil, err
	}
	for _, in := range ins {
		if _, ok := allowed[in.State]; !ok {
			return nil, errorf("IncorrectInstanceState", "The instance '%s' is not in a state from which it can be %s.", in.ID, verb)
		}
	}
	out := &stateChangeResponse{}
	for _, in := range ins {
		prev := in.State
		if next := allowed[prev]; next != "" {
			in.State, in.due = next, r.now.Add(s.delay)
		}
		out.Instances.Items = append(out.Instances.Items, xmlStateChange{
			InstanceID: in.ID, Current: stateOf(in.State), Previous: stateOf(prev),
		})
	}
	return out, nil
}

func (s *Server) stopInstances(r *request) (any, error) {
	return s.changeStates(r, "stopped", map[string]string{"running": "stopping", "stopping": "", "stopped": ""})
}

func (s *Server) startInstances(r *request) (any, error) {
	return s.changeStates(r, "started", map[string]string{"stopped": "pending", "pending": "", "running": ""})
}

// rebootInstances counts, and tells WithRebootHook: a reboot keeps the
// instance running, as DescribeInstances shows on EC2.
func (s *Server) rebootInstances(r *request) (any, error) {
	ins, err := s.lookupInstances(r)
	if err != nil {
		return nil, err
	}
	for _, in := range ins {
		if in.State != "running" {
			return nil, errorf("IncorrectInstanceState", "The instance '%s' is not in the 'running' state.", in.ID)
		}
	}
	for _, in := range ins {
		in.Reboots++
		if s.onReboot != nil {
			go s.onReboot(in.ID)
		}
	}
	return acknowledged(), nil
}
