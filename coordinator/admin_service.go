package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/accord-fl/accord/adminauth"
	"github.com/accord-fl/accord/audit"
	"github.com/accord-fl/accord/coordinator/schedule"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// adminService implements pb.AdminServiceServer. Every unary call must be
// signed by an admin (package adminauth); the signature, checked here and
// again by every FSM for actions, is the only identity an admin call has.
type adminService struct {
	pb.UnimplementedAdminServiceServer
	c *Coordinator
}

// adminCall authenticates a signed admin call to method and then runs it:
// on a follower, do forwards it to the leader with the admin's signature;
// on the leader (or for reads, anywhere) lead runs it here.
func adminCall[Req proto.Message, Resp any](ctx context.Context, s *adminService, method string, req Req,
	forward func(context.Context, pb.AdminServiceClient) (Resp, error), lead func(principal, *adminauth.Signed) (Resp, error)) (Resp, error) {
	var zero Resp
	id, signed, release, err := s.c.adminCaller(ctx, method, req)
	if err != nil {
		return zero, toStatus(err)
	}
	resp, err := func() (Resp, error) {
		if forward != nil {
			if resp, fwd, err := forwardUnary(adminauth.Attach(ctx, signed), s.c, id, func(ctx context.Context, cc grpc.ClientConnInterface) (Resp, error) {
				return forward(ctx, pb.NewAdminServiceClient(cc))
			}); fwd {
				return resp, err
			}
		}
		return lead(id, signed)
	}()
	if err != nil {
		release()
		return zero, toStatus(err)
	}
	return resp, nil
}

// applyAdmin commits a signed admin action through Raft and returns what
// the FSM made of it.
func (c *Coordinator) applyAdmin(a state.AdminAction) (state.ActionResult, error) {
	if a.At == 0 {
		a.At = time.Now().UnixMilli()
	}
	resp, err := c.applyResponse(state.CmdAdminAction, a)
	if err != nil {
		return state.ActionResult{}, err
	}
	res, _ := resp.(state.ActionResult)
	return res, nil
}

func (s *adminService) SubmitJob(ctx context.Context, req *pb.SubmitJobRequest) (*pb.SubmitJobResponse, error) {
	spec := state.JobSpecFromProto(req.GetSpec())
	if err := spec.Validate(); err != nil {
		return nil, toStatus(err)
	}
	return adminCall(ctx, s, state.MethodSubmitJob, req, func(ctx context.Context, cc pb.AdminServiceClient) (*pb.SubmitJobResponse, error) {
		resp, err := cc.SubmitJob(ctx, req)
		if err == nil {
			// Read your writes: the caller's next call may come here.
			s.c.waitForJob(ctx, resp.GetJobId())
		}
		return resp, err
	}, func(_ principal, signed *adminauth.Signed) (*pb.SubmitJobResponse, error) {
		j, err := s.c.SubmitJob(spec, signed)
		if err != nil {
			return nil, err
		}
		return &pb.SubmitJobResponse{JobId: j.ID, Status: j.Status}, nil
	})
}

