package fakeec2

import (
	"cmp"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Instance is an EC2 instance as tests seed and read it.
type Instance struct {
	ID               string // "" = generated (i-0...)
	AvailabilityZone string // "" = the region's "a" zone
	PrivateIP        string // "" = generated 10.0.x.y
	InstanceType     string // "" = t3.medium
	// State is pending, running, stopping, stopped, shutting-down or
	// terminated ("" = running). A seeded pending or stopping instance
	// finishes its transition after the transition delay.
	State      string
	Tags       map[string]string
	LaunchTime time.Time // zero = now
	// Reboots counts RebootInstances calls that hit this instance.
	Reboots int
}

// Attachment is a volume's attachment to an instance.
type Attachment struct {
	InstanceID          string
	Device              string // e.g. /dev/xvdu
	State               string // attaching, attached or detaching ("" = attached)
	AttachTime          time.Time
	DeleteOnTermination bool
}

// Volume is an EBS volume as tests seed and read it.
type Volume struct {
	ID               string // "" = generated (vol-0...)
	AvailabilityZone string // "" = the region's "a" zone
	Size             int32  // GiB; 0 = 20
	Type             string // "" = gp3
	Iops             int32  // 0 = the type's default
	Throughput       int32  // MiB/s, gp3 only; 0 = 125 for gp3
	Encrypted        bool
	KmsKeyID         string // "" with Encrypted = DefaultKMSKeyARN
	SnapshotID       string
	// State is creating, available, in-use or error ("" = in-use with an
	// Attachment, available without).
	State      string
	CreateTime time.Time // zero = now
	Tags       map[string]string
	Attachment *Attachment
}

// Snapshot is an EBS snapshot as tests seed and read it.
type Snapshot struct {
	ID          string // "" = generated (snap-0...)
	VolumeID    string
	VolumeSize  int32 // GiB; 0 = 20
	Description string
	Encrypted   bool
	KmsKeyID    string // "" with Encrypted = DefaultKMSKeyARN
	// State is pending, completed or error ("" = completed).
	State     string
	Progress  string    // "0%".."100%", kept in step with State
	StartTime time.Time // zero = now
	OwnerID   string    // always the server's account
	Tags      map[string]string
}

// The records the server keeps: the public shape plus creation order and
// the time the current transition ends (zero = none in flight).
type instance struct {
	Instance
	seq uint64
	due time.Time
}

type volume struct {
	Volume
	seq uint64
	due time.Time
}

type snapshot struct {
	Snapshot
	seq uint64
	due time.Time
}

// Instance states and their EC2 codes.
var stateCodes = map[string]int32{
	"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80,
}

// idBase makes generated ids look like EC2's (17 hex digits after the
// prefix) while staying ordered and deterministic.
const idBase = 0x3c9a1e5b7d2f4000

func (s *Server) newID(prefix string) (string, uint64) {
	s.seq++
	return fmt.Sprintf("%s-0%016x", prefix, idBase+s.seq), s.seq
}

var idPattern = regexp.MustCompile(`^(i|vol|snap)-([0-9a-f]{8}|[0-9a-f]{17})$`)

func wellFormed(prefix, id string) bool {
	m := idPattern.FindStringSubmatch(id)
	return m != nil && m[1] == prefix
}

func (s *Server) defaultZone() string { return s.region + "a" }

// validZone accepts the region's zones: the region name and one letter.
func (s *Server) validZone(az string) bool {
	rest, ok := strings.CutPrefix(az, s.region)
	return ok && len(rest) == 1 && rest[0] >= 'a' && rest[0] <= 'z'
}

// normalizeKey turns a KmsKeyId into what EC2 reports back. Without a real
// KMS only the forms whose ARN is predictable are rewritten.
func (s *Server) normalizeKey(k string) string {
	switch {
	case k == "":
		return ""
	case k == "alias/aws/ebs" || k == "arn:aws:kms:"+s.region+":"+s.account+":alias/aws/ebs":
		return s.DefaultKMSKeyARN()
	case strings.HasPrefix(k, "arn:") || strings.HasPrefix(k, "alias/"):
		return k
	}
	return "arn:aws:kms:" + s.region + ":" + s.account + ":key/" + k
}

// advance applies every transition that is due by now. It runs before
// every read, which is all "over time" needs: nobody can observe a state
// without reading it.
func (s *Server) advance(now time.Time) {
	for _, v := range s.volumes {
		if v.due.IsZero() || now.Before(v.due) {
			continue
		}
		v.due = time.Time{}
		if v.State == "creating" {
			v.State = "available"
		}
		if a := v.Attachment; a != nil {
			switch a.State {
			case "attaching":
				a.State = "attached"
			case "detaching":
				v.Attachment = nil
				v.State = "available"
			}
		}
	}
	for _, sn := range s.snapshots {
		if sn.State != "pending" {
			continue
		}
		if sn.due.IsZero() || !now.Before(sn.due) {
			sn.due = time.Time{}
			sn.State, sn.Progress = "completed", "100%"
			continue
		}
		// Progress rises with time but never reaches 100% while pending.
		total, done := sn.due.Sub(sn.StartTime), now.Sub(sn.StartTime)
		pct := int64(99)
		if total > 0 {
			pct = min(99, max(0, int64(done)*100/int64(total)))
		}
		sn.Progress = fmt.Sprintf("%d%%", pct)
	}
	for _, in := range s.instances {
		if in.due.IsZero() || now.Before(in.due) {
			continue
		}
		in.due = time.Time{}
		switch in.State {
		case "stopping":
			in.State = "stopped"
		case "pending":
			in.State = "running"
		case "shutting-down":
			in.State = "terminated"
		}
	}
}

func cloneTags(t map[string]string) map[string]string {
	if t == nil {
		return map[string]string{}
	}
	return maps.Clone(t)
}

func (v Volume) clone() Volume {
	v.Tags = cloneTags(v.Tags)
	if v.Attachment != nil {
		a := *v.Attachment
		v.Attachment = &a
	}
	return v
}

func (sn Snapshot) clone() Snapshot {
	sn.Tags = cloneTags(sn.Tags)
	return sn
}

func (in Instance) clone() Instance {
	in.Tags = cloneTags(in.Tags)
	return in
}

// AddInstance seeds an instance and returns its id. Empty fields get the
// defaults documented on Instance. It panics on a duplicate id.
func (s *Server) AddInstance(in Instance) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	rec := &instance{Instance: in.clone()}
	id, seq := s.newID("i")
	rec.seq = seq
	if rec.ID == "" {
		rec.ID = id
	}
	if _, dup := s.instances[rec.ID]; dup {
		panic("fakeec2: AddInstance: duplicate id " + rec.ID)
	}
	rec.AvailabilityZone = cmpOr(rec.AvailabilityZone, s.defaultZone())
	rec.PrivateIP = cmpOr(rec.PrivateIP, fmt.Sprintf("10.0.%d.%d", (seq>>8)&0xff, seq&0xff|1))
	rec.InstanceType = cmpOr(rec.InstanceType, "t3.medium")
	rec.State = cmpOr(rec.State, "running")
	if _, known := stateCodes[rec.State]; !known {
		panic("fakeec2: AddInstance: unknown state " + rec.State)
	}
	if rec.LaunchTime.IsZero() {
		rec.LaunchTime = now
	}
	if rec.State == "pending" || rec.State == "stopping" || rec.State == "shutting-down" {
		rec.due = now.Add(s.delay)
	}
	s.instances[rec.ID] = rec
	return rec.ID
}

