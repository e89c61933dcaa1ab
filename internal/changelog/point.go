package changelog

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kopsdr/kopsdr/internal/backupstore"
)

// Point is one restorable state of the keyspace: a revision, and the time
// kopsdr observed it.
type Point struct {
	Chain    string    `json:"chain"`
	Revision int64     `json:"revision"`
	Observed time.Time `json:"observed,omitzero"`
}

func (p Point) String() string {
	if p.Observed.IsZero() {
		return fmt.Sprintf("revision %d", p.Revision)
	}
	return fmt.Sprintf("revision %d (%s)", p.Revision, p.Observed.UTC().Format(time.RFC3339))
}

// Span is what one chain makes restorable: every revision after From up
// to To. From is the revision just before the chain's first (a full
// backup's, at the time the chain started); To the last durable revision,
// observed last at To.Observed.
type Span struct {
	Chain    string
	From, To Point
	End      *End
}

// Spans are the chains' restorable stretches, oldest first. A chain that
// holds no revision yet still spans its start.
func Spans(chains []ChainState) []Span {
	spans := make([]Span, 0, len(chains))
	for _, c := range chains {
		s := Span{
			Chain: c.ID,
			From:  Point{Chain: c.ID, Revision: c.first() - 1, Observed: c.Started},
			To:    Point{Chain: c.ID, Revision: c.LastRevision, Observed: c.Started},
			End:   c.End,
		}
		if n := len(c.Segments); n > 0 {
			s.To.Observed = c.Segments[n-1].LastObserved
		}
		if c.Trim != nil && c.Trim.StartRevision > c.StartRevision {
			// Retention removed the oldest changes: the span starts where the
			// first kept segment does (observed no later than it ended).
			if len(c.Segments) > 0 {
				s.From.Observed = c.Segments[0].LastObserved
			} else {
				s.From.Observed = c.Trim.At
			}
		}
		// The head is refreshed while capture idles: the chain holds every
		// revision up to its Revision as late as its time.
		if c.Head != nil && c.Head.Revision >= c.LastRevision && c.Head.Observed.After(s.To.Observed) {
			s.To.Observed = c.Head.Observed
		}
		spans = append(spans, s)
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].From.Revision < spans[j].From.Revision })
	return spans
}

// NotRestorable is a point the change log cannot reach, with the reason
// and the nearest points it can.
type NotRestorable struct {
	Field   string
	Value   string
	Reason  string
	Nearest []Point
	// Ahead says the point is after what an open chain has observed so
	// far: capture may reach it within seconds.
	Ahead bool
}

func (e *NotRestorable) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %s", e.Field, e.Value, e.Reason)
	if len(e.Nearest) > 0 {
		b.WriteString("; the nearest restorable points are ")
		for i, p := range e.Nearest {
			if i > 0 {
				b.WriteString(" and ")
			}
			b.WriteString(p.String())
		}
	}
	return b.String()
}

// ErrNothingCaptured: the change store holds no chain.
var ErrNothingCaptured = errors.New("no changes captured: enable capture first (kopsdr pitr enable)")

// ResolveRevision finds the chain that holds rev, and when kopsdr observed
// it (reading the one segment that holds it).
func ResolveRevision(ctx context.Context, s backupstore.Store, chains []ChainState, rev int64) (Point, error) {
	spans := Spans(chains)
	if len(spans) == 0 {
		return Point{}, ErrNothingCaptured
	}
	field, val := "revision", fmt.Sprint(rev)
	for i, sp := range spans {
		if rev > sp.From.Revision && rev <= sp.To.Revision {
			return observedAt(ctx, s, chainByID(chains, sp.Chain), rev)
		}
		if rev <= sp.From.Revision {
			if i == 0 {
				return Point{}, &NotRestorable{Field: field, Value: val, Reason: "is before the earliest captured change (changes older than the window are deleted)", Nearest: []Point{firstPoint(sp)}}
			}
			return Point{}, gapError(field, val, spans[i-1], sp)
		}
	}
	last := spans[len(spans)-1]
	return Point{}, &NotRestorable{Field: field, Value: val, Reason: "has not been captured: the newest captured revision is " + fmt.Sprint(last.To.Revision),
		Nearest: []Point{last.To}, Ahead: last.End == nil}
}

