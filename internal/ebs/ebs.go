// Package ebs is kopsdr's knowledge of the legacy etcd volumes of a kops
// cluster on EC2: how protokube finds them by their tags, how kopsdr tags the
// snapshots it takes so it can find them again, which snapshot sets a
// retention policy keeps, and what a restore must create. The planning parts
// are pure functions over plain values; the EC2 parts are thin wrappers over
// the real aws-sdk-go-v2 client, built by kops.NewEC2Client: its region comes
// from the caller and its credentials and endpoint from the worker's
// environment only. What a kops master is and its tags live in package kops.
package ebs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"
)

// ErrorCode is the EC2 error code of err ("" when err is not an EC2 answer).
func ErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// IsNotFound reports whether EC2 answered that the volume, snapshot or
// instance does not exist.
func IsNotFound(err error) bool {
	switch ErrorCode(err) {
	case "InvalidVolume.NotFound", "InvalidSnapshot.NotFound", "InvalidInstanceID.NotFound":
		return true
	}
	return false
}

// ClientToken is the CreateVolume idempotency token of one member of one
// restore: the same workflow (id and first run) and member always give the
// same token, so a retried or replayed create returns the volume the first
// attempt made instead of a second one. A later restore under the same
// workflow id has another run, hence other tokens. EC2 allows 64 ASCII
// characters.
func ClientToken(workflowID, runID, etcdCluster, member string) string {
	h := sha256.Sum256([]byte(workflowID + "\x00" + runID + "\x00" + etcdCluster + "\x00" + member))
	return "kopsdr-" + hex.EncodeToString(h[:])[:40]
}

// SetID names one snapshot set: the UTC millisecond the snapshot workflow
// started and a short hash of its run, so ids sort by time as strings and
// two runs at the same moment still differ.
func SetID(start time.Time, runID string) string {
	h := sha256.Sum256([]byte(runID))
	return start.UTC().Format(setTimeLayout) + "-" + hex.EncodeToString(h[:])[:8]
}

// setTimeLayout is RFC 3339 in UTC with milliseconds: always 24 characters.
const setTimeLayout = "2006-01-02T15:04:05.000Z"

// SetTime is the time a set id starts with (ok false for a foreign id).
func SetTime(set string) (time.Time, bool) {
	if len(set) < len(setTimeLayout) {
		return time.Time{}, false
	}
	t, err := time.Parse(setTimeLayout, set[:len(setTimeLayout)])
	return t, err == nil
}

func str(p *string) string { return aws.ToString(p) }
