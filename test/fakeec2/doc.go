// Package fakeec2 is a stateful, in-process fake of the Amazon EC2 API for
// tests. It speaks the real EC2 Query protocol (HTTP POST, form-encoded
// Action=...&Version=2016-11-15, XML answers in the
// http://ec2.amazonaws.com/doc/2016-11-15/ namespace, errors as
// <Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>)
// so that the real aws-sdk-go-v2 service/ec2 client, its retryer, its
// paginators and its waiters run unmodified against it. It exists because
// kopsdr's EBS restore logic must be tested through the real SDK, and no
// mock of the client can show that retries, idempotency tokens and waiters
// behave as they will against AWS.
//
// # What it models
//
//   - Actions: DescribeInstances, StartInstances, StopInstances,
//     RebootInstances, DescribeVolumes, CreateVolume, DeleteVolume,
//     AttachVolume, DetachVolume, CreateSnapshot, DescribeSnapshots,
//     DeleteSnapshot, CreateTags, DeleteTags. Any other action answers
//     InvalidAction, as AWS does for an action it does not know.
//   - One account and one region (WithRegion, WithAccountID). Availability
//     zones are the region name plus one letter (us-east-1a ... us-east-1z).
//   - Lifecycle over time: volumes creating -> available, attachments
//     attaching -> attached and detaching -> gone (volume in-use ->
//     available), snapshots pending (progress rising) -> completed,
//     instances stopping -> stopped and pending -> running. Each transition
//     takes WithTransitionDelay (default 200ms) on the server's clock
//     (WithClock) and is applied lazily whenever state is read, so no
//     goroutine runs behind the test's back.
//   - CreateVolume as AWS does it: size defaults to the snapshot's size and
//     may not be smaller; the snapshot must be completed; a volume from an
//     encrypted snapshot is always encrypted, with the snapshot's key unless
//     KmsKeyId names another; Encrypted=true without a key uses the account's
//     aws/ebs managed key (DefaultKMSKeyARN); KmsKeyId without Encrypted=true
//     is refused (InvalidParameterDependency); volume types gp2, gp3, io1,
//     io2, st1, sc1, standard with their size ranges and iops/throughput
//     rules; ClientToken idempotency (same token and same parameters return
//     the same volume, same token and other parameters answer
//     IdempotentParameterMismatch).
//   - CreateSnapshot copies size, encryption and key from the volume.
//   - Tags on volumes, snapshots and instances, through TagSpecifications,
//     CreateTags and DeleteTags (key-only deletes any value, key+value
//     deletes only on a match, no Tag deletes all tags).
//   - Filters: multiple values of one filter are OR'ed, several filters are
//     AND'ed, values may use the * and ? wildcards. Unknown filter names are
//     refused (InvalidParameterValue), as AWS does.
//   - Pagination with MaxResults/NextToken for the three Describe actions,
//     including AWS's rules (range of MaxResults, no MaxResults together
//     with explicit ids).
//   - Errors with AWS's codes: InvalidVolume.NotFound,
//     InvalidSnapshot.NotFound, InvalidInstanceID.NotFound, the .Malformed
//     variants, IncorrectState, IncorrectInstanceState, VolumeInUse,
//     MissingParameter, InvalidParameterValue, InvalidParameterCombination,
//     DryRunOperation.
//   - Fault injection (InjectFault): any code and HTTP status for a chosen
//     action, a number of times, optionally only for matching requests and
//     optionally after the action took effect (a lost response), which is
//     how retries and idempotency are proven.
//   - A record of every call (Calls) for assertions.
//
// # What it does NOT model
//
//   - Authentication and IAM: requests are not signature-checked and every
//     caller may do everything (no UnauthorizedOperation, no AuthFailure).
//   - KMS: keys are strings. Nothing checks that a key exists or is usable;
//     a bare key id is expanded to a key ARN and alias/aws/ebs to the
//     default key ARN, other aliases are kept verbatim (real EC2 would
//     report the key ARN behind them). Encryption by default is off.
//   - More than one region or account, snapshot copy/sharing, AMIs, fast
//     snapshot restore, Outposts, multi-attach, volume modification,
//     instance creation/termination (seed instances with AddInstance).
//   - Attachments beyond one volume on one instance at a time; device name
//     conflicts are checked, nothing else (no root-volume rules).
//   - Snapshot contents: a snapshot has no data and completes after the
//     transition delay regardless of size. Deleting a volume or snapshot
//     removes it at once (no deleting state).
//   - Throttling or eventual consistency of its own: use InjectFault.
//   - Wildcard escaping in filter values, and filters beyond the ones
//     listed in README.md.
package fakeec2
