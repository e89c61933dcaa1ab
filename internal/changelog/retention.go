package changelog

import (
	"context"
	"fmt"
	"time"

	"github.com/kopsdr/kopsdr/internal/backupstore"
)

// RetentionPlan is what retention of the change log removes: whole chains
// that ended before the window, and the segments of the others that no
// point inside the window needs.
type RetentionPlan struct {
	Cutoff   time.Time `json:"cutoff"` // now - window: every point after it stays restorable
	Chains   []string  `json:"chains,omitempty"`
	Segments []string  `json:"segments,omitempty"`
	Bytes    int64     `json:"bytes"` // of the segments removed (whole chains' not counted)
	// Trims are the chains' new first revisions, written before their
	// segments go.
	Trims map[string]int64 `json:"trims,omitempty"`
	// Kept explains, per chain that stays, from which full backup the
	// earliest point in the window is made.
	Kept []string `json:"kept,omitempty"`
}

// PlanRetention keeps every point after now-window restorable. Replaying
// to a point needs a full backup at or below it and every segment after
// that backup's revision. So in a chain that reaches into the window, the
// earliest point inside it (the last revision observed before the cutoff)
// picks the newest usable backup at or below it, and only the segments
// wholly below that backup's revision go. A chain that ended before the
// cutoff goes as a whole, except the newest chain: the change log never
// empties itself.
func PlanRetention(chains []ChainState, backups []Base, window time.Duration, now time.Time) RetentionPlan {
	p := RetentionPlan{Cutoff: now.Add(-window).UTC()}
	spans := Spans(chains)
	current, _, since := CurrentCluster(chains)
	for i, c := range chains {
		backups := basesOfCluster(backups, since, len(current) > 0 && c.ClusterID == current[0].ClusterID)
		span := spans[indexOfSpan(spans, c.ID)]
		if span.To.Observed.Before(p.Cutoff) && c.End != nil && i < len(chains)-1 {
			p.Chains = append(p.Chains, c.ID)
			// Trimmed past its end first: while its segments go, the chain
			// still reads (empty) instead of as one with missing revisions.
			p.trim(c.ID, c.LastRevision+1)
			continue
		}
		// The newest revision surely observed before the cutoff: the last
		// of the segments whose last change was.
		atCutoff := c.first() - 1
		for _, s := range c.Segments {
			if s.LastObserved.Before(p.Cutoff) {
				atCutoff = s.Last
			}
		}
		if atCutoff < c.first() {
			continue // the window reaches back to the chain's start
		}
		var base *Base
		for _, b := range ChooseBases(c, atCutoff, backups) {
			if b.UpTo > 0 && b.UpTo <= atCutoff || b.Backup == c.BaseBackup {
				base = &b
				break
			}
		}
		if base == nil || base.Backup == c.BaseBackup {
			p.Kept = append(p.Kept, fmt.Sprintf("%s: all segments (no newer full backup below revision %d, the cutoff)", c.ID, atCutoff))
			continue
		}
		n := 0
		for _, s := range c.Segments {
			if s.Last <= base.Revision {
				p.Segments = append(p.Segments, s.Key)
				p.Bytes += s.Bytes
				n++
			} else {
				if n > 0 {
					p.trim(c.ID, s.First)
				}
				break
			}
		}
		for _, s := range c.Superseded {
			p.Segments = append(p.Segments, s.Key)
			p.Bytes += s.Bytes
		}
		p.Kept = append(p.Kept, fmt.Sprintf("%s: from backup %s (revision %d); %d older segments go", c.ID, base.Backup, base.Revision, n))
	}
	return p
}

// basesOfCluster keeps the full backups that can be of a chain's cluster:
// after a restore made a new cluster (since, see CurrentCluster), those
// taken since for its chains, those taken before for the older ones; a
// chain's segments must never go for a base of another cluster.
func basesOfCluster(backups []Base, since time.Time, current bool) []Base {
	if since.IsZero() {
		return backups
	}
	var out []Base
	for _, b := range backups {
		if b.Taken.Before(since) != current {
			out = append(out, b)
		}
	}
	return out
}

func (p *RetentionPlan) trim(chain string, start int64) {
	if p.Trims == nil {
		p.Trims = map[string]int64{}
	}
	p.Trims[chain] = start
}

func indexOfSpan(spans []Span, id string) int {
	for i, s := range spans {
		if s.Chain == id {
			return i
		}
	}
	return 0
}

// Apply deletes what the plan names: each trimmed chain's new start first
// (whole chains are trimmed past their end), then segments, oldest first,
// then
// whole chains, each with its chain.json last so a half-deleted chain is
// still recognised as one. A rerun after a failure deletes the rest.
func (p RetentionPlan) Apply(ctx context.Context, s backupstore.Store) error {
	for id, start := range p.Trims {
		if err := PutTrim(ctx, s, id, Trim{StartRevision: start, At: time.Now().UTC(), Reason: "retention"}); err != nil {
			return err
		}
	}
	for i := 0; i < len(p.Segments); i += 1000 {
		if err := s.Delete(ctx, p.Segments[i:min(i+1000, len(p.Segments))]...); err != nil {
			return err
		}
	}
	for _, id := range p.Chains {
		prefix := chainsPrefix + id + "/"
		objs, err := s.List(ctx, prefix)
		if err != nil {
			return err
		}
		var keys []string
		for _, o := range objs {
			if o.Key != chainKey(id, chainFile) && o.Key != chainKey(id, trimFile) {
				keys = append(keys, o.Key)
			}
		}
		for i := 0; i < len(keys); i += 1000 {
			if err := s.Delete(ctx, keys[i:min(i+1000, len(keys))]...); err != nil {
				return err
			}
		}
		// The trim, then the chain itself: with its segments gone the
		// chain reads as empty either way, and without chain.json the
		// folder is empty.
		if err := s.Delete(ctx, chainKey(id, trimFile)); err != nil {
			return err
		}
		if err := s.Delete(ctx, chainKey(id, chainFile)); err != nil {
			return err
		}
	}
	return nil
}
