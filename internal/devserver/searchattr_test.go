package devserver

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/kopsdr/kopsdr/internal/searchattr"
	"github.com/kopsdr/kopsdr/test/loopback"
	"github.com/kopsdr/kopsdr/workflows/api"
)

// TestSearchAttributesRegistered: a new dev server has kopsdr's search
// attributes; one whose database predates them (simulated by removing
// them) gets them at start, usable in a query as soon as Start returns;
// and a value with quotes that would change a naively built query finds
// exactly its own run.
func TestSearchAttributesRegistered(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded Temporal server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	srv, c := startForTest(t, ctx, dir)
	missing, err := searchattr.Missing(ctx, c, "default")
	require.NoError(t, err)
	require.Empty(t, missing, "a new namespace has them")

	odd := `it's' OR KopsCluster = 'other`
	for id, cluster := range map[string]string{"odd": odd, "other": "other"} {
		_, err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID: id, TaskQueue: "nobody-polls",
			TypedSearchAttributes: temporal.NewSearchAttributes(searchattr.KopsCluster.ValueSet(cluster)),
		}, "NoSuchWorkflow")
		require.NoError(t, err)
	}
	query := searchattr.Filter{Cluster: odd}.Query()
	require.Eventually(t, func() bool {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query})
		require.NoError(t, err, "query %s", query)
		for _, e := range resp.Executions {
			require.Equal(t, "odd", e.Execution.WorkflowId, "only the odd run matches %s", query)
		}
		return len(resp.Executions) == 1
	}, 30*time.Second, 100*time.Millisecond, "the odd run is found by %s", query)

	_, err = c.OperatorService().RemoveSearchAttributes(ctx, &operatorservice.RemoveSearchAttributesRequest{
		Namespace: "default", SearchAttributes: api.SearchAttrs,
	})
	require.NoError(t, err)
	missing, err = searchattr.Missing(ctx, c, "default")
	require.NoError(t, err)
	require.Equal(t, api.SearchAttrs, missing)
	srv.Stop()

	srv, c = startForTest(t, ctx, dir)
	defer srv.Stop()
	missing, err = searchattr.Missing(ctx, c, "default")
	require.NoError(t, err)
	require.Empty(t, missing, "Start registered them again")
	_, err = c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
		Query: searchattr.Filter{Cluster: "a.example.com", EtcdCluster: "main", Failed: true}.Query(),
	})
	require.NoError(t, err, "a query naming them is accepted as soon as Start returns")
	missing, err = searchattr.Ensure(ctx, c, "default")
	require.NoError(t, err)
	require.Empty(t, missing, "Ensure with nothing to add")
}

func startForTest(t *testing.T, ctx context.Context, dir string) (*Server, client.Client) {
	t.Helper()
	port := loopback.Ports(t, 1)[0]
	srv, err := Start(ctx, Options{DataDir: dir, Port: port, UIPort: -1})
	require.NoError(t, err)
	c, err := client.Dial(client.Options{HostPort: srv.Frontend})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return srv, c
}
