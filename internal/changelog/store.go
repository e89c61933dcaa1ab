package changelog

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kopsdr/kopsdr/internal/backupstore"
)

const (
	chainsPrefix = "chains/"
	chainFile    = "chain.json"
	trimFile     = "trim.json"
	headFile     = "head.json"
	endFile      = "end.json"
	segDir       = "seg/"
	// maxSmallJSON caps chain.json, head.json and end.json when read.
	maxSmallJSON = 1 << 20
)

// ErrConflict: a chain.json or end.json already holds something else than
// what is being written.
var ErrConflict = errors.New("change log conflict")

// FormatClusterID is how a chain records etcd's cluster id (the ClusterId of
// every response header): lower-case hex without leading zeros, as etcdctl
// prints it.
func FormatClusterID(id uint64) string { return fmt.Sprintf("%x", id) }

// NewChainID names a chain that starts at startRev at started, so that ids
// sort by start: "20261130T071500Z-r00000000000000001234".
func NewChainID(started time.Time, startRev int64) string {
	return fmt.Sprintf("%s-r%020d", started.UTC().Format("20060102T150405Z"), startRev)
}

// checkChainID refuses ids that are not one path segment.
func checkChainID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\\\x00") {
		return fmt.Errorf("changelog: invalid chain id %q", id)
	}
	return nil
}

func chainKey(id, file string) string { return chainsPrefix + id + "/" + file }

// StartChain writes chains/<id>/chain.json. Writing the same chain again is
// nil (Started compared as an instant); a different chain under the same id
// is an error wrapping ErrConflict.
func StartChain(ctx context.Context, s backupstore.Store, c Chain) error {
	if err := checkChainID(c.ID); err != nil {
		return err
	}
	if c.StartRevision < 1 {
		return fmt.Errorf("changelog: chain %s: start revision %d: revisions start at 1", c.ID, c.StartRevision)
	}
	key := chainKey(c.ID, chainFile)
	var old Chain
	switch err := readJSON(ctx, s, key, &old); {
	case err == nil:
		if sameChain(old, c) {
			return nil
		}
		return fmt.Errorf("%w: chain %s already started as %+v", ErrConflict, c.ID, old)
	case !errors.Is(err, backupstore.ErrNotFound):
		return err
	}
	return writeJSON(ctx, s, key, c)
}

func sameChain(a, b Chain) bool {
	eq := a.Started.Equal(b.Started)
	a.Started, b.Started = time.Time{}, time.Time{}
	return eq && a == b
}

// PutSegment encodes txns (see Encode) and stores them at their SegmentKey,
// streaming: the encoder writes into the store's Put through a pipe. The
// same txns always go to the same key, so a retry overwrites its earlier
// attempt. The returned info has Key.
func PutSegment(ctx context.Context, s backupstore.Store, chainID string, txns []Txn) (SegmentInfo, error) {
	if err := checkChainID(chainID); err != nil {
		return SegmentInfo{}, err
	}
	want, err := checkTxns(txns)
	if err != nil {
		return SegmentInfo{}, err
	}
	if ms := want.LastObserved.UnixMilli(); ms < 0 || ms > maxObservedMillis {
		return SegmentInfo{}, fmt.Errorf("changelog: revision %d observed at %s: outside what a segment name holds", want.Last, want.LastObserved)
	}
	key := SegmentKey(chainID, want.First, want.Last, want.LastObserved)
	pr, pw := io.Pipe()
	type result struct {
		info SegmentInfo
		err  error
	}
	done := make(chan result, 1)
	go func() {
		info, err := Encode(pw, txns)
		pw.CloseWithError(err) // nil: EOF
		done <- result{info, err}
	}()
	n, err := s.Put(ctx, key, pr, backupstore.PutOptions{ContentType: "application/gzip"})
	// Unblock the encoder if Put stopped reading early.
	pr.CloseWithError(errors.New("changelog: put ended"))
	enc := <-done
	if enc.err != nil {
		return SegmentInfo{}, fmt.Errorf("changelog: encoding %s: %w", key, enc.err)
	}
	if err != nil {
		return SegmentInfo{}, fmt.Errorf("changelog: storing %s: %w", key, err)
	}
	if n != enc.info.Bytes {
		return SegmentInfo{}, fmt.Errorf("changelog: storing %s: stored %d bytes of %d", key, n, enc.info.Bytes)
	}
	enc.info.Key = key
	return enc.info, nil
}

