package containerdtest

import (
	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	contentapi "github.com/containerd/containerd/api/services/content/v1"
	diffapi "github.com/containerd/containerd/api/services/diff/v1"
	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Clients of the daemon's services, on its connection.

func (d *Daemon) Containers() containersapi.ContainersClient {
	return containersapi.NewContainersClient(d.conn)
}
func (d *Daemon) Tasks() tasksapi.TasksClient    { return tasksapi.NewTasksClient(d.conn) }
func (d *Daemon) Events() eventsapi.EventsClient { return eventsapi.NewEventsClient(d.conn) }
func (d *Daemon) Snapshots() snapshotsapi.SnapshotsClient {
	return snapshotsapi.NewSnapshotsClient(d.conn)
}
func (d *Daemon) Content() contentapi.ContentClient { return contentapi.NewContentClient(d.conn) }
func (d *Daemon) Images() imagesapi.ImagesClient    { return imagesapi.NewImagesClient(d.conn) }
func (d *Daemon) Diff() diffapi.DiffClient          { return diffapi.NewDiffClient(d.conn) }
func (d *Daemon) Leases() leasesapi.LeasesClient    { return leasesapi.NewLeasesClient(d.conn) }
func (d *Daemon) Namespaces() namespacesapi.NamespacesClient {
	return namespacesapi.NewNamespacesClient(d.conn)
}

func isNotFound(err error) bool      { return status.Code(err) == codes.NotFound }
func isAlreadyExists(err error) bool { return status.Code(err) == codes.AlreadyExists }
