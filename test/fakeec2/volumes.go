package fakeec2

import "net/url"

// volumeFilters are the DescribeVolumes filters the fake understands.
var volumeFilters = filterTable[*volume]{
	"volume-id":         func(v *volume) []string { return []string{v.ID} },
	"status":            func(v *volume) []string { return []string{v.State} },
	"availability-zone": func(v *volume) []string { return []string{v.AvailabilityZone} },
	"snapshot-id":       func(v *volume) []string { return []string{v.SnapshotID} },
	"volume-type":       func(v *volume) []string { return []string{v.Type} },
	"size":              func(v *volume) []string { return int32String(v.Size) },
	"encrypted":         func(v *volume) []string { return boolString(v.Encrypted) },
	"attachment.instance-id": func(v *volume) []string {
		if v.Attachment == nil {
			return nil
		}
		return []string{v.Attachment.InstanceID}
	},
	"attachment.device": func(v *volume) []string {
		if v.Attachment == nil {
			return nil
		}
		return []string{v.Attachment.Device}
	},
	"attachment.status": func(v *volume) []string {
		if v.Attachment == nil {
			return nil
		}
		return []string{v.Attachment.State}
	},
}

type xmlVolume struct {
	VolumeID           string             `xml:"volumeId"`
	Size               int32              `xml:"size"`
	SnapshotID         string             `xml:"snapshotId"`
	AvailabilityZone   string             `xml:"availabilityZone"`
	Status             string             `xml:"status"`
	CreateTime         string             `xml:"createTime"`
	Attachments        set[xmlAttachment] `xml:"attachmentSet"`
	Tags               *set[xmlTag]       `xml:"tagSet,omitempty"`
	VolumeType         string             `xml:"volumeType"`
	Iops               int32              `xml:"iops,omitempty"`
	Throughput         int32              `xml:"throughput,omitempty"`
	Encrypted          bool               `xml:"encrypted"`
	KmsKeyID           string             `xml:"kmsKeyId,omitempty"`
	MultiAttachEnabled bool               `xml:"multiAttachEnabled"`
}