// AddVolume seeds a volume and returns its id. Empty fields get the
// defaults documented on Volume. It panics on a duplicate id or an
// attachment to an instance that was not added first.
func (s *Server) AddVolume(v Volume) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	rec := &volume{Volume: v.clone()}
	id, seq := s.newID("vol")
	rec.seq = seq
	if rec.ID == "" {
		rec.ID = id
	}
	if _, dup := s.volumes[rec.ID]; dup {
		panic("fakeec2: AddVolume: duplicate id " + rec.ID)
	}
	rec.AvailabilityZone = cmpOr(rec.AvailabilityZone, s.defaultZone())
	if rec.Size == 0 {
		rec.Size = 20
	}
	rec.Type = cmpOr(rec.Type, "gp3")
	rec.Iops, rec.Throughput = volumeDefaults(rec.Type, rec.Size, rec.Iops, rec.Throughput)
	if rec.Encrypted {
		rec.KmsKeyID = s.normalizeKey(cmpOr(rec.KmsKeyID, s.DefaultKMSKeyARN()))
	}
	if rec.CreateTime.IsZero() {
		rec.CreateTime = now
	}
	if a := rec.Attachment; a != nil {
		if _, ok := s.instances[a.InstanceID]; !ok {
			panic("fakeec2: AddVolume: attachment to unknown instance " + a.InstanceID + " (AddInstance first)")
		}
		a.State = cmpOr(a.State, "attached")
		a.Device = cmpOr(a.Device, "/dev/xvdf")
		if a.AttachTime.IsZero() {
			a.AttachTime = now
		}
		rec.State = cmpOr(rec.State, "in-use")
		if a.State != "attached" {
			rec.due = now.Add(s.delay)
		}
	}
	rec.State = cmpOr(rec.State, "available")
	if rec.State == "creating" {
		rec.due = now.Add(s.delay)
	}
	s.volumes[rec.ID] = rec
	return rec.ID
}

