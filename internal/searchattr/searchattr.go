// Package searchattr registers kopsdr's search attributes (api.SearchAttrs,
// all Keyword) in a Temporal namespace and builds the visibility queries
// that use them (`kopsdr runs`, `kopsdr report`).
//
// Registration goes through the operator service, which a self-hosted
// server or the dev server allows and Temporal Cloud refuses (there an
// operator registers them once with tcld or the Cloud UI). A refusal is not
// fatal to kopsdr: Ensure says which are missing and how to add them, and
// the worker runs its workflows without them.
package searchattr

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/workflows/api"
)

// Typed keys, for StartWorkflowOptions.TypedSearchAttributes and
// workflow.UpsertTypedSearchAttributes.
var (
	KopsCluster = temporal.NewSearchAttributeKeyKeyword(api.SearchAttrKopsCluster)
	EtcdCluster = temporal.NewSearchAttributeKeyKeyword(api.SearchAttrEtcdCluster)
	BackupName  = temporal.NewSearchAttributeKeyKeyword(api.SearchAttrBackupName)
)

// Types maps each of api.SearchAttrs to its type, Keyword: what a server
// that creates its namespaces itself (the dev server) is given.
func Types() map[string]enumspb.IndexedValueType {
	m := map[string]enumspb.IndexedValueType{}
	for _, name := range api.SearchAttrs {
		m[name] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	}
	return m
}

// VisibleWithin bounds how long Ensure waits for attributes it added to be
// usable. A server reads a namespace's attributes from a cache it refreshes
// every few seconds (2 s by default), so a query naming them right after
// they were added can still be refused.
const VisibleWithin = 30 * time.Second

// NotRegisteredError says which attributes a namespace lacks and why kopsdr
// could not add them; Error() ends with the command that fixes it.
type NotRegisteredError struct {
	Namespace string
	Missing   []string
	Err       error // why adding failed; nil when it was not tried
}

func (e *NotRegisteredError) Error() string {
	why := ""
	if e.Err != nil {
		why = fmt.Sprintf(" and could not be added (%v)", e.Err)
	}
	return fmt.Sprintf("search attributes %s are not registered in namespace %s%s; register them once with: %s",
		strings.Join(e.Missing, ", "), e.Namespace, why, api.SearchAttributeCreateCommand(e.Namespace))
}

func (e *NotRegisteredError) Unwrap() error { return e.Err }

// Missing lists which of api.SearchAttrs the namespace lacks, in the order
// of api.SearchAttrs. An attribute registered with another type than
// Keyword is an error: kopsdr cannot fix that by adding it again.
func Missing(ctx context.Context, c client.Client, namespace string) ([]string, error) {
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return nil, fmt.Errorf("list the search attributes of namespace %s: %w", namespace, err)
	}
	var missing []string
	for _, name := range api.SearchAttrs {
		t, ok := resp.GetCustomAttributes()[name]
		switch {
		case !ok:
			missing = append(missing, name)
		case t != enumspb.INDEXED_VALUE_TYPE_KEYWORD:
			return nil, fmt.Errorf("search attribute %s of namespace %s has type %s; kopsdr needs Keyword: remove it "+
				"(temporal operator search-attribute remove --namespace %s --name %s) and add it again: %s",
				name, namespace, strings.TrimPrefix(t.String(), "INDEXED_VALUE_TYPE_"), namespace, name, api.SearchAttributeCreateCommand(namespace))
		}
	}
	return missing, nil
}

// Ensure adds the attributes the namespace lacks, as Keyword, and returns
// once a query naming all of them is accepted (bounded by VisibleWithin).
// missing is nil when all are usable. When they cannot be added (Temporal
// Cloud, no permission, the SQL visibility store out of Keyword columns)
// the error is a *NotRegisteredError naming them and the fix; when the
// namespace cannot even be read, missing is nil and err says why.
func Ensure(ctx context.Context, c client.Client, namespace string) (missing []string, err error) {
	missing, err = Missing(ctx, c, namespace)
	if err != nil || len(missing) == 0 {
		return nil, err
	}
	add := Types()
	for name := range add {
		if !slices.Contains(missing, name) {
			delete(add, name)
		}
	}
	_, addErr := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace: namespace, SearchAttributes: add,
	})
	if addErr != nil {
		// Another worker may have added them at the same moment.
		if again, err := Missing(ctx, c, namespace); err != nil || len(again) > 0 {
			return missing, &NotRegisteredError{Namespace: namespace, Missing: missing, Err: explain(addErr)}
		}
	}
	if err := waitUsable(ctx, c, namespace); err != nil {
		return missing, err
	}
	return nil, nil
}

// explain adds what to do about the SQL visibility store's limit.
func explain(err error) error {
	if strings.Contains(err.Error(), "cannot have more than") {
		return fmt.Errorf("%w: the SQL visibility store has a fixed number of Keyword columns per namespace; "+
			"remove unused attributes (temporal operator search-attribute list / remove) or use another namespace", err)
	}
	return err
}

// waitUsable polls until the namespace lists the attributes and a query
// naming all of them is accepted: the listing reads the namespace's record,
// the query the server's cache of it, which is what workflows will meet.
func waitUsable(ctx context.Context, c client.Client, namespace string) error {
	ctx, cancel := context.WithTimeout(ctx, VisibleWithin)
	defer cancel()
	var terms []string
	for _, name := range api.SearchAttrs {
		terms = append(terms, name+" = "+Quote("probe"))
	}
	probe := strings.Join(terms, " AND ")
	var last error
	for {
		missing, err := Missing(ctx, c, namespace)
		switch {
		case err != nil:
			last = err
		case len(missing) > 0:
			last = fmt.Errorf("%s not listed yet", strings.Join(missing, ", "))
		default:
			_, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Namespace: namespace, Query: probe})
			if err == nil {
				return nil
			}
			last = err
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("search attributes added to namespace %s but not usable after %s: %v", namespace, VisibleWithin, last)
			}
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
