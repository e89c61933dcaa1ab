package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/internal/inputerr"
)

// Exit codes, documented in the root command's help and the README.
const (
	exitOK          = 0
	exitError       = 1
	exitBadInput    = 2
	exitFailed      = 3
	exitCanceled    = 4
	exitTerminated  = 5
	exitTimedOut    = 6
	exitStale       = 7 // report: a backup missing or older than --max-age
	exitInterrupted = 130
)

// flagError is cobra's own complaint about the command line (unknown flag,
// a value that does not parse).
type flagError struct{ err error }

func (e flagError) Error() string { return e.err.Error() }

// badFlag is bad input the CLI itself finds, named by its flag.
func badFlag(flag, value, fix string) error { return inputerr.New("--"+flag, value, fix) }

// unreachable: Temporal did not answer.
type unreachable struct {
	addr string
	err  error
}

func (e unreachable) Error() string {
	return fmt.Sprintf("cannot reach Temporal at %s: %v (is a worker running? kopsdr-worker --dev starts one locally; or set --address / TEMPORAL_ADDRESS)", e.addr, rootCause(e.err))
}

// workflowEnded is a workflow that ended other than completed.
type workflowEnded struct {
	id     string
	status enumspb.WorkflowExecutionStatus
	err    error // the failure, when there is one
}

func (e workflowEnded) Error() string {
	if e.err == nil {
		return fmt.Sprintf("workflow %s %s", e.id, stateName(e.status))
	}
	return fmt.Sprintf("workflow %s %s: %s", e.id, stateName(e.status), rootCause(e.err))
}

// stateName is how messages say a workflow's state.
func stateName(s enumspb.WorkflowExecutionStatus) string {
	switch s {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		return "running"
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		return "completed"
	case enumspb.WORKFLOW_EXECUTION_STATUS_FAILED:
		return "failed"
	case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
		return "cancelled"
	case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
		return "terminated"
	case enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
		return "timed out"
	case enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW:
		return "continued as new"
	}
	return strings.ToLower(s.String())
}

func (e workflowEnded) Unwrap() error { return e.err }

func (e workflowEnded) code() int {
	switch e.status {
	case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
		return exitCanceled
	case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
		return exitTerminated
	case enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
		return exitTimedOut
	}
	return exitFailed
}

// interrupted: Ctrl-C while following; the workflow goes on.
type interrupted struct{ id string }

func (e interrupted) Error() string {
	return fmt.Sprintf("stopped following %s; the workflow continues on the worker. Follow it again with: kopsdr status %s --follow", e.id, e.id)
}

// lostTemporal: the connection broke while following.
type lostTemporal struct {
	id  string
	err error
}

func (e lostTemporal) Error() string {
	return fmt.Sprintf("lost the connection to Temporal while following %s (%v); the workflow continues on the worker. When Temporal answers again: kopsdr status %s --follow",
		e.id, rootCause(e.err), e.id)
}

// quietExit ends with code after the command has already said why.
type quietExit struct{ code int }

func (e quietExit) Error() string { return fmt.Sprintf("exit %d", e.code) }

// report prints err once, as text or (with -o json) as a JSON object on
// stderr, and returns the exit code.
func (a *app) report(err error) int {
	if err == nil {
		return exitOK
	}
	var q quietExit
	if errors.As(err, &q) {
		return q.code
	}
	code, msg := exitError, rootCause(err)
	out := map[string]any{}
	var (
		fe flagError
		we workflowEnded
		ir interrupted
		sb staleBackups
	)
	switch {
	case errors.As(err, &fe):
		code, msg = exitBadInput, fe.Error()
		if strings.Contains(msg, "time: invalid duration") {
			msg += `: durations are Go durations such as "90m", "24h" or "2160h" (90 days)`
		}
		msg += " (see --help)"
	case errors.As(err, &ir):
		code, msg = exitInterrupted, ir.Error()
	case errors.As(err, &we):
		code, msg = we.code(), we.Error()
		out["workflowId"] = we.id
	case errors.As(err, &sb):
		code, msg = exitStale, sb.Error()
		out["stale"] = sb.items
	}
	if ie, ok := inputerr.As(err); ok {
		code, msg = exitBadInput, inputMessage(ie)
		out["field"], out["value"], out["fix"] = ie.Field, ie.Value, ie.Fix
		if f := flagFor(ie.Field); f != "" {
			out["flag"] = f
		}
	} else if ae, ok := appError(err); ok {
		out["type"] = ae.Type()
		var d map[string]string
		if ae.Type() == inputerr.Type && ae.HasDetails() && ae.Details(&d) == nil {
			out["field"], out["value"], out["fix"] = d["field"], d["value"], d["fix"]
		}
	}
	out["error"], out["exitCode"] = msg, code
	if a.output == "json" {
		enc := json.NewEncoder(a.errOut)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(out)
	} else {
		fmt.Fprintln(a.errOut, "kopsdr: "+msg)
	}
	return code
}

