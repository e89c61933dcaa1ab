package searchattr

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"test.my.clusters": `'test.my.clusters'`,
		"":                 `''`,
		`it's`:             `'it\'s'`,
		`a\b`:              `'a\\b'`,
		`x' OR 'a' = 'a`:   `'x\' OR \'a\' = \'a'`,
		`\' OR 1=1 --`:     `'\\\' OR 1=1 --'`,
		`"double" quotes`:  `'"double" quotes'`,
		"ünïcode\nnewline": "'ünïcode\nnewline'",
	} {
		assert.Equal(t, want, Quote(in), "Quote(%q)", in)
	}
}

func TestFilterQuery(t *testing.T) {
	for _, tc := range []struct {
		f    Filter
		want string
	}{
		{Filter{Cluster: "a.example.com"}, `KopsCluster = 'a.example.com'`},
		{Filter{Cluster: "a.example.com", EtcdCluster: "events"}, `KopsCluster = 'a.example.com' AND EtcdCluster = 'events'`},
		{Filter{Cluster: "a.example.com", Failed: true}, `KopsCluster = 'a.example.com' AND ExecutionStatus = 'Failed'`},
		{Filter{Cluster: "a.example.com", EtcdCluster: "main", Failed: true},
			`KopsCluster = 'a.example.com' AND EtcdCluster = 'main' AND ExecutionStatus = 'Failed'`},
		{Filter{Cluster: `x' OR KopsCluster != '`}, `KopsCluster = 'x\' OR KopsCluster != \''`},
	} {
		assert.Equal(t, tc.want, tc.f.Query())
	}
}