// ReadSegment reads the segment at key (see Decode). When the key is a
// segment name, the segment must hold what its name says.
func ReadSegment(ctx context.Context, s backupstore.Store, key string, fn func(Txn) error) (SegmentInfo, error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return SegmentInfo{}, err
	}
	defer rc.Close()
	info, err := Decode(rc, fn)
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			return SegmentInfo{}, fmt.Errorf("%s/%s: %w", s.URL(), key, err)
		}
		return SegmentInfo{}, err
	}
	info.Key = key
	if _, named, ok := ParseSegmentKey(key); ok {
		if named.First != info.First || named.Last != info.Last || !named.LastObserved.Equal(info.LastObserved) {
			return SegmentInfo{}, fmt.Errorf("%w: %s/%s holds revisions %d-%d last observed %s",
				ErrCorrupt, s.URL(), key, info.First, info.Last, info.LastObserved.Format(time.RFC3339Nano))
		}
	}
	return info, nil
}

// PutHead writes chains/<id>/head.json, replacing the previous head.
func PutHead(ctx context.Context, s backupstore.Store, chainID string, h Head) error {
	if err := checkChainID(chainID); err != nil {
		return err
	}
	return writeJSON(ctx, s, chainKey(chainID, headFile), h)
}

// EndChain writes chains/<id>/end.json. Ending a chain again with the same
// Reason and LastRevision is nil and keeps the first end (its At and
// Detail); a different end is an error wrapping ErrConflict.
func EndChain(ctx context.Context, s backupstore.Store, chainID string, e End) error {
	if err := checkChainID(chainID); err != nil {
		return err
	}
	key := chainKey(chainID, endFile)
	var old End
	switch err := readJSON(ctx, s, key, &old); {
	case err == nil:
		if old.Reason == e.Reason && old.LastRevision == e.LastRevision {
			return nil
		}
		return fmt.Errorf("%w: chain %s already ended: %s at revision %d", ErrConflict, chainID, old.Reason, old.LastRevision)
	case !errors.Is(err, backupstore.ErrNotFound):
		return err
	}
	return writeJSON(ctx, s, key, e)
}

// ChainState is a chain as the store holds it.
type ChainState struct {
	Chain
	Head *Head // nil if never written
	End  *End  // nil while open
	// Segments are the segments that make up the chain, sorted by First,
	// each starting right after the one before: replay reads exactly these.
	Segments []SegmentInfo
	// Superseded are segments that are stored but not part of the chain,
	// left by a capture that was retried (see ListChains); retention may
	// delete them.
	Superseded []SegmentInfo
	// Trim, when retention has removed the chain's oldest segments, says
	// where it now starts.
	Trim *Trim
	// FirstRevision is the first revision the stored segments hold:
	// StartRevision, or later once retention trimmed the chain.
	FirstRevision int64
	// LastRevision is the last durable revision: last segment's Last, or
	// FirstRevision-1 with no segments.
	LastRevision int64
}

// Trim records that retention removed a chain's segments before
// StartRevision: replay of this chain must start from a full backup at
// StartRevision-1 or later. It is written before the segments go, so a
// half-done retention leaves a chain that still reads.
type Trim struct {
	StartRevision int64     `json:"startRevision"`
	At            time.Time `json:"at"`
	Reason        string    `json:"reason,omitempty"`
}

// PutTrim records a chain's new start; an earlier trim further on stays.
func PutTrim(ctx context.Context, s backupstore.Store, chainID string, t Trim) error {
	var old Trim
	switch err := readJSON(ctx, s, chainKey(chainID, trimFile), &old); {
	case err == nil && old.StartRevision >= t.StartRevision:
		return nil
	case err != nil && !errors.Is(err, backupstore.ErrNotFound):
		return err
	}
	return writeJSON(ctx, s, chainKey(chainID, trimFile), t)
}

