package coordinator_test

import (
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/pki"
)

// TestHealthFollowsQuorum: a coordinator answers health checks (the whole
// coordinator and each service by name, over mTLS) SERVING while it is
// part of a working cluster, NOT_SERVING once two of three coordinators
// are gone and it cannot reach a quorum, and SERVING again when one is back.
func TestHealthFollowsQuorum(t *testing.T) {
	tc := coordtest.NewCluster(t, 3)
	tc.Leader(10 * time.Second)
	conn := tc.Dial(0, tc.Credentials(pki.RoleAdmin, "ops"))
	health := healthpb.NewHealthClient(conn)
	services := []string{"", "accord.v1.ParticipantService", "accord.v1.AdminService", "accord.v1.ClusterService"}
	waitAll := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for _, s := range services {
			for {
				resp, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: s})
				if err == nil && resp.Status == want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("service %q: %v %v; want %v", s, resp.GetStatus(), err, want)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	waitAll(healthpb.HealthCheckResponse_SERVING)
	tc.Kill(1)
	tc.Kill(2)
	waitAll(healthpb.HealthCheckResponse_NOT_SERVING)
	tc.Restart(1)
	waitAll(healthpb.HealthCheckResponse_SERVING)
}
