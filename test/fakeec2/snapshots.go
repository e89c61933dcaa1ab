package fakeec2

// snapshotFilters are the DescribeSnapshots filters the fake understands.
var snapshotFilters = filterTable[*snapshot]{
	"snapshot-id": func(s *snapshot) []string { return []string{s.ID} },
	"volume-id":   func(s *snapshot) []string { return []string{s.VolumeID} },
	"status":      func(s *snapshot) []string { return []string{s.State} },
	"owner-id":    func(s *snapshot) []string { return []string{s.OwnerID} },
	"description": func(s *snapshot) []string { return []string{s.Description} },
	"encrypted":   func(s *snapshot) []string { return boolString(s.Encrypted) },
	"progress":    func(s *snapshot) []string { return []string{s.Progress} },
	"volume-size": func(s *snapshot) []string { return int32String(s.VolumeSize) },
}

type xmlSnapshot struct {
	SnapshotID  string       `xml:"snapshotId"`
	VolumeID    string       `xml:"volumeId"`
	Status      string       `xml:"status"`
	StartTime   string       `xml:"startTime"`
	Progress    string       `xml:"progress"`
	OwnerID     string       `xml:"ownerId"`
	VolumeSize  int32        `xml:"volumeSize"`
	Description string       `xml:"description"`
	Encrypted   bool         `xml:"encrypted"`
	KmsKeyID    string       `xml:"kmsKeyId,omitempty"`
	Tags        *set[xmlTag] `xml:"tagSet,omitempty"`
	StorageTier string       `xml:"storageTier"`
}

func renderSnapshot(sn Snapshot) xmlSnapshot {
	return xmlSnapshot{
		SnapshotID:  sn.ID,
		VolumeID:    sn.VolumeID,
		Status:      sn.State,
		StartTime:   formatTime(sn.StartTime),
		Progress:    sn.Progress,
		OwnerID:     sn.OwnerID,
		VolumeSize:  sn.VolumeSize,
		Description: sn.Description,
		Encrypted:   sn.Encrypted,
		KmsKeyID:    sn.KmsKeyID,
		Tags:        tagSet(sn.Tags),
		StorageTier: "standard",
	}
}

// lookupSnapshot finds a snapshot or answers EC2's error for the id.
func (s *Server) lookupSnapshot(id string) (*snapshot, error) {
	if sn, ok := s.snapshots[id]; ok {
		return sn, nil
	}
	if !wellFormed("snap", id) {
		return nil, errorf("InvalidSnapshotID.Malformed", "Invalid id: \"%s\" (expecting \"snap-...\")", id)
	}
	return nil, errorf("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
}

type snapshotResponse struct {
	respMeta
	xmlSnapshot
}

func (s *Server) createSnapshot(r *request) (any, error) {
	volumeID, err := r.required("VolumeId")
	if err != nil {
		return nil, err
	}
	v, err := s.lookupVolume(volumeID)
	if err != nil {
		return nil, err
	}
	if v.State != "available" && v.State != "in-use" {
		return nil, errorf("IncorrectState", "The volume '%s' is not in the 'available' or 'in-use' state (it is '%s').", volumeID, v.State)
	}
	tags, err := r.tagSpecs("snapshot")
	if err != nil {
		return nil, err
	}
	id, seq := s.newID("snap")
	sn := &snapshot{seq: seq, due: r.now.Add(s.delay), Snapshot: Snapshot{
		ID:          id,
		VolumeID:    volumeID,
		VolumeSize:  v.Size,
		Description: r.get("Description"),
		Encrypted:   v.Encrypted,
		KmsKeyID:    v.KmsKeyID,
		State:       "pending",
		Progress:    "0%",
		StartTime:   r.now,
		OwnerID:     s.account,
		Tags:        tags,
	}}
	s.snapshots[id] = sn
	return &snapshotResponse{xmlSnapshot: renderSnapshot(sn.Snapshot)}, nil
}

type describeSnapshotsResponse struct {
	respMeta
	Snapshots set[xmlSnapshot] `xml:"snapshotSet"`
	NextToken string           `xml:"nextToken,omitempty"`
}

func (s *Server) describeSnapshots(r *request) (any, error) {
	ids := r.list("SnapshotId")
	fs, err := filters(r, snapshotFilters)
	if err != nil {
		return nil, err
	}
	p, err := readPage(r, len(ids) > 0, 5, 1000)
	if err != nil {
		return nil, err
	}
	all := sortedBySeq(s.snapshots, snapSeq)
	if len(ids) > 0 {
		all = nil
		seen := map[string]bool{}
		for _, id := range ids {
			sn, err := s.lookupSnapshot(id)
			if err != nil {
				return nil, err
			}
			if !seen[id] {
				seen[id] = true
				all = append(all, sn)
			}
		}
	}
	owners := r.list("Owner")
	var hits []*snapshot
	for _, sn := range all {
		if s.ownedBy(owners) && matches(fs, snapshotFilters, sn, sn.Tags) {
			hits = append(hits, sn)
		}
	}
	hits, next := cut(p, hits, snapSeq)
	out := &describeSnapshotsResponse{NextToken: next}
	for _, sn := range hits {
		out.Snapshots.Items = append(out.Snapshots.Items, renderSnapshot(sn.Snapshot))
	}
	return out, nil
}

// ownedBy reports whether the server's snapshots pass an Owner list. All
// of them belong to the one account, so it is all or nothing: "self" or
// the account id keep them, "amazon" or another account do not.
func (s *Server) ownedBy(owners []string) bool {
	if len(owners) == 0 {
		return true
	}
	for _, o := range owners {
		if o == "self" || o == s.account {
			return true
		}
	}
	return false
}

func (s *Server) deleteSnapshot(r *request) (any, error) {
	id, err := r.required("SnapshotId")
	if err != nil {
		return nil, err
	}
	if _, err := s.lookupSnapshot(id); err != nil {
		return nil, err
	}
	delete(s.snapshots, id)
	return acknowledged(), nil
}