// AddSnapshot seeds a snapshot and returns its id. Empty fields get the
// defaults documented on Snapshot. It panics on a duplicate id.
func (s *Server) AddSnapshot(sn Snapshot) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	rec := &snapshot{Snapshot: sn.clone()}
	id, seq := s.newID("snap")
	rec.seq = seq
	if rec.ID == "" {
		rec.ID = id
	}
	if _, dup := s.snapshots[rec.ID]; dup {
		panic("fakeec2: AddSnapshot: duplicate id " + rec.ID)
	}
	if rec.VolumeSize == 0 {
		rec.VolumeSize = 20
	}
	if rec.Encrypted {
		rec.KmsKeyID = s.normalizeKey(cmpOr(rec.KmsKeyID, s.DefaultKMSKeyARN()))
	}
	if rec.StartTime.IsZero() {
		rec.StartTime = now
	}
	rec.OwnerID = s.account
	rec.State = cmpOr(rec.State, "completed")
	switch rec.State {
	case "pending":
		rec.Progress = "0%"
		rec.due = now.Add(s.delay)
	case "completed":
		rec.Progress = "100%"
	}
	s.snapshots[rec.ID] = rec
	return rec.ID
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// sortedBySeq returns a map's records in creation order.
func sortedBySeq[T any](m map[string]*T, seq func(*T) uint64) []*T {
	out := make([]*T, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *T) int { return cmp.Compare(seq(a), seq(b)) })
	return out
}

func volSeq(v *volume) uint64    { return v.seq }
func snapSeq(v *snapshot) uint64 { return v.seq }
func instSeq(v *instance) uint64 { return v.seq }

// tick brings the state up to now before an accessor reads it. s.mu held.
func (s *Server) tick() { s.advance(s.now()) }

// Volumes returns every volume, in creation order, as of now.
func (s *Server) Volumes() []Volume {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tick()
	var out []Volume
	for _, v := range sortedBySeq(s.volumes, volSeq) {
		out = append(out, v.Volume.clone())
	}
	return out
}

// Snapshots returns every snapshot, in creation order, as of now.
func (s *Server) Snapshots() []Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tick()
	var out []Snapshot
	for _, sn := range sortedBySeq(s.snapshots, snapSeq) {
		out = append(out, sn.Snapshot.clone())
	}
	return out
}

// Instances returns every instance, in creation order, as of now.
func (s *Server) Instances() []Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tick()
	var out []Instance
	for _, in := range sortedBySeq(s.instances, instSeq) {
		out = append(out, in.Instance.clone())
	}
	return out
}

// Volume returns one volume as of now.
func (s *Server) Volume(id string) (Volume, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tick()
	v, ok := s.volumes[id]
	if !ok {
		return Volume{}, false
	}
	return v.Volume.clone(), true
}

// Snapshot returns one snapshot as of now.
func (s *Server) Snapshot(id string) (Snapshot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tick()
	sn, ok := s.snapshots[id]
	if !ok {
		return Snapshot{}, false
	}
	return sn.Snapshot.clone(), true
}

// Instance returns one instance as of now.
func (s *Server) Instance(id string) (Instance, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tick()
	in, ok := s.instances[id]
	if !ok {
		return Instance{}, false
	}
	return in.Instance.clone(), true
}

// SetSnapshotState forces a snapshot's state, e.g. "error" to test how a
// caller handles a failed snapshot. "pending" restarts the transition to
// completed; any other state stays put. It reports whether the snapshot
// exists.
func (s *Server) SetSnapshotState(id, state string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, ok := s.snapshots[id]
	if !ok {
		return false
	}
	sn.State, sn.due = state, time.Time{}
	switch state {
	case "completed":
		sn.Progress = "100%"
	case "pending":
		sn.StartTime, sn.due = s.now(), s.now().Add(s.delay)
	}
	return true
}

// SetVolumeState forces a volume's state, e.g. "error". "creating"
// restarts the transition to available; any other state stays put (an
// attachment in flight is frozen too). It reports whether the volume
// exists.
func (s *Server) SetVolumeState(id, state string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.volumes[id]
	if !ok {
		return false
	}
	v.State, v.due = state, time.Time{}
	if state == "creating" {
		v.due = s.now().Add(s.delay)
	}
	return true
}
