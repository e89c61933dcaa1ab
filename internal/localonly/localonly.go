// Package localonly is the one switch that keeps kopsdr's AWS traffic (S3
// and EC2) on this machine: no instance metadata lookups, no endpoint off
// loopback. The worker's --dev and the test servers turn it on.
package localonly

import (
	"os"
	"strings"
)

// Env is the variable that turns local-only mode on ("1", "true", "yes").
const Env = "KOPSDR_LOCAL_ONLY"

// On reports whether Env is set to a true value.
func On() bool {
	v := strings.ToLower(os.Getenv(Env))
	return v == "1" || v == "true" || v == "yes"
}