// inputMessage names the flag (and the JSON field, which the workflow's own
// message and the Web UI use), the value and the fix.
func inputMessage(ie *inputerr.Error) string {
	name := ie.Field
	if f := flagFor(ie.Field); f != "" && f != ie.Field {
		name = f + " (" + ie.Field + ")"
	}
	msg := fmt.Sprintf("invalid %s %q", name, ie.Value)
	if ie.Err != nil {
		msg += ": " + ie.Err.Error()
	}
	if ie.Fix != "" {
		msg += ": " + ie.Fix
	}
	return msg
}

// fieldFlags are the JSON fields whose flag is not their kebab-case form.
var fieldFlags = map[string]string{
	"etcdCluster":                     "--etcd",
	"etcdClusters":                    "--etcd",
	"retention.keepAllFor":            "--keep-all-for",
	"retention.hourlyFor":             "--hourly-for",
	"retention.dailyFor":              "--daily-for",
	"retention.keepLast":              "--keep-last",
	"liveMasterIPs":                   "--live-master-ip",
	"discover.dockerEndpointTemplate": "--docker-endpoint-template",
	"discover.runtime":                "--runtime",
	"discover.sshAddressTemplate":     "--ssh-address-template",
	"discover.containerdSocket":       "--containerd-socket",
	"ssh.key":                         "--ssh-key",
	"ssh.knownHosts":                  "--ssh-known-hosts",
	"discover.tlsCA":                  "--docker-tlsca",
	"discover.tlsCert":                "--docker-tlscert",
	"discover.tlsKey":                 "--docker-tlskey",
	"sseKmsKeyId":                     "--sse-kms-key-id",
	"snapshotIds":                     "--snapshot-ids",
	"verify.cacert":                   "--cacert",
	"verify.cert":                     "--cert",
	"verify.key":                      "--key",
	"verify.mainEndpoints":            "--verify-main-endpoints",
	"verify.eventsEndpoints":          "--verify-events-endpoints",
}

var (
	masterField = regexp.MustCompile(`^masters\[(\d+)\]\.(\w+)$`)
	upper       = regexp.MustCompile(`[A-Z]+`)
)

// flagFor is the flag a JSON field is set with ("" when the field is
// already a flag, as badFlag's are).
func flagFor(field string) string {
	if strings.HasPrefix(field, "--") {
		return field
	}
	if f, ok := fieldFlags[field]; ok {
		return f
	}
	if m := masterField.FindStringSubmatch(field); m != nil {
		var n int
		fmt.Sscan(m[1], &n)
		key := strings.ToLower(m[2])
		if key == "instanceid" {
			key = "instance"
		}
		return fmt.Sprintf("--master #%d %s=", n+1, key)
	}
	kebab := upper.ReplaceAllStringFunc(field, func(s string) string { return "-" + strings.ToLower(s) })
	return "--" + strings.ReplaceAll(kebab, ".", "-")
}

// appError finds the deepest Temporal ApplicationError in err's chain: the
// one an activity or workflow raised.
func appError(err error) (*temporal.ApplicationError, bool) {
	var found *temporal.ApplicationError
	for e := err; e != nil; e = errors.Unwrap(e) {
		if ae, ok := e.(*temporal.ApplicationError); ok {
			found = ae
		}
	}
	return found, found != nil
}

// rootCause is the message of the innermost error: Temporal wraps a
// failure in workflow, child and activity errors that each repeat it.
func rootCause(err error) string {
	last := err
	for e := err; e != nil; e = errors.Unwrap(e) {
		last = e
		if ae, ok := e.(*temporal.ApplicationError); ok && errors.Unwrap(ae) == nil {
			break
		}
	}
	msg := last.Error()
	if ae, ok := last.(*temporal.ApplicationError); ok {
		msg = ae.Message()
	}
	return msg
}
