package replay

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestTargetVersion(t *testing.T) {
	for base, want := range map[string]string{
		"3.5.9":        "3.5",
		"v3.5.21":      "3.5",
		"3.5":          "3.5",
		"3.6.4":        "3.6",
		" 3.6.0-rc.1 ": "3.6",
		"3.4.13":       "3.5", // never below what etcd's migration knows
		"3.1.0":        "3.5",
		"3.7.3":        "", // the scratch etcd's own: nothing to lower
		"3.7.0":        "",
		"3.8.1":        "",
		"4.0.0":        "",
		"2.2.5":        "",
		"":             "",
		"latest":       "",
	} {
		got, ok := targetVersion(base)
		if want == "" {
			assert.False(t, ok, "%q gave %v", base, got)
			continue
		}
		if assert.True(t, ok, base) {
			assert.Equal(t, want, minor(got), base)
			assert.Zero(t, got.Patch, base)
		}
	}
}
