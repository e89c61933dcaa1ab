package ebs

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// AlreadyReplacedError is TakeKopsTags refusing a volume another restore
// already replaced.
type AlreadyReplacedError struct{ VolumeID, By string }

func (e *AlreadyReplacedError) Error() string {
	return fmt.Sprintf("volume %s was already replaced by %s (another restore?): not touching it", e.VolumeID, e.By)
}

// TakeKopsTags takes the kops tags off a member's old volume for its
// replacement newID and returns them. It first records them on the volume
// (prefixed with TagCopyPrefix, invisible to protokube) with
// TagReplacedBy=newID, then removes them: an attempt killed between the two
// leaves both, and the next one finds the record and finishes. ok is false
// when the volume no longer exists.
func TakeKopsTags(ctx context.Context, c *ec2.Client, oldID, newID string) (tags map[string]string, ok bool, err error) {
	old, ok, err := GetVolume(ctx, c, oldID)
	if err != nil || !ok {
		return nil, ok, wrap("describe old volume "+oldID, err)
	}
	if by := old.Tags[TagReplacedBy]; by != "" && by != newID {
		return nil, true, &AlreadyReplacedError{VolumeID: oldID, By: by}
	}
	kops := KopsTags(old.Tags)
	if len(kops) == 0 {
		return Uncopied(old.Tags), true, nil // removed by an earlier attempt
	}
	record := Copied(kops)
	record[TagReplacedBy] = newID
	if err := AddTags(ctx, c, oldID, record); err != nil {
		return nil, true, wrap("tag "+oldID, err)
	}
	if err := RemoveTags(ctx, c, oldID, SortedKeys(kops)); err != nil {
		return nil, true, wrap("untag "+oldID, err)
	}
	return kops, true, nil
}

// GiveBackKopsTags undoes TakeKopsTags on the old volume: its kops tags
// come back and the bookkeeping goes. The record on the volume is the most
// exact source; then each of fallbacks in turn (what the swap returned,
// what pre-flight saw). A volume that no longer exists is left alone.
func GiveBackKopsTags(ctx context.Context, c *ec2.Client, oldID string, fallbacks ...map[string]string) error {
	old, ok, err := GetVolume(ctx, c, oldID)
	if err != nil || !ok {
		return wrap("describe old volume "+oldID, err)
	}
	tags := Uncopied(old.Tags)
	for _, f := range fallbacks {
		if len(tags) > 0 {
			break
		}
		tags = f
	}
	if err := AddTags(ctx, c, oldID, tags); err != nil {
		return wrap("tag "+oldID, err)
	}
	var bookkeeping []string
	for _, k := range SortedKeys(old.Tags) {
		if k == TagReplacedBy || strings.HasPrefix(k, TagCopyPrefix) {
			bookkeeping = append(bookkeeping, k)
		}
	}
	return wrap("untag "+oldID, RemoveTags(ctx, c, oldID, bookkeeping))
}

// RetireVolume takes the kops tags off a new volume whose restore was
// rolled back and marks it TagRolledBack, keeping it for the operator. A
// volume that no longer exists is left alone.
func RetireVolume(ctx context.Context, c *ec2.Client, id string) error {
	nv, ok, err := GetVolume(ctx, c, id)
	if err != nil || !ok {
		return wrap("describe new volume "+id, err)
	}
	if err := RemoveTags(ctx, c, id, SortedKeys(KopsTags(nv.Tags))); err != nil {
		return wrap("untag "+id, err)
	}
	return wrap("tag "+id, AddTags(ctx, c, id, map[string]string{TagRolledBack: "true"}))
}

// wrap names the call that failed; nil stays nil.
func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