// ResolveTime maps t to the last revision kopsdr had observed by then. It
// reads at most one segment: the one whose last change was observed first
// after t. now refuses times in the future.
func ResolveTime(ctx context.Context, s backupstore.Store, chains []ChainState, t, now time.Time) (Point, error) {
	field, val := "at", t.UTC().Format(time.RFC3339Nano)
	spans := Spans(chains)
	if len(spans) == 0 {
		return Point{}, ErrNothingCaptured
	}
	if t.After(now) {
		return Point{}, &NotRestorable{Field: field, Value: val, Reason: "is in the future (now is " + now.UTC().Format(time.RFC3339) + ")", Nearest: []Point{spans[len(spans)-1].To}}
	}
	for i, sp := range spans {
		if t.Before(sp.From.Observed) {
			if i == 0 {
				return Point{}, &NotRestorable{Field: field, Value: val, Reason: "is before the earliest captured change (changes older than the window are deleted)", Nearest: []Point{firstPoint(sp)}}
			}
			return Point{}, gapError(field, val, spans[i-1], sp)
		}
		if t.After(sp.To.Observed) {
			continue
		}
		return lastObservedBy(ctx, s, chainByID(chains, sp.Chain), t)
	}
	last := spans[len(spans)-1]
	if last.End != nil {
		reason := "is after capture stopped (" + last.End.Reason + " at " + last.End.At.UTC().Format(time.RFC3339) + ")"
		return Point{}, &NotRestorable{Field: field, Value: val, Reason: reason, Nearest: []Point{last.To}}
	}
	reason := "is after the newest observation kopsdr holds (" + last.To.Observed.UTC().Format(time.RFC3339) + "): capture is behind or stopped, so changes made since may be missing"
	return Point{}, &NotRestorable{Field: field, Value: val, Reason: reason, Nearest: []Point{last.To}, Ahead: true}
}

