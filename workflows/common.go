// Package workflows holds kopsdr's Temporal workflows. They are deterministic:
// every effect on etcd, object stores, Docker or EC2 happens in an activity,
// and every input is checked before the first activity runs.
package workflows

import (
	"regexp"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/internal/inputerr"
)

// EtcdClusters are the two etcd clusters of every kops cluster.
var EtcdClusters = []string{"main", "events"}

func invalid(field, value, fix string) error { return inputerr.New(field, value, fix) }

// invalidInput makes bad input final: retrying it can only fail again.
func invalidInput(err error) error {
	if ie, ok := inputerr.As(err); ok {
		return temporal.NewNonRetryableApplicationError(ie.Error(), inputerr.Type, nil,
			map[string]string{"field": ie.Field, "value": ie.Value, "fix": ie.Fix})
	}
	return err
}

// setDuration sets *dst from a Go duration such as "30m" or "168h",
// leaving the default in *dst when val is empty.
func setDuration(field, val string, dst *time.Duration) error {
	if val == "" {
		return nil
	}
	d, err := time.ParseDuration(val)
	if err != nil || d < 0 {
		return invalid(field, val, `use a Go duration such as "30m", "24h" or "168h"`)
	}
	*dst = d
	return nil
}

// kops cluster names are DNS names.
var clusterName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

func checkCluster(name string) error {
	if !clusterName.MatchString(name) {
		return invalid("cluster", name, "give the kops cluster name, a DNS name such as test.my.clusters")
	}
	return nil
}

func checkEtcdCluster(field, name string) error {
	for _, c := range EtcdClusters {
		if name == c {
			return nil
		}
	}
	return invalid(field, name, `use "main" or "events"`)
}

// prefixField makes a child's field name point at where it is in the
// parent's input ("endpoints" becomes "main.endpoints").
func prefixField(err error, prefix string) error {
	ie, ok := inputerr.As(err)
	if !ok {
		return err
	}
	switch ie.Field {
	case "endpoints", "backupStore":
		c := *ie
		c.Field = prefix + "." + ie.Field
		return &c
	}
	return err
}
