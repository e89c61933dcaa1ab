package ebs

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/kops"
)

// How a restore restarts the masters and what it does with the volumes it
// replaces.
const (
	RestartReboot    = "reboot"
	RestartStopStart = "stop-start"
	RestartNone      = "none"

	OldVolumesUntag  = "untag"
	OldVolumesDelete = "delete"
)

// MemberEncryption is what the kops cluster spec says of one member's
// volume (etcdClusters[].etcdMembers[] encryptedVolume and kmsKeyId).
type MemberEncryption struct {
	InSpec    bool   `json:"inSpec"` // the member is listed in the spec
	Encrypted bool   `json:"encryptedVolume"`
	KMSKeyID  string `json:"kmsKeyId,omitempty"`
}

// Selection says which snapshots to restore: an explicit set, explicit
// snapshot ids, or the newest completed set at or before At (zero: now).
type Selection struct {
	Set         string    `json:"snapshotSet,omitempty"`
	SnapshotIDs []string  `json:"snapshotIds,omitempty"`
	At          time.Time `json:"at,omitzero"`
}

// PlanInput is everything a restore plan is made from: the operator's
// choices and what pre-flight read from EC2 and the state store.
type PlanInput struct {
	Cluster      string
	Region       string
	EtcdClusters []string // which etcd clusters (main, events)
	Members      []string // which members; empty = all
	Select       Selection
	Restart      string
	OldVolumes   string
	WorkflowID   string // with RunID, derives each member's ClientToken
	RunID        string
	// Again allows restoring snapshots the current volumes already came
	// from (a repeated restore); AllowMixedTimes allows an etcd cluster
	// whose members would hold data from different times.
	Again           bool
	AllowMixedTimes bool
	Volumes         []EtcdVolume  // the etcd volumes protokube sees now
	Snapshots       []Snapshot    // the cluster's kopsdr snapshots and any named by id
	Instances       []kops.Master // the cluster's masters (kops.NotTerminated)
	// Encryption is the cluster spec's word per member ("main/a").
	Encryption map[string]MemberEncryption
}

// RestorePlan is what a restore will do, decided before it changes anything.
type RestorePlan struct {
	Cluster     string       `json:"cluster"`
	Region      string       `json:"region"`
	SnapshotSet string       `json:"snapshotSet,omitempty"`
	SetTime     time.Time    `json:"setTime,omitzero"`
	Restart     string       `json:"restart"`
	OldVolumes  string       `json:"oldVolumes"`
	Members     []MemberPlan `json:"members"`
	Instances   []string     `json:"instances"` // masters to restart
	Warnings    []string     `json:"warnings,omitempty"`
}

// MemberPlan is one member's restore.
type MemberPlan struct {
	EtcdCluster      string      `json:"etcdCluster"`
	Member           string      `json:"member"`
	Etcd             EtcdTag     `json:"etcd"`
	AvailabilityZone string      `json:"availabilityZone"`
	Snapshot         SnapshotRef `json:"snapshot"`
	OldVolume        *Volume     `json:"oldVolume,omitempty"` // nil when the member has no volume now
	New              NewVolume   `json:"new"`
	InstanceID       string      `json:"instanceId,omitempty"`
	Encryption       string      `json:"encryption"` // why the new volume is (not) encrypted, and with which key
}

// Key names the member: "main/a".
func (m MemberPlan) Key() string { return m.EtcdCluster + "/" + m.Member }

// SnapshotRef is the part of a snapshot a plan needs.
type SnapshotRef struct {
	ID         string    `json:"id"`
	State      string    `json:"state"`
	StartTime  time.Time `json:"startTime"`
	VolumeSize int32     `json:"volumeSize"`
	Encrypted  bool      `json:"encrypted"`
	KMSKeyID   string    `json:"kmsKeyId,omitempty"`
}