// ListChains reads every chain in the store with one List of "chains/" and
// a small Get per chain.json, head.json and end.json, sorted by
// StartRevision (then id). Segments are known from their names (and sizes)
// alone.
//
// A chain's segments must cover every revision from StartRevision on,
// without a gap. Capture resumes after the last durable revision, so it
// never writes a revision twice, but a retried or overlapping capture (a
// write that succeeded although it was reported failed, or a capture that
// outlived its replacement) can leave segments whose ranges overlap. The
// rule that resolves them: the chain is the run of segments that starts at
// StartRevision, each starting right after the previous one's Last, that
// reaches furthest; among runs reaching as far, the one with fewer (so
// longer) segments, then the one with later names. So of [10-20] and
// [10-25] the chain keeps [10-25]; of two segments with the same range, the
// later observed. Every other segment that starts within what the chain
// covers is superseded. A segment that starts after the chain's end means
// revisions are missing: an error wrapping ErrCorrupt that names the chain
// and the missing revisions. So is a segment before StartRevision, a
// segment name that does not parse, and a chain without chain.json.
//
// A corrupt chain does not hide the others: ListChains returns every chain
// it could read, and the errors of the others joined.
func ListChains(ctx context.Context, s backupstore.Store) ([]ChainState, error) {
	objs, err := s.List(ctx, chainsPrefix)
	if err != nil {
		return nil, fmt.Errorf("changelog: listing %s/%s: %w", s.URL(), chainsPrefix, err)
	}
	byChain := map[string][]backupstore.ObjectInfo{}
	var ids []string
	for _, o := range objs {
		id, _, ok := strings.Cut(strings.TrimPrefix(o.Key, chainsPrefix), "/")
		if !ok {
			continue // not in a chain's folder
		}
		if _, seen := byChain[id]; !seen {
			ids = append(ids, id)
		}
		byChain[id] = append(byChain[id], o)
	}
	var states []ChainState
	var errs []error
	for _, id := range ids {
		st, err := loadChain(ctx, s, id, byChain[id])
		if errors.Is(err, backupstore.ErrNotFound) {
			// Listed, then gone before its JSON was read: retention removed
			// the chain meanwhile. It is not part of the log any more.
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				return nil, err // the store failed: nothing can be trusted
			}
			errs = append(errs, err)
			continue
		}
		states = append(states, st)
	}
	sort.Slice(states, func(i, j int) bool {
		if states[i].StartRevision != states[j].StartRevision {
			return states[i].StartRevision < states[j].StartRevision
		}
		return states[i].ID < states[j].ID
	})
	return states, errors.Join(errs...)
}

// OpenChain is ListChains for one chain, listing only its folder. A chain
// without chain.json is an error wrapping backupstore.ErrNotFound when its
// folder is empty, ErrCorrupt otherwise.
func OpenChain(ctx context.Context, s backupstore.Store, chainID string) (ChainState, error) {
	if err := checkChainID(chainID); err != nil {
		return ChainState{}, err
	}
	prefix := chainsPrefix + chainID + "/"
	objs, err := s.List(ctx, prefix)
	if err != nil {
		return ChainState{}, fmt.Errorf("changelog: listing %s/%s: %w", s.URL(), prefix, err)
	}
	if len(objs) == 0 {
		return ChainState{}, fmt.Errorf("changelog: chain %s in %s: %w", chainID, s.URL(), backupstore.ErrNotFound)
	}
	return loadChain(ctx, s, chainID, objs)
}

// loadChain builds a chain's state from the objects listed in its folder.
func loadChain(ctx context.Context, s backupstore.Store, id string, objs []backupstore.ObjectInfo) (ChainState, error) {
	var st ChainState
	if err := checkChainID(id); err != nil {
		return st, fmt.Errorf("%w: %s/%s%s: %v", ErrCorrupt, s.URL(), chainsPrefix, id, err)
	}
	var hasChain, hasHead, hasEnd, hasTrim bool
	var segs []SegmentInfo
	for _, o := range objs {
		name := strings.TrimPrefix(o.Key, chainsPrefix+id+"/")
		switch {
		case name == chainFile:
			hasChain = true
		case name == headFile:
			hasHead = true
		case name == endFile:
			hasEnd = true
		case name == trimFile:
			hasTrim = true
		case strings.HasPrefix(name, segDir):
			segID, info, ok := ParseSegmentKey(o.Key)
			if !ok || segID != id {
				return st, fmt.Errorf("%w: chain %s: %s is not a segment name", ErrCorrupt, id, o.Key)
			}
			info.Bytes = o.Size
			segs = append(segs, info)
		}
		// Anything else in the folder is not the change log's.
	}
	if !hasChain {
		return st, fmt.Errorf("%w: chain %s has no %s", ErrCorrupt, id, chainFile)
	}
	if err := readJSON(ctx, s, chainKey(id, chainFile), &st.Chain); err != nil {
		return st, err
	}
	if st.ID != id {
		return st, fmt.Errorf("%w: %s says chain id %q", ErrCorrupt, chainKey(id, chainFile), st.ID)
	}
	if st.StartRevision < 1 {
		return st, fmt.Errorf("%w: chain %s starts at revision %d", ErrCorrupt, id, st.StartRevision)
	}
	if hasHead {
		st.Head = new(Head)
		if err := readJSON(ctx, s, chainKey(id, headFile), st.Head); err != nil {
			return st, err
		}
	}
	if hasEnd {
		st.End = new(End)
		if err := readJSON(ctx, s, chainKey(id, endFile), st.End); err != nil {
			return st, err
		}
	}
	st.FirstRevision = st.StartRevision
	if hasTrim {
		st.Trim = new(Trim)
		if err := readJSON(ctx, s, chainKey(id, trimFile), st.Trim); err != nil {
			return st, err
		}
		st.FirstRevision = max(st.FirstRevision, st.Trim.StartRevision)
		// Segments wholly before the trim are left over from a retention
		// that stopped half-way: superseded, not a break in the chain.
		kept := segs[:0]
		for _, sg := range segs {
			if sg.Last < st.FirstRevision {
				st.Superseded = append(st.Superseded, sg)
			} else {
				kept = append(kept, sg)
			}
		}
		segs = kept
	}
	var err error
	var superseded []SegmentInfo
	st.Segments, superseded, err = tile(id, st.FirstRevision, segs)
	if err != nil {
		return st, err
	}
	st.Superseded = append(st.Superseded, superseded...)
	st.LastRevision = st.FirstRevision - 1
	if n := len(st.Segments); n > 0 {
		st.LastRevision = st.Segments[n-1].Last
	}
	return st, nil
}