type xmlAttachment struct {
	VolumeID            string `xml:"volumeId"`
	InstanceID          string `xml:"instanceId"`
	Device              string `xml:"device"`
	Status              string `xml:"status"`
	AttachTime          string `xml:"attachTime"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

func renderVolume(v Volume) xmlVolume {
	x := xmlVolume{
		VolumeID:         v.ID,
		Size:             v.Size,
		SnapshotID:       v.SnapshotID,
		AvailabilityZone: v.AvailabilityZone,
		Status:           v.State,
		CreateTime:       formatTime(v.CreateTime),
		Tags:             tagSet(v.Tags),
		VolumeType:       v.Type,
		Iops:             v.Iops,
		Throughput:       v.Throughput,
		Encrypted:        v.Encrypted,
		KmsKeyID:         v.KmsKeyID,
	}
	if v.Attachment != nil {
		x.Attachments.Items = []xmlAttachment{renderAttachment(v.ID, *v.Attachment)}
	}
	return x
}

func renderAttachment(volumeID string, a Attachment) xmlAttachment {
	return xmlAttachment{
		VolumeID:            volumeID,
		InstanceID:          a.InstanceID,
		Device:              a.Device,
		Status:              a.State,
		AttachTime:          formatTime(a.AttachTime),
		DeleteOnTermination: a.DeleteOnTermination,
	}
}

// lookupVolume finds a volume or answers EC2's error for the id.
func (s *Server) lookupVolume(id string) (*volume, error) {
	if v, ok := s.volumes[id]; ok {
		return v, nil
	}
	if !wellFormed("vol", id) {
		return nil, errorf("InvalidVolumeID.Malformed", "Invalid id: \"%s\" (expecting \"vol-...\")", id)
	}
	return nil, errorf("InvalidVolume.NotFound", "The volume '%s' does not exist.", id)
}

type describeVolumesResponse struct {
	respMeta
	Volumes   set[xmlVolume] `xml:"volumeSet"`
	NextToken string         `xml:"nextToken,omitempty"`
}

func (s *Server) describeVolumes(r *request) (any, error) {
	ids := r.list("VolumeId")
	fs, err := filters(r, volumeFilters)
	if err != nil {
		return nil, err
	}
	p, err := readPage(r, len(ids) > 0, 5, 500)
	if err != nil {
		return nil, err
	}
	all := sortedBySeq(s.volumes, volSeq)
	if len(ids) > 0 {
		all = nil
		seen := map[string]bool{}
		for _, id := range ids {
			v, err := s.lookupVolume(id)
			if err != nil {
				return nil, err
			}
			if !seen[id] {
				seen[id] = true
				all = append(all, v)
			}
		}
	}
	var hits []*volume
	for _, v := range all {
		if matches(fs, volumeFilters, v, v.Tags) {
			hits = append(hits, v)
		}
	}
	hits, next := cut(p, hits, volSeq)
	out := &describeVolumesResponse{NextToken: next}
	for _, v := range hits {
		out.Volumes.Items = append(out.Volumes.Items, renderVolume(v.Volume))
	}
	return out, nil
}

type volumeResponse struct {
	respMeta
	xmlVolume
}

// clientToken remembers the first CreateVolume with a token: its
// parameters, to refuse a reuse with others, and the volume it made.
type clientToken struct {
	params string
	volume Volume
}

// volumeTypes gives each type's size range in GiB and whether it takes
// iops (required for io1/io2, refused for the rest but gp3).
var volumeTypes = map[string]struct {
	minSize, maxSize int32
	iops             string // "required", "optional" or "refused"
}{
	"gp2":      {1, 16384, "refused"},
	"gp3":      {1, 65536, "optional"},
	"io1":      {4, 16384, "required"},
	"io2":      {4, 65536, "required"},
	"st1":      {125, 16384, "refused"},
	"sc1":      {125, 16384, "refused"},
	"standard": {1, 1024, "refused"},
}

// volumeDefaults fills in the iops and throughput EC2 reports for a type.
func volumeDefaults(typ string, size, iops, throughput int32) (int32, int32) {
	switch typ {
	case "gp2":
		return min(16000, max(100, 3*size)), 0
	case "gp3":
		if iops == 0 {
			iops = 3000
		}
		if throughput == 0 {
			throughput = 125
		}
		return iops, throughput
	case "io1", "io2":
		return iops, 0
	}
	return 0, 0
}

func (s *Server) createVolume(r *request) (any, error) {
	params := canonical(r.form)
	token := r.get("ClientToken")
	if prev, ok := s.tokens[token]; ok && token != "" {
		if prev.params != params {
			return nil, errorf("IdempotentParameterMismatch", "The client token '%s' was already used with other parameters.", token)
		}
		r.replayed = true
		v := prev.volume
		if cur, ok := s.volumes[v.ID]; ok {
			v = cur.Volume
		} else {
			v.State = "deleted"
		}
		return &volumeResponse{xmlVolume: renderVolume(v)}, nil
	}

	v, err := s.newVolume(r)
	if err != nil {
		return nil, err
	}
	s.volumes[v.ID] = v
	if token != "" {
		s.tokens[token] = clientToken{params: params, volume: v.Volume.clone()}
	}
	return &volumeResponse{xmlVolume: renderVolume(v.Volume)}, nil
}

// canonical is a request's identity for ClientToken: every parameter but
// the envelope, in a fixed order.
func canonical(form url.Values) string {
	c := cloneValues(form)
	delete(c, "Action")
	delete(c, "Version")
	return c.Encode()
}

// newVolume validates a CreateVolume and builds the volume, in creating
// state, without storing it.
func (s *Server) newVolume(r *request) (*volume, error) {
	if r.has("AvailabilityZoneId") && !r.has("AvailabilityZone") {
		return nil, errorf("InvalidParameterValue", "fakeec2 does not model AvailabilityZoneId; use AvailabilityZone")
	}
	az, err := r.required("AvailabilityZone")
	if err != nil {
		return nil, err
	}
	if !s.validZone(az) {
		return nil, errorf("InvalidZone.NotFound", "The zone '%s' does not exist.", az)
	}
	typ := cmpOr(r.get("VolumeType"), "gp2")
	rules, known := volumeTypes[typ]
	if !known {
		return nil, errorf("InvalidParameterValue", "Value (%s) for parameter volumeType is invalid.", typ)
	}
	var snap *snapshot
	if id := r.get("SnapshotId"); id != "" {
		if snap, err = s.lookupSnapshot(id); err != nil {
			return nil, err
		}
		if snap.State != "completed" {
			return nil, errorf("IncorrectState", "Snapshot '%s' is in state '%s'; a volume needs a completed snapshot.", id, snap.State)
		}
	}
	size, hasSize, err := r.int32("Size")
	if err != nil {
		return nil, err
	}
	switch {
	case !hasSize && snap == nil:
		return nil, errorf("MissingParameter", "The request must contain the parameter size or snapshotId")
	case !hasSize:
		size = snap.VolumeSize
	case snap != nil && size < snap.VolumeSize:
		return nil, errorf("InvalidParameterValue", "Volume of %dGiB is smaller than snapshot '%s', expect size >= %dGiB", size, snap.ID, snap.VolumeSize)
	}
	if size < rules.minSize || size > rules.maxSize {
		return nil, errorf("InvalidParameterValue", "Volume of size %dGiB is out of range for volume type %s: expect %d-%dGiB.", size, typ, rules.minSize, rules.maxSize)
	}
	iops, hasIops, err := r.int32("Iops")
	if err != nil {
		return nil, err
	}
	switch {
	case hasIops && rules.iops == "refused":
		return nil, errorf("InvalidParameterCombination", "The parameter iops is not supported for %s volumes.", typ)
	case !hasIops && rules.iops == "required":
		return nil, errorf("MissingParameter", "The parameter iops must be specified for %s volumes.", typ)
	}
	throughput, hasThroughput, err := r.int32("Throughput")
	if err != nil {
		return nil, err
	}
	if hasThroughput && typ != "gp3" {
		return nil, errorf("InvalidParameterCombination", "The parameter throughput is not supported for %s volumes.", typ)
	}
	encrypted, kms, err := s.volumeEncryption(r, snap)
	if err != nil {
		return nil, err
	}
	tags, err := r.tagSpecs("volume")
	if err != nil {
		return nil, err
	}

	id, seq := s.newID("vol")
	v := &volume{seq: seq, due: r.now.Add(s.delay), Volume: Volume{
		ID:               id,
		AvailabilityZone: az,
		Size:             size,
		Type:             typ,
		Encrypted:        encrypted,
		KmsKeyID:         kms,
		State:            "creating",
		CreateTime:       r.now,
		Tags:             tags,
	}}
	if snap != nil {
		v.SnapshotID = snap.ID
	}
	v.Iops, v.Throughput = volumeDefaults(typ, size, iops, throughput)
	return v, nil
}

// volumeEncryption applies EC2's rules: a key needs Encrypted=true; a
// volume from an encrypted snapshot is encrypted whatever the request
// says, with the snapshot's key unless another is named; encrypted
// without a key means the account's aws/ebs key.
func (s *Server) volumeEncryption(r *request, snap *snapshot) (bool, string, error) {
	encrypted, kms := r.bool("Encrypted"), r.get("KmsKeyId")
	if kms != "" && !encrypted {
		return false, "", errorf("InvalidParameterDependency", "The parameter KmsKeyId requires the parameter Encrypted to be set.")
	}
	if snap != nil && snap.Encrypted {
		encrypted = true
		kms = cmpOr(kms, snap.KmsKeyID)
	}
	if !encrypted {
		return false, "", nil
	}
	return true, s.normalizeKey(cmpOr(kms, s.DefaultKMSKeyARN())), nil
}

func (s *Server) deleteVolume(r *request) (any, error) {
	id, err := r.required("VolumeId")
	if err != nil {
		return nil, err
	}
	v, err := s.lookupVolume(id)
	if err != nil {
		return nil, err
	}
	if v.Attachment != nil {
		return nil, errorf("VolumeInUse", "Volume %s is currently attached to %s", id, v.Attachment.InstanceID)
	}
	if v.State != "available" && v.State != "error" {
		return nil, errorf("IncorrectState", "The volume '%s' is in the '%s' state.", id, v.State)
	}
	delete(s.volumes, id)
	return acknowledged(), nil
}

type attachmentResponse struct {
	respMeta
	xmlAttachment
}

func (s *Server) attachVolume(r *request) (any, error) {
	var ids [3]string
	for i, name := range []string{"VolumeId", "InstanceId", "Device"} {
		var err error
		if ids[i], err = r.required(name); err != nil {
			return nil, err
		}
	}
	volumeID, instanceID, device := ids[0], ids[1], ids[2]
	v, err := s.lookupVolume(volumeID)
	if err != nil {
		return nil, err
	}
	in, err := s.lookupInstance(instanceID)
	if err != nil {
		return nil, err
	}
	switch {
	case v.Attachment != nil:
		return nil, errorf("VolumeInUse", "%s is already attached to an instance", volumeID)
	case v.State != "available":
		return nil, errorf("IncorrectState", "The volume '%s' is not 'available'.", volumeID)
	case in.State != "running" && in.State != "stopped":
		return nil, errorf("IncorrectInstanceState", "Instance '%s' is not 'running'.", instanceID)
	case v.AvailabilityZone != in.AvailabilityZone:
		return nil, errorf("InvalidVolume.ZoneMismatch", "The volume '%s' is not in the same availability zone as instance '%s'", volumeID, instanceID)
	}
	for _, other := range s.volumes {
		if a := other.Attachment; a != nil && a.InstanceID == instanceID && a.Device == device {
			return nil, errorf("InvalidParameterValue", "Attachment point %s is already in use", device)
		}
	}
	v.Attachment = &Attachment{InstanceID: instanceID, Device: device, State: "attaching", AttachTime: r.now}
	v.State, v.due = "in-use", r.now.Add(s.delay)
	return &attachmentResponse{xmlAttachment: renderAttachment(volumeID, *v.Attachment)}, nil
}

func (s *Server) detachVolume(r *request) (any, error) {
	id, err := r.required("VolumeId")
	if err != nil {
		return nil, err
	}
	v, err := s.lookupVolume(id)
	if err != nil {
		return nil, err
	}
	a := v.Attachment
	switch {
	case a == nil:
		return nil, errorf("IncorrectState", "Volume '%s' is in the '%s' state.", id, v.State)
	case r.get("InstanceId") != "" && r.get("InstanceId") != a.InstanceID,
		r.get("Device") != "" && r.get("Device") != a.Device:
		return nil, errorf("InvalidAttachment.NotFound", "The volume '%s' is not attached to instance '%s' as device '%s'", id, r.get("InstanceId"), r.get("Device"))
	case a.State == "detaching":
		return nil, errorf("IncorrectState", "Volume '%s' is already detaching.", id)
	}
	a.State, v.due = "detaching", r.now.Add(s.delay)
	return &attachmentResponse{xmlAttachment: renderAttachment(id, *a)}, nil
}
