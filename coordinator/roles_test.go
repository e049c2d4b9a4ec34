package coordinator_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// TestInferenceRolesCallNothing: the certificates of accord serve's clients
// (consumer) and of accord serve itself (inference) open no coordinator
// service — the roles add a way to use a model, not a way into the cluster.
func TestInferenceRolesCallNothing(t *testing.T) {
	tc := coordtest.NewCluster(t, 1)
	tc.Leader(30 * time.Second)
	for _, role := range []pki.Role{pki.RoleConsumer, pki.RoleInference} {
		conn := tc.Dial(0, tc.Credentials(role, "svc-"+string(role)))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		calls := map[string]error{}
		_, calls["AdminService.ListJobs"] = pb.NewAdminServiceClient(conn).ListJobs(ctx, &pb.ListJobsRequest{})
		_, calls["ParticipantService.Register"] = pb.NewParticipantServiceClient(conn).Register(ctx, &pb.RegisterRequest{Datasets: []string{"mnist"}})
		blobs, err := pb.NewClusterServiceClient(conn).GetBlob(ctx, &pb.GetBlobRequest{Digest: "sha256:00"})
		if err == nil {
			_, err = blobs.Recv()
		}
		calls["ClusterService.GetBlob"] = err
		cancel()
		for call, err := range calls {
			switch status.Code(err) {
			case codes.PermissionDenied, codes.Unauthenticated, codes.Unavailable: // refused, by the handler or at the handshake
			default:
				t.Errorf("%s certificate: %s answered %v; want it refused", role, call, err)
			}
		}
	}
}