// tile picks the chain's segments out of segs by the rule ListChains
// documents.
func tile(id string, start int64, segs []SegmentInfo) (chain, superseded []SegmentInfo, err error) {
	slices.SortFunc(segs, func(a, b SegmentInfo) int {
		if a.First != b.First {
			return cmp.Compare(a.First, b.First)
		}
		return strings.Compare(a.Key, b.Key)
	})
	for _, sg := range segs {
		if sg.First < start {
			return nil, nil, fmt.Errorf("%w: chain %s starts at revision %d but has segment %s", ErrCorrupt, id, start, sg.Key)
		}
	}
	// best[r] is the best run of segments covering start..r-1. Segments are
	// taken in order of First, and a segment only reaches past its own
	// First, so best[sg.First] is final when sg is taken.
	type run struct {
		n    int // segments in the run
		last int // index in segs of its last segment, -1 for none
		prev int64
	}
	best := map[int64]run{start: {n: 0, last: -1}}
	better := func(a, b run) bool { // a better than b, for the same end
		if a.n != b.n {
			return a.n < b.n
		}
		return segs[a.last].Key > segs[b.last].Key
	}
	end := start
	for i, sg := range segs {
		from, ok := best[sg.First]
		if !ok {
			continue
		}
		cand := run{n: from.n + 1, last: i, prev: sg.First}
		if cur, ok := best[sg.Last+1]; !ok || better(cand, cur) {
			best[sg.Last+1] = cand
		}
		end = max(end, sg.Last+1)
	}
	used := make([]bool, len(segs))
	for r := best[end]; r.last >= 0; r = best[r.prev] {
		used[r.last] = true
		chain = append(chain, segs[r.last])
	}
	slices.Reverse(chain)
	for i, sg := range segs {
		switch {
		case used[i]:
		case sg.First < end:
			superseded = append(superseded, sg)
		default:
			return nil, nil, fmt.Errorf("%w: chain %s is missing revisions %d-%d (its segments end at %d, then %s starts at %d)",
				ErrCorrupt, id, end, sg.First-1, end-1, sg.Key, sg.First)
		}
	}
	return chain, superseded, nil
}

// readJSON reads a small JSON object; a missing one is an error wrapping
// backupstore.ErrNotFound, a malformed one ErrCorrupt.
func readJSON(ctx context.Context, s backupstore.Store, key string, v any) error {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("changelog: reading %s/%s: %w", s.URL(), key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxSmallJSON+1))
	if err != nil {
		return fmt.Errorf("changelog: reading %s/%s: %w", s.URL(), key, err)
	}
	if len(data) > maxSmallJSON {
		return fmt.Errorf("%w: %s/%s is larger than %d bytes", ErrCorrupt, s.URL(), key, maxSmallJSON)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %s/%s: %v", ErrCorrupt, s.URL(), key, err)
	}
	return nil
}

func writeJSON(ctx context.Context, s backupstore.Store, key string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if _, err := s.Put(ctx, key, bytes.NewReader(data), backupstore.PutOptions{ContentType: "application/json"}); err != nil {
		return fmt.Errorf("changelog: writing %s/%s: %w", s.URL(), key, err)
	}
	return nil
}
