package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

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
	if _, err := caller(ctx, pki.RoleAdmin); err != nil {
		return nil, toStatus(err)
	}
	spec := JobSpecFromProto(req.GetSpec())
	if err := spec.Validate(); err != nil {
		return nil, toStatus(err)
	}
	if err := s.c.requireLeader(); err != nil {
		return nil, toStatus(err)
	}
	id, err := s.c.SubmitJob(spec, time.Now())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.SubmitJobResponse{JobId: id}, nil
}

// SubmitJob validates spec, stores its initial model and commits the job.
// It must run on the leader.
func (c *Coordinator) SubmitJob(spec JobSpec, now time.Time) (string, error) {
	if err := spec.Validate(); err != nil {
		return "", err
	}
	m := model.New(model.MustParseSpec(spec.Model), spec.Seed)
	digest, err := c.store.PutBlob(protocol.EncodeFloat32(m.Params))
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
	if _, err := caller(ctx, pki.RoleAdmin); err != nil {
		return nil, toStatus(err)
	}
	if err := s.c.requireLeader(); err != nil {
		return nil, toStatus(err)
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

func (s *adminService) ListParticipants(ctx context.Context, _ *pb.ListParticipantsRequest) (*pb.ListParticipantsResponse, error) {
	if _, err := caller(ctx, pki.RoleAdmin); err != nil {
		return nil, toStatus(err)
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
	blob, err := s.c.store.GetBlob(digest)
	if err != nil {
		return toStatus(err)
	}
	return sendBlob(stream, blob, digest, j.Spec.Model)
}