// NewVolume is the CreateVolume request of one member and the tags the
// volume gets once the old one let go of them.
type NewVolume struct {
	Spec      VolumeSpec `json:"spec"`
	Encrypted bool       `json:"encrypted"`
	KMSKeyID  string     `json:"kmsKeyId,omitempty"` // asked; "" = the snapshot's key or the account's default
	// ExpectKMSKeyID is the key the created volume must have ("" = any key).
	ExpectKMSKeyID string `json:"expectKmsKeyId,omitempty"`
	// CreateTags go on at creation: kopsdr's bookkeeping and the operator's
	// tags, nothing protokube looks for.
	CreateTags map[string]string `json:"createTags"`
	// Tags are the kops tags put on when the old volume has lost them.
	Tags        map[string]string `json:"tags"`
	ClientToken string            `json:"clientToken"`
}

// PlanRestore decides what a restore will do, or lists every reason it must
// not run. It changes nothing and calls nothing: pre-flight gathers its input.
func PlanRestore(in PlanInput) (RestorePlan, []*inputerr.Error) {
	plan := RestorePlan{Cluster: in.Cluster, Region: in.Region, Restart: in.Restart, OldVolumes: in.OldVolumes, Instances: []string{}}
	var problems []*inputerr.Error
	problem := func(field, value, fix string) { problems = append(problems, inputerr.New(field, value, fix)) }

	current := map[string]EtcdVolume{}
	for _, v := range in.Volumes {
		if slices.Contains(in.EtcdClusters, v.EtcdCluster) {
			current[v.Key()] = v
		}
	}
	chosen, set, warnings := chooseSnapshots(in, current, problem)
	plan.Warnings = append(plan.Warnings, warnings...)
	if set != nil {
		plan.SnapshotSet, plan.SetTime = set.ID, set.Time
	}
	// Problems with a snapshot name what the operator chose: the set, or
	// the snapshot id.
	field, value := "snapshotSet", plan.SnapshotSet
	for _, key := range SortedKeys(chosen) {
		if len(in.Select.SnapshotIDs) > 0 {
			field, value = "snapshotIds", chosen[key].ID
		}
		m, warnings := planMember(in, key, chosen[key], current, func(fix string) { problem(field, value, fix) }, problem)
		plan.Warnings = append(plan.Warnings, warnings...)
		plan.Members = append(plan.Members, m)
	}
	if len(problems) == 0 {
		// Guards on an otherwise valid plan: each is a problem unless the
		// operator asked for it, then a warning.
		plan.Warnings = append(plan.Warnings, guardRepeat(in, chosen, current, set, problem)...)
		plan.Warnings = append(plan.Warnings, guardMixedTimes(in, chosen, current, problem)...)
	}
	if len(plan.Members) == 0 && len(problems) == 0 {
		problem("cluster", in.Cluster, "no etcd member to restore: check the cluster name, region, etcdClusters and members")
	}
	seen := map[string]bool{}
	for _, m := range plan.Members {
		if m.InstanceID != "" && !seen[m.InstanceID] {
			seen[m.InstanceID] = true
			plan.Instances = append(plan.Instances, m.InstanceID)
		}
	}
	slices.Sort(plan.Instances)
	if in.OldVolumes == OldVolumesDelete && in.Restart != RestartStopStart {
		plan.Warnings = append(plan.Warnings, "oldVolumes delete: a replaced volume is deleted only once detached; "+
			"with restart "+in.Restart+" kopsdr does not detach it, so it is left untagged while still attached")
	}
	return plan, problems
}

