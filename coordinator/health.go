package coordinator

import (
	"time"

	"github.com/hashicorp/raft"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// healthServices are the names grpc_health_probe -service takes, besides
// "" (the whole coordinator). Every one follows the same reality: a
// coordinator serves when it is part of a working cluster.
var healthServices = []string{
	"",
	pb.ParticipantService_ServiceDesc.ServiceName,
	pb.AdminService_ServiceDesc.ServiceName,
	pb.ClusterService_ServiceDesc.ServiceName,
}

// serving reports whether this coordinator can do its work: it leads, or it
// knows a leader that it has heard from within twice the heartbeat timeout.
// A coordinator cut off from its quorum (two of three killed) answers
// NOT_SERVING: every write through it would fail.
func (c *Coordinator) serving() bool {
	if c.raft.State() == raft.Leader {
		return true
	}
	addr, _ := c.raft.LeaderWithID()
	return addr != "" && time.Since(c.raft.LastContact()) < 2*c.cfg.HeartbeatTimeout
}

// healthLoop keeps the health service's statuses in step with serving, and
// logs each change.
func (c *Coordinator) healthLoop() {
	ticker := time.NewTicker(c.cfg.Tick)
	defer ticker.Stop()
	last := healthpb.HealthCheckResponse_UNKNOWN
	for {
		status := healthpb.HealthCheckResponse_NOT_SERVING
		if c.serving() {
			status = healthpb.HealthCheckResponse_SERVING
		}
		if status != last {
			for _, s := range healthServices {
				c.health.SetServingStatus(s, status)
			}
			if last != healthpb.HealthCheckResponse_UNKNOWN {
				c.log.Info("health", "status", status)
			}
			last = status
		}
		select {
		case <-c.stop:
			return
		case <-ticker.C:
		}
	}
}