// waitForJob waits, for at most the apply timeout, until this node's FSM
// holds a job the leader committed.
func (c *Coordinator) waitForJob(ctx context.Context, id string) {
	timeout := time.NewTimer(c.cfg.ApplyTimeout)
	defer timeout.Stop()
	for {
		changed := c.fsm.Changed()
		if _, err := c.fsm.JobView(id); err == nil {
			return
		}
		select {
		case <-changed:
		case <-timeout.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// SubmitJob validates a signed job submission, stores its initial model
// and commits the job: running, or pending until enough organisations
// approve it. It must run on the leader.
func (c *Coordinator) SubmitJob(spec state.JobSpec, signed *adminauth.Signed) (*state.Job, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	// A job no registered participant could train would wait or abort
	// forever: refuse it now, saying what the participants hold.
	if why, _ := state.Untrainable(spec, c.fsm.Participants()); why != "" {
		return nil, fmt.Errorf("%w: %s", state.ErrBadJobSpec, why)
	}
	m := model.New(model.MustParseSpec(spec.Model), spec.Seed)
	digest, err := c.replicateBlob(context.Background(), protocol.EncodeFloat32(m.Params))
	if err != nil {
		return nil, err
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	id := "job-" + hex.EncodeToString(rnd[:])
	if _, err := c.applyAdmin(state.AdminAction{Signed: *signed, JobID: id, InitialDigest: digest}); err != nil {
		return nil, err
	}
	j, err := c.fsm.JobView(id)
	if err != nil {
		return nil, err
	}
	c.log.Info("job submitted", "job", id, "name", spec.Name, "model", spec.Model, "by", j.SubmittedBy, "organization", j.Organization, "status", j.Status)
	c.kickLeader()
	return j, nil
}

func (s *adminService) ListJobs(ctx context.Context, req *pb.ListJobsRequest) (*pb.ListJobsResponse, error) {
	return adminCall(ctx, s, "/accord.v1.AdminService/ListJobs", req, nil, func(principal, *adminauth.Signed) (*pb.ListJobsResponse, error) {
		out := &pb.ListJobsResponse{}
		for _, j := range s.c.fsm.Jobs() {
			out.Jobs = append(out.Jobs, s.c.jobProto(j))
		}
		return out, nil
	})
}

// jobProto is a job for the wire, with the approvals of its submission.
func (c *Coordinator) jobProto(j *state.Job) *pb.Job {
	out := j.ToProto()
	if p := c.fsm.Proposal(j.ID); p != nil {
		for _, a := range p.Approvals {
			out.Approvals = append(out.Approvals, a.ToProto())
		}
	}
	return out
}

func (s *adminService) GetJob(ctx context.Context, req *pb.GetJobRequest) (*pb.Job, error) {
	return adminCall(ctx, s, "/accord.v1.AdminService/GetJob", req, nil, func(principal, *adminauth.Signed) (*pb.Job, error) {
		j, err := s.c.fsm.JobView(req.GetJobId())
		if err != nil {
			return nil, err
		}
		return s.c.jobProto(j), nil
	})
}

func (s *adminService) CancelJob(ctx context.Context, req *pb.CancelJobRequest) (*pb.CancelJobResponse, error) {
	return adminCall(ctx, s, state.MethodCancelJob, req, func(ctx context.Context, cc pb.AdminServiceClient) (*pb.CancelJobResponse, error) {
		return cc.CancelJob(ctx, req)
	}, func(_ principal, signed *adminauth.Signed) (*pb.CancelJobResponse, error) {
		res, err := s.c.applyAdmin(state.AdminAction{Signed: *signed})
		if err != nil {
			return nil, err
		}
		s.c.kickLeader()
		return &pb.CancelJobResponse{Proposal: res.Proposal.ToProto()}, nil
	})
}

func (s *adminService) ListRounds(ctx context.Context, req *pb.ListRoundsRequest) (*pb.ListRoundsResponse, error) {
	return adminCall(ctx, s, "/accord.v1.AdminService/ListRounds", req, nil, func(principal, *adminauth.Signed) (*pb.ListRoundsResponse, error) {
		j, err := s.c.fsm.JobView(req.GetJobId())
		if err != nil {
			return nil, err
		}
		size := int(req.GetPageSize())
		if size <= 0 {
			size = defaultRoundsPage
		}
		size = min(size, maxRoundsPage)
		// A page token is the index in the job's attempts to go on from.
		from := 0
		if t := req.GetPageToken(); t != "" {
			if from, err = strconv.Atoi(t); err != nil || from < 0 || from > len(j.Rounds) {
				return nil, fmt.Errorf("%w: page_token %q is not one this job gave", state.ErrBadRequest, t)
			}
		}
		out := &pb.ListRoundsResponse{}
		kept := j.Retained()
		for i := from; i < len(j.Rounds); i++ {
			if len(out.Rounds) == size {
				out.NextPageToken = strconv.Itoa(i)
				break
			}
			r := j.Rounds[i]
			if r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED || req.GetIncludeAborted() {
				p := r.ToProto(j.ID)
				if r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED && !kept[r.Number] {
					p.ModelDeleted = true
				}
				out.Rounds = append(out.Rounds, p)
			}
		}
		return out, nil
	})
}

// ListParticipants is answered by the leader: which participants are
// connected is its knowledge (followers only relay their task streams).
func (s *adminService) ListParticipants(ctx context.Context, req *pb.ListParticipantsRequest) (*pb.ListParticipantsResponse, error) {
	return adminCall(ctx, s, "/accord.v1.AdminService/ListParticipants", req, func(ctx context.Context, cc pb.AdminServiceClient) (*pb.ListParticipantsResponse, error) {
		return cc.ListParticipants(ctx, req)
	}, func(principal, *adminauth.Signed) (*pb.ListParticipantsResponse, error) {
		out := &pb.ListParticipantsResponse{}
		for _, p := range s.c.fsm.Participants() {
			connected, seen := s.c.sessions.status(p.ID)
			var seenMs int64
			if !seen.IsZero() {
				seenMs = seen.UnixMilli()
			}
			out.Participants = append(out.Participants, p.ToProto(connected, seenMs))
		}
		return out, nil
	})
}

// PullModel is a server stream: it carries no signature (gRPC sends a
// stream's metadata before its request), so it is authorised by the
// admin's certificate alone, which must not be revoked.
func (s *adminService) PullModel(req *pb.PullModelRequest, stream pb.AdminService_PullModelServer) error {
	if _, err := s.c.caller(stream.Context(), pki.RoleAdmin); err != nil {
		return toStatus(err)
	}
	j, err := s.c.fsm.JobView(req.GetJobId())
	if err != nil {
		return toStatus(err)
	}
	round := req.GetRound()
	if req.GetLatest() {
		// The latest of nothing is not the initial model: a caller that
		// wants that asks for round 0.
		if j.CommittedRounds == 0 {
			return toStatus(fmt.Errorf("%w: job %s (%s) has committed no round yet: nothing trained to pull; round 0 is the initial model",
				schedule.ErrWrongRound, j.ID, j.Status))
		}
		round = j.CommittedRounds
	}
	digest := j.ModelDigest(round)
	if digest == "" {
		return toStatus(fmt.Errorf("%w: job %s has no committed round %d (it has %d)", state.ErrUnknownRound, j.ID, round, j.CommittedRounds))
	}
	if !j.Retained()[round] {
		return toStatus(fmt.Errorf("%w: job %s's round %d model was deleted by the job's retain policy (or accord job delete)", ErrUnknownModel, j.ID, round))
	}
	blob, err := s.c.blob(stream.Context(), digest)
	if err != nil {
		return toStatus(err)
	}
	return sendBlob(stream, blob, digest, j.Spec.Model)
}

func (s *adminService) ListMembers(ctx context.Context, req *pb.ListMembersRequest) (*pb.ListMembersResponse, error) {
	return adminCall(ctx, s, "/accord.v1.AdminService/ListMembers", req, nil, func(principal, *adminauth.Signed) (*pb.ListMembersResponse, error) {
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
	})
}

// RemoveMember proposes removing a coordinator from the Raft
// configuration; once approved, the leader removes it (and never adds it
// back unless an AddMember is approved).
func (s *adminService) RemoveMember(ctx context.Context, req *pb.RemoveMemberRequest) (*pb.RemoveMemberResponse, error) {
	return adminCall(ctx, s, state.MethodRemoveMember, req, func(ctx context.Context, cc pb.AdminServiceClient) (*pb.RemoveMemberResponse, error) {
		return cc.RemoveMember(ctx, req)
	}, func(_ principal, signed *adminauth.Signed) (*pb.RemoveMemberResponse, error) {
		res, err := s.c.applyAdmin(state.AdminAction{Signed: *signed})
		if err != nil {
			return nil, err
		}
		s.c.executeMember(res.Proposal)
		return &pb.RemoveMemberResponse{Proposal: res.Proposal.ToProto()}, nil
	})
}

// executeMember carries out an executed proposal to remove a coordinator
// at once (reconciliation would, within reconcileInterval; an excluded
// leader hands over leadership there first).
func (c *Coordinator) executeMember(p *state.Proposal) {
	if p.Kind != state.KindRemoveMember || p.Status != state.ProposalExecuted {
		return
	}
	if p.Member == c.cfg.Name {
		c.kickLeader()
		return
	}
	if err := c.removeServer(p.Member); err != nil {
		c.log.Warn("removing an excluded coordinator; reconciliation will retry", "member", p.Member, "err", err)
	}
}

// removeServer takes a coordinator out of the Raft configuration.
func (c *Coordinator) removeServer(name string) error {
	if err := c.raft.RemoveServer(raft.ServerID(name), 0, c.cfg.ApplyTimeout).Error(); err != nil {
		return fmt.Errorf("removing %s: %w", name, err)
	}
	c.log.Info("coordinator removed by an administrator", "member", name)
	return nil
}

// Pages of ListRounds.
const (
	defaultRoundsPage = 500
	maxRoundsPage     = 5000
)

func (s *adminService) DeleteJob(ctx context.Context, req *pb.DeleteJobRequest) (*pb.ProposalResponse, error) {
	return s.propose(ctx, state.MethodDeleteJob, req, func(ctx context.Context, cc pb.AdminServiceClient) (*pb.ProposalResponse, error) {
		return cc.DeleteJob(ctx, req)
	})
}

func (s *adminService) AddMember(ctx context.Context, req *pb.AddMemberRequest) (*pb.ProposalResponse, error) {
	return s.propose(ctx, state.MethodAddMember, req, func(ctx context.Context, cc pb.AdminServiceClient) (*pb.ProposalResponse, error) {
		return cc.AddMember(ctx, req)
	})
}

func (s *adminService) SetPolicy(ctx context.Context, req *pb.SetPolicyRequest) (*pb.ProposalResponse, error) {
	if err := state.PolicyFromProto(req.GetPolicy()).Validate(); err != nil {
		return nil, toStatus(err)
	}
	return s.propose(ctx, state.MethodSetPolicy, req, func(ctx context.Context, cc pb.AdminServiceClient) (*pb.ProposalResponse, error) {
		return cc.SetPolicy(ctx, req)
	})
}

func (s *adminService) Approve(ctx context.Context, req *pb.ApproveRequest) (*pb.ProposalResponse, error) {
	return s.propose(ctx, state.MethodApprove, req, func(ctx context.Context, cc pb.AdminServiceClient) (*pb.ProposalResponse, error) {
		return cc.Approve(ctx, req)
	})
}

// propose commits a signed governed action (a proposal or an approval) and
// answers with the proposal as it now stands.
func (s *adminService) propose(ctx context.Context, method string, req proto.Message, forward func(context.Context, pb.AdminServiceClient) (*pb.ProposalResponse, error)) (*pb.ProposalResponse, error) {
	return adminCall(ctx, s, method, req, forward, func(_ principal, signed *adminauth.Signed) (*pb.ProposalResponse, error) {
		res, err := s.c.applyAdmin(state.AdminAction{Signed: *signed})
		if err != nil {
			return nil, err
		}
		s.c.executeMember(res.Proposal)
		s.c.kickLeader()
		return &pb.ProposalResponse{Proposal: res.Proposal.ToProto()}, nil
	})
}

func (s *adminService) ListProposals(ctx context.Context, req *pb.ListProposalsRequest) (*pb.ListProposalsResponse, error) {
	return adminCall(ctx, s, "/accord.v1.AdminService/ListProposals", req, nil, func(principal, *adminauth.Signed) (*pb.ListProposalsResponse, error) {
		out := &pb.ListProposalsResponse{}
		for _, p := range s.c.fsm.Proposals() {
			out.Proposals = append(out.Proposals, p.ToProto())
		}
		return out, nil
	})
}

func (s *adminService) GetPolicy(ctx context.Context, req *pb.GetPolicyRequest) (*pb.Policy, error) {
	return adminCall(ctx, s, "/accord.v1.AdminService/GetPolicy", req, nil, func(principal, *adminauth.Signed) (*pb.Policy, error) {
		return s.c.fsm.Policy().ToProto(), nil
	})
}

// Revoke proposes a revocation: an admin's own organisation's certificates
// are revoked at once (a compromised key must stop now); others need the
// approvals the policy requires. Audited like every admin action.
func (s *adminService) Revoke(ctx context.Context, req *pb.RevokeRequest) (*pb.RevokeResponse, error) {
	return adminCall(ctx, s, state.MethodRevoke, req, func(ctx context.Context, cc pb.AdminServiceClient) (*pb.RevokeResponse, error) {
		return cc.Revoke(ctx, req)
	}, func(_ principal, signed *adminauth.Signed) (*pb.RevokeResponse, error) {
		res, err := s.c.applyAdmin(state.AdminAction{Signed: *signed})
		if err != nil {
			return nil, err
		}
		out := &pb.RevokeResponse{Proposal: res.Proposal.ToProto()}
		for _, r := range res.Revoked {
			out.Revoked = append(out.Revoked, r.ToProto())
		}
		return out, nil
	})
}

func (s *adminService) ListRevocations(ctx context.Context, req *pb.ListRevocationsRequest) (*pb.ListRevocationsResponse, error) {
	return adminCall(ctx, s, "/accord.v1.AdminService/ListRevocations", req, nil, func(principal, *adminauth.Signed) (*pb.ListRevocationsResponse, error) {
		out := &pb.ListRevocationsResponse{}
		for _, r := range s.c.fsm.Revocations() {
			out.Revocations = append(out.Revocations, r.ToProto())
		}
		return out, nil
	})
}

// maxAuditPage bounds the entries one ListAudit answer carries.
const maxAuditPage = 1000

func (s *adminService) ListAudit(ctx context.Context, req *pb.ListAuditRequest) (*pb.ListAuditResponse, error) {
	return adminCall(ctx, s, "/accord.v1.AdminService/ListAudit", req, nil, func(principal, *adminauth.Signed) (*pb.ListAuditResponse, error) {
		limit := int(req.GetLimit())
		if limit <= 0 || limit > maxAuditPage {
			limit = maxAuditPage
		}
		entries, total := s.c.fsm.Audit(req.GetFromIndex(), limit)
		out := &pb.ListAuditResponse{Total: total}
		for _, e := range entries {
			out.Entries = append(out.Entries, audit.ToWire(e))
		}
		return out, nil
	})
}