// wantedMembers are the members to restore: those named, or every member
// the current volumes' etcd tags list (a lost member's volume is still
// listed by its peers' tags), or, with no volume left at all, the set's.
func wantedMembers(in PlanInput, current map[string]EtcdVolume, fromSet []Snapshot) []string {
	var out []string
	add := func(k string) {
		ec, member, _ := strings.Cut(k, "/")
		if !slices.Contains(in.EtcdClusters, ec) || (len(in.Members) > 0 && !slices.Contains(in.Members, member)) {
			return
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	if len(in.Members) > 0 {
		for _, ec := range in.EtcdClusters {
			for _, m := range in.Members {
				add(ec + "/" + m)
			}
		}
		slices.Sort(out)
		return out
	}
	have := map[string]bool{}
	for _, v := range current {
		have[v.EtcdCluster] = true
		for _, m := range v.Etcd.Members {
			add(v.EtcdCluster + "/" + m)
		}
	}
	for _, sn := range fromSet {
		if !have[sn.EtcdCluster] {
			add(sn.Key())
		}
	}
	slices.Sort(out)
	return out
}

// chooseSnapshots picks one snapshot per member, by explicit ids or by set.
// When it passes over newer incomplete sets to pick an older one, it says
// so in a warning naming both.
func chooseSnapshots(in PlanInput, current map[string]EtcdVolume, problem func(field, value, fix string)) (map[string]Snapshot, *SnapshotSet, []string) {
	chosen := map[string]Snapshot{}
	if len(in.Select.SnapshotIDs) > 0 {
		byID := map[string]Snapshot{}
		for _, sn := range in.Snapshots {
			byID[sn.ID] = sn
		}
		byVolume := map[string]EtcdVolume{}
		for _, v := range current {
			byVolume[v.ID] = v
		}
		for _, id := range in.Select.SnapshotIDs {
			sn, ok := byID[id]
			if !ok {
				problem("snapshotIds", id, "no such snapshot of this account in region "+in.Region+": list them with kopsdr list-volume-snapshots")
				continue
			}
			if sn.Cluster != "" && sn.Cluster != in.Cluster {
				problem("snapshotIds", id, "this snapshot belongs to cluster "+sn.Cluster+", not "+in.Cluster)
				continue
			}
			if sn.Key() == "" {
				// Not kopsdr's (the Lambda's, a hand-made one): it belongs to
				// the member whose current volume it was taken of.
				v, ok := byVolume[sn.VolumeID]
				if !ok {
					problem("snapshotIds", id, "kopsdr cannot tell which etcd member this snapshot belongs to (its volume "+sn.VolumeID+
						" is not a current etcd volume of the cluster): tag it "+TagEtcdCluster+", "+TagMember+" and "+TagZone)
					continue
				}
				sn.EtcdCluster, sn.Member = v.EtcdCluster, v.Etcd.Member
				if sn.AvailabilityZone == "" {
					sn.AvailabilityZone = v.AvailabilityZone
				}
			}
			if !slices.Contains(in.EtcdClusters, sn.EtcdCluster) || (len(in.Members) > 0 && !slices.Contains(in.Members, sn.Member)) {
				problem("snapshotIds", id, "this is a snapshot of "+sn.Key()+", which etcdClusters and members leave out")
				continue
			}
			if prev, dup := chosen[sn.Key()]; dup {
				problem("snapshotIds", id, "snapshots "+prev.ID+" and "+id+" are both of "+sn.Key()+": give one per member")
				continue
			}
			chosen[sn.Key()] = sn
		}
		if len(in.Members) > 0 {
			for _, k := range wantedMembers(in, current, nil) {
				if _, ok := chosen[k]; !ok {
					problem("snapshotIds", strings.Join(in.Select.SnapshotIDs, ","), "no snapshot given for member "+k)
				}
			}
		}
		return chosen, nil, nil
	}

	var candidates []SnapshotSet
	for _, s := range Sets(in.Snapshots) {
		if s.Snapshots[0].Cluster != in.Cluster {
			continue
		}
		if in.Select.Set != "" && s.ID != in.Select.Set {
			continue
		}
		if in.Select.Set == "" && !in.Select.At.IsZero() && s.Time.After(in.Select.At) {
			continue
		}
		candidates = append(candidates, s)
	}
	field, value := "snapshotSet", in.Select.Set
	if in.Select.Set == "" && !in.Select.At.IsZero() {
		field, value = "at", in.Select.At.UTC().Format(time.RFC3339)
	}
	if len(candidates) == 0 {
		if in.Select.Set != "" {
			problem(field, value, "no such snapshot set of cluster "+in.Cluster+" in region "+in.Region+": list them with kopsdr list-volume-snapshots")
		} else {
			problem(field, value, "no kopsdr snapshot set of cluster "+in.Cluster+" in region "+in.Region+
				" (at or before that time): take one with kopsdr snapshot-volumes, or name snapshotIds")
		}
		return chosen, nil, nil
	}
	var incomplete []string
	for _, s := range candidates {
		wanted := wantedMembers(in, current, s.Snapshots)
		missing := setGaps(s, wanted)
		if len(missing) == 0 && len(wanted) > 0 {
			for _, k := range wanted {
				chosen[k], _ = s.Member(k)
			}
			var warnings []string
			if len(incomplete) > 0 {
				warnings = append(warnings, fmt.Sprintf("the newest snapshot set %s (%s) is incomplete: %s; restoring the newest complete set %s (%s) instead",
					candidates[0].ID, candidates[0].Time.Format(time.RFC3339), strings.Join(incomplete, "; "), s.ID, s.Time.Format(time.RFC3339)))
			}
			return chosen, &s, warnings
		}
		incomplete = append(incomplete, s.ID+" ("+strings.Join(missing, ", ")+")")
		if in.Select.Set != "" {
			break
		}
	}
	fix := "no set has a completed snapshot of every member to restore; sets looked at: " + strings.Join(incomplete, "; ") +
		". Choose another set, or name snapshotIds"
	problem(field, value, fix)
	return chosen, nil, nil
}

// guardRepeat refuses a restore of snapshots the members' current volumes
// were already created from (by EC2's record, or kopsdr's restored-from
// tag): re-running a finished restore, e.g. from shell history, would only
// replace volumes by copies of themselves and restart the masters. in.Again
// lets it through with a warning.
func guardRepeat(in PlanInput, chosen map[string]Snapshot, current map[string]EtcdVolume, set *SnapshotSet, problem func(field, value, fix string)) []string {
	var same []string
	for _, k := range SortedKeys(chosen) {
		sn := chosen[k]
		if v, ok := current[k]; ok && (v.SnapshotID == sn.ID || v.Tags[TagRestoredFrom] == sn.ID) {
			same = append(same, k+" ("+v.ID+" from "+sn.ID+")")
		}
	}
	if len(same) == 0 {
		return nil
	}
	what := "the chosen snapshots"
	if set != nil {
		what = "snapshot set " + set.ID
	}
	msg := fmt.Sprintf("the current volumes of %s already came from %s", strings.Join(same, ", "), what)
	if in.Again {
		return []string{msg + ": restoring them again (again: true)"}
	}
	problem("again", "false", msg+": this restore was already done. Choose another set (snapshotSet, at or snapshotIds), "+
		"or set again: true (kopsdr restore volumes --again) to restore the same snapshots again")
	return nil
}

// mixedTimeTolerance is how far apart the start times of one etcd
// cluster's snapshots may be, when they are not one kopsdr set, and still
// count as one point in time (the runbook's Lambda snapshots every volume
// within seconds).
const mixedTimeTolerance = 10 * time.Minute

// guardMixedTimes refuses an etcd cluster whose members would hold data
// from different times after the restore: snapshots from different sets
// (or, outside sets, taken more than mixedTimeTolerance apart), or some
// members restored while peers keep their current volumes. etcd members
// must agree on their history; a member from another time is at best
// rejected by its peers and at worst elected with stale data.
// in.AllowMixedTimes lets it through with a warning.
func guardMixedTimes(in PlanInput, chosen map[string]Snapshot, current map[string]EtcdVolume, problem func(field, value, fix string)) []string {
	var warnings []string
	for _, ec := range in.EtcdClusters {
		var snaps []Snapshot
		for _, k := range SortedKeys(chosen) {
			if sn := chosen[k]; strings.HasPrefix(k, ec+"/") {
				snaps = append(snaps, sn)
			}
		}
		if len(snaps) == 0 {
			continue
		}
		var reasons []string
		sets := map[string]bool{}
		first, last := snaps[0].StartTime, snaps[0].StartTime
		for _, sn := range snaps {
			sets[sn.Set] = true
			first, last = minTime(first, sn.StartTime), maxTime(last, sn.StartTime)
		}
		switch {
		case len(sets) > 1:
			var names []string
			for _, sn := range snaps {
				names = append(names, sn.Key()+" "+sn.ID+" (set "+cmpOr(sn.Set, "none")+", "+sn.StartTime.Format(time.RFC3339)+")")
			}
			reasons = append(reasons, "its snapshots come from different sets: "+strings.Join(names, ", "))
		case last.Sub(first) > mixedTimeTolerance:
			reasons = append(reasons, fmt.Sprintf("its snapshots were taken %s apart (%s to %s)",
				last.Sub(first).Round(time.Second), first.Format(time.RFC3339), last.Format(time.RFC3339)))
		}
		var kept []string
		for _, k := range SortedKeys(current) {
			if _, restored := chosen[k]; strings.HasPrefix(k, ec+"/") && !restored {
				kept = append(kept, k)
			}
		}
		if len(kept) > 0 {
			reasons = append(reasons, strings.Join(kept, ", ")+" keep their current data while the others are restored")
		}
		if len(reasons) == 0 {
			continue
		}
		msg := "etcd " + ec + " would hold data from different times: " + strings.Join(reasons, "; ")
		if in.AllowMixedTimes {
			warnings = append(warnings, msg+" (allowMixedTimes: true)")
			continue
		}
		problem("allowMixedTimes", "false", msg+". Restore every member of "+ec+" from one snapshot set, "+
			"or set allowMixedTimes: true (kopsdr restore volumes --allow-mixed-times) if you mean it")
	}
	return warnings
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// setGaps lists the wanted members a set cannot restore and why.
func setGaps(s SnapshotSet, wanted []string) []string {
	var gaps []string
	for _, k := range wanted {
		sn, ok := s.Member(k)
		switch {
		case !ok:
			gaps = append(gaps, k+" missing")
		case sn.State != SnapshotCompleted:
			gaps = append(gaps, k+" "+sn.ID+" "+sn.State)
		}
	}
	return gaps
}

// planMember checks and plans one member.
func planMember(in PlanInput, key string, sn Snapshot, current map[string]EtcdVolume,
	snapProblem func(fix string), problem func(field, value, fix string)) (MemberPlan, []string) {
	ec, member, _ := strings.Cut(key, "/")
	m := MemberPlan{EtcdCluster: ec, Member: member, Snapshot: SnapshotRef{
		ID: sn.ID, State: sn.State, StartTime: sn.StartTime, VolumeSize: sn.VolumeSize, Encrypted: sn.Encrypted, KMSKeyID: sn.KMSKeyID,
	}}
	var warnings []string
	if sn.State != SnapshotCompleted {
		snapProblem("snapshot " + sn.ID + " of " + key + " is " + sn.State + ", not completed: wait for it or choose another")
	}

	// Where the member lives: its current volume's zone. The snapshot must
	// have been taken there, or it is another member's data.
	old, hasOld := current[key]
	had := sn.VolumeTags()
	spec, hasSpec := sn.VolumeSpec()
	switch {
	case hasOld:
		m.AvailabilityZone = old.AvailabilityZone
		v := old.Volume
		m.OldVolume = &v
		had, spec, hasSpec = old.Tags, old.Spec, true
		if sn.AvailabilityZone != "" && sn.AvailabilityZone != old.AvailabilityZone {
			snapProblem(fmt.Sprintf("snapshot %s of %s was taken in %s, but the member's volume %s is in %s: choose a snapshot taken in %s",
				sn.ID, key, sn.AvailabilityZone, old.ID, old.AvailabilityZone, old.AvailabilityZone))
		}
	case sn.AvailabilityZone != "":
		m.AvailabilityZone = sn.AvailabilityZone
		warnings = append(warnings, key+" has no volume now: restoring into "+sn.AvailabilityZone+", where its snapshot was taken")
	default:
		snapProblem("the availability zone of " + key + " is unknown (no current volume, and snapshot " + sn.ID + " does not record it): tag the snapshot " + TagZone)
	}

	// The etcd tag: as the volume (or the snapshot's record of it) had it.
	if et, err := ParseEtcdTag(had[TagEtcdPrefix+ec]); err == nil && et.Member == member {
		m.Etcd = et
	} else {
		m.Etcd = EtcdTag{Member: member, Members: membersOf(ec, current, member)}
	}

	if !hasSpec {
		spec = VolumeSpec{Type: "gp3", Size: sn.VolumeSize}
		warnings = append(warnings, key+": the volume's type is not known, creating gp3")
	}
	spec.Size = max(spec.Size, sn.VolumeSize)
	m.New.Spec = spec

	m.InstanceID = instanceFor(in, m, problem)
	planEncryption(in, &m, sn, problem, &warnings)

	m.New.ClientToken = ClientToken(in.WorkflowID, in.RunID, ec, member)
	m.New.Tags = ProtokubeTags(in.Cluster, ec, m.Etcd, had)
	m.New.CreateTags = UserTags(had)
	maps.Copy(m.New.CreateTags, map[string]string{
		TagCluster: in.Cluster, TagEtcdCluster: ec, TagMember: member, TagRestoredFrom: sn.ID,
		TagRestoreWorkflow: in.WorkflowID, TagClientToken: m.New.ClientToken,
	})
	if m.OldVolume != nil {
		m.New.CreateTags[TagReplaces] = m.OldVolume.ID
	}
	return m, warnings
}

// membersOf is every member of one etcd cluster, as far as anything tells.
func membersOf(ec string, current map[string]EtcdVolume, member string) []string {
	all := []string{member}
	for _, v := range current {
		if v.EtcdCluster == ec {
			all = append(all, v.Etcd.Members...)
		}
	}
	slices.Sort(all)
	return slices.Compact(all)
}

// instanceFor is the master to restart for a member: the one its volume is
// attached to, or the only master in its zone.
func instanceFor(in PlanInput, m MemberPlan, problem func(field, value, fix string)) string {
	if m.OldVolume != nil && m.OldVolume.InstanceID != "" {
		return m.OldVolume.InstanceID
	}
	var inZone []string
	for _, i := range in.Instances {
		if i.AvailabilityZone == m.AvailabilityZone && m.AvailabilityZone != "" {
			inZone = append(inZone, i.InstanceID)
		}
	}
	if in.Restart == RestartNone {
		return ""
	}
	switch len(inZone) {
	case 1:
		return inZone[0]
	case 0:
		problem("restart", in.Restart, "no master of "+in.Cluster+" found in "+m.AvailabilityZone+" to restart for "+m.Key()+
			": start it, or use restart none and restart it yourself")
	default:
		problem("restart", in.Restart, "several masters in "+m.AvailabilityZone+" ("+strings.Join(inZone, ", ")+
			") and "+m.Key()+"'s volume is attached to none: use restart none and restart the right one yourself")
	}
	return ""
}

// planEncryption applies the cluster spec's encryption rules. Encryption
// can only be set when a cluster is created, so a restore must never end
// with an unencrypted volume for an encrypted member, and never with
// another key than the member's.
func planEncryption(in PlanInput, m *MemberPlan, sn Snapshot, problem func(field, value, fix string), warnings *[]string) {
	key := m.Key()
	spec := in.Encryption[key]
	field := fmt.Sprintf("etcdClusters[%s].etcdMembers[%s]", m.EtcdCluster, m.Member)
	if !spec.InSpec {
		*warnings = append(*warnings, key+" is not listed in the cluster spec's etcdClusters: encryption follows its volume and snapshot")
	}
	old := m.OldVolume
	oldEnc := old != nil && old.Encrypted
	switch {
	case spec.Encrypted && spec.KMSKeyID != "":
		m.New.Encrypted, m.New.KMSKeyID, m.New.ExpectKMSKeyID = true, spec.KMSKeyID, spec.KMSKeyID
		m.Encryption = "encrypted with the member's kmsKeyId " + spec.KMSKeyID + " (cluster spec)"
		if oldEnc && !SameKey(old.KMSKeyID, spec.KMSKeyID) {
			*warnings = append(*warnings, fmt.Sprintf("%s: the volume %s is encrypted with %s, not the spec's kmsKeyId %s; the new volume uses the spec's",
				key, old.ID, old.KMSKeyID, spec.KMSKeyID))
		}
		return
	case sn.Encrypted:
		// No key asked for: EC2 keeps the snapshot's key. That must be the
		// key the member's volume has now, or the restore would change it.
		if oldEnc && !SameKey(old.KMSKeyID, sn.KMSKeyID) {
			problem(field+".kmsKeyId", "", fmt.Sprintf("snapshot %s is encrypted with %s but the member's volume %s with %s: "+
				"set kmsKeyId for this member in the cluster spec to the key the restored volume must have", sn.ID, sn.KMSKeyID, old.ID, old.KMSKeyID))
		}
		m.New.Encrypted, m.New.ExpectKMSKeyID = true, sn.KMSKeyID
		m.Encryption = "encrypted with the snapshot's key " + sn.KMSKeyID
		if !spec.Encrypted {
			m.Encryption += " (the cluster spec does not set encryptedVolume, but a volume from an encrypted snapshot stays encrypted)"
		}
		return
	case spec.Encrypted:
		m.New.Encrypted = true
		m.Encryption = "encrypted with the account's default EBS key (cluster spec: encryptedVolume without kmsKeyId)"
		if old != nil && !old.Encrypted {
			*warnings = append(*warnings, key+": the volume "+old.ID+" is not encrypted but the cluster spec says encryptedVolume: the new volume will be")
		}
		return
	case oldEnc:
		problem(field+".encryptedVolume", "false", fmt.Sprintf("the volume %s of %s is encrypted but snapshot %s is not and the cluster spec does not set "+
			"encryptedVolume, so the restored volume would be unencrypted: set encryptedVolume: true (and kmsKeyId %s) for this member in the cluster spec, "+
			"or restore a snapshot of the encrypted volume", old.ID, key, sn.ID, old.KMSKeyID))
	}
	m.Encryption = "not encrypted (cluster spec, volume and snapshot all unencrypted)"
}

// SameKey reports whether two KMS key references name the same key: equal,
// or the same key id (a bare id and its ARN). Aliases only match themselves.
func SameKey(a, b string) bool {
	if a == b {
		return true
	}
	ia, ib := keyID(a), keyID(b)
	return ia != "" && ia == ib
}

func keyID(k string) string {
	if _, id, ok := strings.Cut(k, ":key/"); ok {
		return id
	}
	if k != "" && !strings.Contains(k, ":") && !strings.HasPrefix(k, "alias/") {
		return k
	}
	return ""
}

// CheckEncryption verifies a created volume against the plan. A key asked
// for by alias cannot be checked here (EC2 reports the key ARN behind it)
// and is accepted when the volume is encrypted at all.
func CheckEncryption(n NewVolume, v Volume) error {
	if n.Encrypted && !v.Encrypted {
		return fmt.Errorf("volume %s was created unencrypted, but the plan asks for encryption", v.ID)
	}
	if n.ExpectKMSKeyID != "" && !strings.HasPrefix(keyRef(n.ExpectKMSKeyID), "alias/") && !SameKey(n.ExpectKMSKeyID, v.KMSKeyID) {
		return fmt.Errorf("volume %s is encrypted with %s, but the plan asks for %s", v.ID, v.KMSKeyID, n.ExpectKMSKeyID)
	}
	return nil
}

// keyRef strips an alias ARN down to its alias/... part.
func keyRef(k string) string {
	if _, alias, ok := strings.Cut(k, ":alias/"); ok {
		return "alias/" + alias
	}
	return k
}
