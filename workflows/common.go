// Package workflows holds kopsdr's Temporal workflows. They are deterministic:
// every effect on etcd, object stores, Docker or EC2 happens in an activity,
// and every input is checked (api's Validate) before the first activity runs.
package workflows

import (
	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/internal/inputerr"
)

func invalid(field, value, fix string) error { return inputerr.New(field, value, fix) }

// invalidInput makes bad input final: retrying it can only fail again.
func invalidInput(err error) error {
	if ie, ok := inputerr.As(err); ok {
		return temporal.NewNonRetryableApplicationError(ie.Error(), inputerr.Type, nil,
			map[string]string{"field": ie.Field, "value": ie.Value, "fix": ie.Fix})
	}
	return err
}