// lastObservedBy finds, in one chain that spans t, the newest revision
// observed at or before t.
func lastObservedBy(ctx context.Context, s backupstore.Store, c ChainState, t time.Time) (Point, error) {
	p := Point{Chain: c.ID, Revision: c.first() - 1, Observed: c.Started}
	for _, seg := range c.Segments {
		if !seg.LastObserved.After(t) {
			p.Revision, p.Observed = seg.Last, seg.LastObserved
			continue
		}
		// This segment holds the first change observed after t; the answer
		// is in it or is the previous segment's last.
		_, err := ReadSegment(ctx, s, seg.Key, func(tx Txn) error {
			if tx.Observed.After(t) {
				return errStop
			}
			p.Revision, p.Observed = tx.Revision, tx.Observed
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return Point{}, err
		}
		break
	}
	if p.Revision < c.first() {
		return Point{}, &NotRestorable{Field: "at", Value: t.UTC().Format(time.RFC3339Nano),
			Reason:  "is before the first change of chain " + c.ID + ", which starts from a full backup whose exact revision is only known once it is restored; restore that backup itself, or choose a later time",
			Nearest: []Point{{Chain: c.ID, Revision: c.first()}}}
	}
	return p, nil
}

// observedAt reads when kopsdr observed rev, from the segment holding it.
func observedAt(ctx context.Context, s backupstore.Store, c ChainState, rev int64) (Point, error) {
	p := Point{Chain: c.ID, Revision: rev}
	for _, seg := range c.Segments {
		if rev < seg.First || rev > seg.Last {
			continue
		}
		_, err := ReadSegment(ctx, s, seg.Key, func(tx Txn) error {
			if tx.Revision == rev {
				p.Observed = tx.Observed
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return Point{}, err
		}
		break
	}
	return p, nil
}

var errStop = errors.New("stop")

func gapError(field, val string, before, after Span) error {
	reason := fmt.Sprintf("falls in a gap of the change log: revisions %d to %d were not captured", before.To.Revision+1, after.From.Revision)
	if before.End != nil {
		reason += " (capture ended: " + before.End.Reason
		if before.End.Detail != "" {
			reason += ", " + before.End.Detail
		}
		reason += ")"
	}
	return &NotRestorable{Field: field, Value: val, Reason: reason, Nearest: []Point{before.To, firstPoint(after)}}
}

// firstPoint is the first point a span can restore to: its first change.
func firstPoint(s Span) Point {
	return Point{Chain: s.Chain, Revision: s.From.Revision + 1}
}

func chainByID(chains []ChainState, id string) ChainState {
	for _, c := range chains {
		if c.ID == id {
			return c
		}
	}
	return ChainState{}
}

// Base is a full backup that replay can start from: its snapshot's
// revision is at least Revision and, when UpTo is set, at most UpTo.
type Base struct {
	Backup   string    `json:"backup"`
	Revision int64     `json:"revision"`
	UpTo     int64     `json:"upTo,omitempty"`
	Taken    time.Time `json:"taken"`
}

// maxBases bounds the candidates a plan carries.
const maxBases = 5

// ChooseBases orders the full backups replay can start from to reach
// target in chain c, best first: the chain must hold every revision after
// the base's, so only backups at or after the chain's start qualify, and
// those surely at or below target (UpTo known) come before those only
// probably so. The chain's own base is the last resort.
func ChooseBases(c ChainState, target int64, backups []Base) []Base {
	var sure, maybe []Base
	for _, b := range backups {
		if b.Revision < c.first()-1 || b.Revision > target {
			continue
		}
		if b.UpTo > 0 && b.UpTo <= target {
			sure = append(sure, b)
		} else {
			maybe = append(maybe, b)
		}
	}
	newestFirst := func(bs []Base) {
		sort.Slice(bs, func(i, j int) bool { return bs[i].Revision > bs[j].Revision })
	}
	newestFirst(sure)
	newestFirst(maybe)
	out := append(sure, maybe...)
	if c.BaseBackup != "" && c.BaseRevision >= c.first()-1 && !hasBase(out, c.BaseBackup) {
		out = append(out, Base{Backup: c.BaseBackup, Revision: c.BaseRevision})
	}
	if len(out) > maxBases {
		out = out[:maxBases]
	}
	return out
}

// first is the first revision the chain's stored segments hold; zero
// values from before trimming existed mean StartRevision.
func (c ChainState) first() int64 { return max(c.FirstRevision, c.StartRevision) }

func hasBase(bs []Base, name string) bool {
	for _, b := range bs {
		if b.Backup == name {
			return true
		}
	}
	return false
}

// CurrentCluster keeps the chains captured from the etcd cluster as it is
// now: the one the most recently started chain was captured from. A restore
// through etcd-manager makes a new cluster (a new id) whose revisions start
// again near 1, so a revision, and the order of spans by revision, only
// mean something within one cluster. Points in the clusters before are not
// offered: refusing is better than replaying one cluster's changes onto
// another's data. since is when the current cluster was first seen ended
// another chain (zero when no chain ended with EndClusterChanged): full
// backups older than that may be of the cluster before.
func CurrentCluster(chains []ChainState) (current []ChainState, dropped int, since time.Time) {
	if len(chains) == 0 {
		return nil, 0, time.Time{}
	}
	newest := chains[0]
	for _, c := range chains[1:] {
		if c.Started.After(newest.Started) || (c.Started.Equal(newest.Started) && c.ID > newest.ID) {
			newest = c
		}
	}
	for _, c := range chains {
		if c.ClusterID != newest.ClusterID {
			dropped++
			if c.End != nil && c.End.Reason == EndClusterChanged && c.End.At.After(since) {
				since = c.End.At
			}
			continue
		}
		current = append(current, c)
	}
	return current, dropped, since
}
