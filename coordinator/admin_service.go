package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// adminService implements pb.AdminServiceServer; only admin certificates may
// call it.
type adminService struct {
	pb.UnimplementedAdminServiceServer
	c *Coordinator
}

func (s *adminService) SubmitJob(ctx context.Context, req *pb.SubmitJobRequest) (*pb.SubmitJobResponse, error) {
	id, err := caller(ctx, pki.RoleAdmin)
	if err != nil {
		return nil, toStatus(err)
	}
	spec := JobSpecFromProto(req.GetSpec())
	if err := spec.Validate(); err != nil {
		return nil, toStatus(err)
	}
	if resp, fwd, err := forwardUnary(ctx, s.c, id, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.SubmitJobResponse, error) {
		return pb.NewAdminServiceClient(cc).SubmitJob(ctx, req)
	}); fwd {
		if err == nil {
			// Read your writes: the caller's next call may come here.
			s.c.waitForJob(ctx, resp.GetJobId())
		}
		return resp, err
	}
	jobID, err := s.c.SubmitJob(spec, time.Now())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.SubmitJobResponse{JobId: jobID}, nil
}

// waitForJob waits, for at most the apply timeout, until this node's FSM
// holds a job the leader committed.
func (c *Coordinator) waitForJob(ctx context.Context, id string) {
	deadline := time.Now().Add(c.cfg.ApplyTimeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if _, err := c.fsm.Job(id); err == nil {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// SubmitJob validates spec, stores its initial model and commits the job.
// It must run on the leader.
func (c *Coordinator) SubmitJob(spec JobSpec, now time.Time) (string, error) {
	if err := spec.Validate(); err != nil {
		return "", err
	}
	m := model.New(model.MustParseSpec(spec.Model), spec.Seed)
	digest, err := c.replicateBlob(context.Background(), protocol.EncodeFloat32(m.Params))
	if err != nil {
		return "", err
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	id := "job-" + hex.EncodeToString(rnd[:])
	job := Job{ID: id, Spec: spec, InitialDigest: digest, CreatedAt: now.UnixMilli()}
	if err := c.apply(cmdSubmitJob, submitJob{Job: job}); err != nil {
		return "", err
	}
	c.log.Info("job submitted", "job", id, "name", spec.Name, "model", spec.Model)
	c.kickLeader()
	return id, nil
}

func (s *adminService) ListJobs(ctx context.Context, _ *pb.ListJobsRequest) (*pb.ListJobsResponse, error) {
	if _, err := caller(ctx, pki.RoleAdmin); err != nil {
		return nil, toStatus(err)
	}
	out := &pb.ListJobsResponse{}
	for _, j := range s.c.fsm.Jobs() {
		out.Jobs = append(out.Jobs, j.toProto())
	}
	return out, nil
}

func (s *adminService) GetJob(ctx context.Context, req *pb.GetJobRequest) (*pb.Job, error) {
	if _, err := caller(ctx, pki.RoleAdmin); err != nil {
		return nil, toStatus(err)
	}
	j, err := s.c.fsm.Job(req.GetJobId())
	if err != nil {
		return nil, toStatus(err)
	}
	return j.toProto(), nil
}

func (s *adminService) CancelJob(ctx context.Context, req *pb.CancelJobRequest) (*pb.CancelJobResponse, error) {
	id, err := caller(ctx, pki.RoleAdmin)
	if err != nil {
		return nil, toStatus(err)
	}
	if resp, fwd, err := forwardUnary(ctx, s.c, id, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.CancelJobResponse, error) {
		return pb.NewAdminServiceClient(cc).CancelJob(ctx, req)
	}); fwd {
		return resp, err
	}
	reason := req.GetReason()
	if reason == "" {
		reason = "cancelled by an administrator"
	}
	if err := s.c.apply(cmdCancelJob, cancelJob{JobID: req.GetJobId(), Reason: reason, At: time.Now().UnixMilli()}); err != nil {
		return nil, toStatus(err)
	}
	return &pb.CancelJobResponse{}, nil
}

func (s *adminService) ListRounds(ctx context.Context, req *pb.ListRoundsRequest) (*pb.ListRoundsResponse, error) {
	if _, err := caller(ctx, pki.RoleAdmin); err != nil {
		return nil, toStatus(err)
	}
	j, err := s.c.fsm.Job(req.GetJobId())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.ListRoundsResponse{}
	for _, r := range j.Rounds {
		if r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED || req.GetIncludeAborted() {
			out.Rounds = append(out.Rounds, r.toProto(j.ID))
		}
	}
	return out, nil
}

// ListParticipants is answered by the leader: which participants are
// connected is its knowledge (followers only relay their task streams).
func (s *adminService) ListParticipants(ctx context.Context, req *pb.ListParticipantsRequest) (*pb.ListParticipantsResponse, error) {
	id, err := caller(ctx, pki.RoleAdmin)
	if err != nil {
		return nil, toStatus(err)
	}
	if resp, fwd, err := forwardUnary(ctx, s.c, id, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.ListParticipantsResponse, error) {
		return pb.NewAdminServiceClient(cc).ListParticipants(ctx, req)
	}); fwd {
		return resp, err
	}
	out := &pb.ListParticipantsResponse{}
	for _, p := range s.c.fsm.Participants() {
		connected, seen := s.c.sessions.status(p.ID)
		var seenMs int64
		if !seen.IsZero() {
			seenMs = seen.UnixMilli()
		}
		out.Participants = append(out.Participants, p.toProto(connected, seenMs))
	}
	return out, nil
}

func (s *adminService) PullModel(req *pb.PullModelRequest, stream pb.AdminService_PullModelServer) error {
	if _, err := caller(stream.Context(), pki.RoleAdmin); err != nil {
		return toStatus(err)
	}
	j, err := s.c.fsm.Job(req.GetJobId())
	if err != nil {
		return toStatus(err)
	}
	round := req.GetRound()
	if req.GetLatest() {
		round = j.CommittedRounds
	}
	digest := j.modelDigest(round)
	if digest == "" {
		return toStatus(fmt.Errorf("%w: job %s has no committed round %d (it has %d)", ErrUnknownRound, j.ID, round, j.CommittedRounds))
	}
	blob, err := s.c.blob(stream.Context(), digest)
	if err != nil {
		return toStatus(err)
	}
	return sendBlob(stream, blob, digest, j.Spec.Model)
}

func (s *adminService) ListMembers(ctx context.Context, _ *pb.ListMembersRequest) (*pb.ListMembersResponse, error) {
	if _, err := caller(ctx, pki.RoleAdmin); err != nil {
		return nil, toStatus(err)
	}
	roles := map[string]string{}
	if servers, err := s.c.voters(); err == nil {
		for _, sv := range servers {
			roles[string(sv.ID)] = "voter"
		}
	}
	_, leader := s.c.raft.LeaderWithID()
	if leader != "" {
		roles[string(leader)] = "leader"
	}
	lastContact := int64(0)
	if !s.c.IsLeader() {
		if t := s.c.raft.LastContact(); !t.IsZero() {
			lastContact = time.Since(t).Milliseconds()
		}
	}
	out := &pb.ListMembersResponse{Leader: string(leader), AnsweredBy: s.c.cfg.Name}
	for _, m := range s.c.memberList() {
		role := roles[m.Name]
		if role == "" {
			role = "none"
		}
		mem := &pb.Member{Name: m.Name, Organization: m.Meta.Org, GrpcAddress: m.Meta.GRPC, RaftAddress: m.Meta.Raft, RaftRole: role, GossipState: m.State}
		if m.Name == s.c.cfg.Name {
			mem.LastContactMs = lastContact
		}
		out.Members = append(out.Members, mem)
	}
	return out, nil
}

func (s *adminService) RemoveMember(ctx context.Context, req *pb.RemoveMemberRequest) (*pb.RemoveMemberResponse, error) {
	id, err := caller(ctx, pki.RoleAdmin)
	if err != nil {
		return nil, toStatus(err)
	}
	if resp, fwd, err := forwardUnary(ctx, s.c, id, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.RemoveMemberResponse, error) {
		return pb.NewAdminServiceClient(cc).RemoveMember(ctx, req)
	}); fwd {
		return resp, err
	}
	if req.GetName() == s.c.cfg.Name {
		return nil, toStatus(fmt.Errorf("%w: the leader cannot remove itself; stop it and remove it from the new leader", ErrConflict))
	}
	if err := s.c.raft.RemoveServer(raft.ServerID(req.GetName()), 0, s.c.cfg.ApplyTimeout).Error(); err != nil {
		return nil, toStatus(fmt.Errorf("removing %s: %w", req.GetName(), err))
	}
	s.c.log.Info("coordinator removed by an administrator", "member", req.GetName())
	return &pb.RemoveMemberResponse{}, nil
}
