package state

import (
	"crypto/x509"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/accord-fl/accord/adminauth"
	"github.com/accord-fl/accord/audit"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// Policy is the federation's governance, in the replicated state: which
// organisations are members and how many of them must approve a governed
// action (a job, a cancellation, a membership or policy change).
type Policy struct {
	// Organizations are the member organisations whose admins may propose
	// and approve; empty means any organisation with an admin certificate.
	Organizations []string `json:"organizations,omitempty" yaml:"organizations"`
	// ApprovalsRequired is how many distinct organisations must approve
	// (0 or 1: the proposer's organisation alone).
	ApprovalsRequired uint32 `json:"approvals_required" yaml:"approvals_required"`
}

// required is the number of distinct organisations that must approve.
func (p Policy) required() int { return max(1, int(p.ApprovalsRequired)) }

// Governed reports whether actions need more than the proposer.
func (p Policy) Governed() bool { return p.required() > 1 }

// admits reports whether org's admins may propose and approve.
func (p Policy) admits(org string) bool {
	return len(p.Organizations) == 0 || slices.Contains(p.Organizations, org)
}

// Validate checks a policy before it is proposed.
func (p Policy) Validate() error {
	seen := map[string]bool{}
	for _, o := range p.Organizations {
		if o == "" || len(o) > 64 || seen[o] {
			return fmt.Errorf("%w: organizations: %q is empty, too long or listed twice", ErrBadPolicy, o)
		}
		seen[o] = true
	}
	if p.ApprovalsRequired > 64 {
		return fmt.Errorf("%w: approvals_required %d: want 0–64", ErrBadPolicy, p.ApprovalsRequired)
	}
	if len(p.Organizations) > 0 && int(p.ApprovalsRequired) > len(p.Organizations) {
		return fmt.Errorf("%w: approvals_required %d exceeds the %d member organisations", ErrBadPolicy, p.ApprovalsRequired, len(p.Organizations))
	}
	return nil
}

// ToProto is the policy as the admin API returns it.
func (p Policy) ToProto() *pb.Policy {
	return &pb.Policy{Organizations: p.Organizations, ApprovalsRequired: p.ApprovalsRequired}
}

// PolicyFromProto converts a wire policy.
func PolicyFromProto(p *pb.Policy) Policy {
	return Policy{Organizations: p.GetOrganizations(), ApprovalsRequired: p.GetApprovalsRequired()}
}

// Proposal kinds.
const (
	kindSubmitJob    = "submit_job"
	kindCancelJob    = "cancel_job"
	kindAddMember    = "add_member"
	KindRemoveMember = "remove_member"
	kindSetPolicy    = "set_policy"
	kindRevoke       = "revoke"
	kindDeleteJob    = "delete_job"
)

// Proposal states.
const (
	proposalPending  = "pending"
	ProposalExecuted = "executed"
	proposalFailed   = "failed"
)

// Approval is one organisation's approval of a proposal.
type Approval struct {
	Admin        string `json:"admin"`
	Organization string `json:"organization"`
	At           int64  `json:"at"`
	// Serial is the approving admin's certificate: an approval by a
	// certificate revoked since no longer counts.
	Serial string `json:"serial,omitempty"`
}

// Proposal is a governed action and its approvals.
type Proposal struct {
	ID           string     `json:"id"`
	Kind         string     `json:"kind"`
	JobID        string     `json:"job_id,omitempty"`
	Member       string     `json:"member,omitempty"`
	Policy       *Policy    `json:"policy,omitempty"`
	Reason       string     `json:"reason,omitempty"`
	ProposedBy   string     `json:"proposed_by"`
	Organization string     `json:"organization"`
	Approvals    []Approval `json:"approvals"`
	Required     uint32     `json:"required"`
	Status       string     `json:"status"`
	Outcome      string     `json:"outcome,omitempty"`
	CreatedAt    int64      `json:"created_at"`
	// Revocations are what a revoke proposal revokes.
	Revocations []Revocation `json:"revocations,omitempty"`
}

// approvedBy reports whether org has an approval of p that still counts.
func (f *FSM) approvedBy(p *Proposal, org string) bool {
	return slices.ContainsFunc(p.Approvals, func(a Approval) bool { return a.Organization == org && f.counts(a) })
}

// counts reports whether an approval counts: its organisation is a member
// and its certificate is not revoked.
func (f *FSM) counts(a Approval) bool {
	return f.st.Policy.admits(a.Organization) && f.st.Revoked[a.Serial] == nil
}

// ToProto is the proposal as the admin API returns it.
func (p *Proposal) ToProto() *pb.Proposal {
	out := &pb.Proposal{Id: p.ID, Kind: p.Kind, JobId: p.JobID, Member: p.Member, Reason: p.Reason, ProposedBy: p.ProposedBy,
		Organization: p.Organization, ApprovalsRequired: p.Required, Status: p.Status, Outcome: p.Outcome, CreatedUnixMs: p.CreatedAt}
	if p.Policy != nil {
		out.Policy = p.Policy.ToProto()
	}
	for _, a := range p.Approvals {
		out.Approvals = append(out.Approvals, a.ToProto())
	}
	for _, r := range p.Revocations {
		out.Revocations = append(out.Revocations, r.ToProto())
	}
	return out
}

// ToProto is the approval as the admin API returns it.
func (a Approval) ToProto() *pb.Approval {
	return &pb.Approval{Admin: a.Admin, Organization: a.Organization, UnixMs: a.At}
}

// Revocation is a revoked certificate, by serial (pki.SerialOf).
type Revocation struct {
	Serial       string `json:"serial"`
	Name         string `json:"name"`
	Organization string `json:"organization,omitempty"`
	Reason       string `json:"reason,omitempty"`
	RevokedBy    string `json:"revoked_by"`
	At           int64  `json:"at"`
}

// ToProto is the revocation as the admin API returns it.
func (r *Revocation) ToProto() *pb.Revocation {
	return &pb.Revocation{Serial: r.Serial, Name: r.Name, Reason: r.Reason, RevokedBy: r.RevokedBy, UnixMs: r.At}
}

// Admin methods whose requests the FSM applies.
const (
	MethodSubmitJob    = "/accord.v1.AdminService/SubmitJob"
	MethodCancelJob    = "/accord.v1.AdminService/CancelJob"
	MethodApprove      = "/accord.v1.AdminService/Approve"
	MethodAddMember    = "/accord.v1.AdminService/AddMember"
	MethodRemoveMember = "/accord.v1.AdminService/RemoveMember"
	MethodSetPolicy    = "/accord.v1.AdminService/SetPolicy"
	MethodRevoke       = "/accord.v1.AdminService/Revoke"
	MethodDeleteJob    = "/accord.v1.AdminService/DeleteJob"
)

// AdminAction is the Raft command for every admin action: the admin's
// signed request itself, plus what only the leader can supply (the time,
// a new job's ID and initial model). Every coordinator's FSM checks the
// signature and decodes the request itself, so a leader cannot apply an
// action no admin signed, or alter one.
type AdminAction struct {
	Signed        adminauth.Signed `json:"signed"`
	At            int64            `json:"at"`
	JobID         string           `json:"job_id,omitempty"`
	InitialDigest string           `json:"initial_digest,omitempty"`
}

// ActionResult is what applying an admin action returns through the
// future's Response when it succeeds.
type ActionResult struct {
	Proposal *Proposal
	Revoked  []Revocation
}

// maxNonceAge is how long the FSM remembers a signed request's nonce:
// older requests are refused as stale (adminauth.MaxSkew from the action's
// time, which may not go back more than MaxSkew).
const maxNonceAge = 3 * adminauth.MaxSkew

// applyAdminAction verifies a signed admin request and carries it out; on
// success the action is appended to the audit log.
func (f *FSM) applyAdminAction(c *AdminAction) (any, error) {
	s := &c.Signed
	if c.At < f.st.LastActionAt-adminauth.MaxSkew.Milliseconds() {
		return nil, fmt.Errorf("%w: action dated %d, before the last one (%d)", ErrConflict, c.At, f.st.LastActionAt)
	}
	signer, cert, err := f.verifySigner(s, c.At)
	if err != nil {
		return nil, err
	}
	key := s.NonceKey()
	if _, seen := f.st.Nonces[key]; seen {
		return nil, fmt.Errorf("%w: this signed request was already received (a replay)", ErrReplay)
	}
	// From here on the request is spent, whether it succeeds or not: a
	// request that failed once cannot be applied later, when it might fit.
	f.st.LastActionAt = max(f.st.LastActionAt, c.At)
	f.st.Nonces[key] = c.At
	for k, at := range f.st.Nonces {
		if f.st.LastActionAt-at > maxNonceAge.Milliseconds() {
			delete(f.st.Nonces, k)
		}
	}
	serial := pki.SerialOf(cert)
	if f.st.Revoked[serial] != nil {
		return nil, fmt.Errorf("%w: the certificate of %s is revoked", ErrRevoked, signer.Name)
	}
	if !f.st.Policy.admits(signer.Organization) {
		return nil, fmt.Errorf("%w: organisation %s is not a member of the federation's policy", ErrForbidden, signer.Organization)
	}
	var (
		action, summary string
		res             ActionResult
	)
	switch s.Method {
	case MethodSubmitJob:
		req := &pb.SubmitJobRequest{}
		if err := decodeSigned(s, req); err != nil {
			return nil, err
		}
		action = kindSubmitJob
		res.Proposal, err = f.submitJob(c, JobSpecFromProto(req.GetSpec()), signed{signer, serial})
		if err == nil {
			summary = fmt.Sprintf("submitted job %s (%s, %s)", c.JobID, req.GetSpec().GetName(), req.GetSpec().GetModel())
		}
	case MethodCancelJob:
		req := &pb.CancelJobRequest{}
		if err := decodeSigned(s, req); err != nil {
			return nil, err
		}
		action, summary = kindCancelJob, fmt.Sprintf("proposed cancelling job %s", req.GetJobId())
		res.Proposal, err = f.proposeCancel(c, req.GetJobId(), req.GetReason(), signed{signer, serial})
	case MethodDeleteJob:
		req := &pb.DeleteJobRequest{}
		if err := decodeSigned(s, req); err != nil {
			return nil, err
		}
		action, summary = kindDeleteJob, fmt.Sprintf("proposed deleting job %s's models", req.GetJobId())
		res.Proposal, err = f.proposeDelete(c, req.GetJobId(), signed{signer, serial})
	case MethodAddMember:
		req := &pb.AddMemberRequest{}
		if err := decodeSigned(s, req); err != nil {
			return nil, err
		}
		action, summary = kindAddMember, "proposed adding coordinator "+req.GetName()
		res.Proposal, err = f.proposeMember(c, action, req.GetName(), signed{signer, serial})
	case MethodRemoveMember:
		req := &pb.RemoveMemberRequest{}
		if err := decodeSigned(s, req); err != nil {
			return nil, err
		}
		action, summary = KindRemoveMember, "proposed removing coordinator "+req.GetName()
		res.Proposal, err = f.proposeMember(c, action, req.GetName(), signed{signer, serial})
	case MethodSetPolicy:
		req := &pb.SetPolicyRequest{}
		if err := decodeSigned(s, req); err != nil {
			return nil, err
		}
		p := PolicyFromProto(req.GetPolicy())
		action, summary = kindSetPolicy, fmt.Sprintf("proposed policy: organisations %v, %d approvals", p.Organizations, p.ApprovalsRequired)
		res.Proposal, err = f.proposePolicy(c, p, signed{signer, serial})
	case MethodApprove:
		req := &pb.ApproveRequest{}
		if err := decodeSigned(s, req); err != nil {
			return nil, err
		}
		action = "approve"
		res.Proposal, err = f.approve(c, req.GetProposalId(), req.GetKind(), signed{signer, serial})
		if err == nil {
			summary = fmt.Sprintf("approved %s (%s): %d of %d organisations", res.Proposal.ID, res.Proposal.Kind, len(res.Proposal.Approvals), res.Proposal.Required)
		}
	case MethodRevoke:
		req := &pb.RevokeRequest{}
		if err := decodeSigned(s, req); err != nil {
			return nil, err
		}
		action = kindRevoke
		res.Proposal, err = f.proposeRevoke(c, req, signed{signer, serial})
		if err == nil {
			var serials []string
			for _, r := range res.Proposal.Revocations {
				serials = append(serials, r.Name+" "+r.Serial)
			}
			summary = "proposed revoking " + strings.Join(serials, ", ")
			if res.Proposal.Status == ProposalExecuted {
				res.Revoked, summary = res.Proposal.Revocations, "revoked "+strings.Join(serials, ", ")
			}
		}
	default:
		return nil, fmt.Errorf("%w: %s is not an admin action", ErrConflict, s.Method)
	}
	if err != nil {
		return nil, err
	}
	f.appendAudit(audit.Entry{Action: action, Summary: summary, Signer: signer.Name, Organization: signer.Organization, Signed: *s, CommittedUnixMs: c.At})
	return res, nil
}

// verifySigner checks an action's signature against the federation CA at
// its signing time, and that it was signed within adminauth.MaxSkew of the
// leader's time for it.
func (f *FSM) verifySigner(s *adminauth.Signed, at int64) (pki.Identity, *x509.Certificate, error) {
	if f.ca == nil {
		return pki.Identity{}, nil, fmt.Errorf("%w: this FSM has no federation CA to check signatures with", ErrForbidden)
	}
	id, cert, err := s.Verify(f.ca)
	if err != nil {
		return pki.Identity{}, nil, fmt.Errorf("%w: %w", ErrForbidden, err)
	}
	if err := s.CheckFresh(time.UnixMilli(at)); err != nil {
		return pki.Identity{}, nil, fmt.Errorf("%w: %w", ErrForbidden, err)
	}
	return id, cert, nil
}

func decodeSigned(s *adminauth.Signed, m proto.Message) error {
	if err := proto.Unmarshal(s.Request, m); err != nil {
		return fmt.Errorf("%w: %s request does not decode: %v", ErrConflict, s.Method, err)
	}
	return nil
}

func (f *FSM) appendAudit(e audit.Entry) {
	var prev *audit.Entry
	if n := len(f.st.Audit); n > 0 {
		prev = &f.st.Audit[n-1]
	}
	f.st.Audit = append(f.st.Audit, audit.Chain(prev, e))
}

// signed is the admin behind an action: its identity and certificate serial.
type signed struct {
	pki.Identity
	Serial string
}

func (s signed) approval(at int64) Approval {
	return Approval{Admin: s.Name, Organization: s.Organization, At: at, Serial: s.Serial}
}

// jobIDRE is the form of the job IDs the leader makes: "job-" and 12 hex
// digits; the FSM refuses others, so no job ID can take a proposal's.
var jobIDRE = regexp.MustCompile(`^job-[0-9a-f]{12}$`)

// nextIndex is the audit index the action being applied will take: a
// deterministic suffix for new proposal IDs.
func (f *FSM) nextIndex() int { return len(f.st.Audit) }

// newProposal records a proposal, approved by its proposer's organisation;
// proposals are never replaced.
func (f *FSM) newProposal(c *AdminAction, kind, id string, signer signed) (*Proposal, error) {
	if _, ok := f.st.Proposals[id]; ok {
		return nil, fmt.Errorf("%w: proposal %s exists", ErrConflict, id)
	}
	p := &Proposal{ID: id, Kind: kind, ProposedBy: signer.Name, Organization: signer.Organization,
		Approvals: []Approval{signer.approval(c.At)}, Required: uint32(f.st.Policy.required()), Status: proposalPending, CreatedAt: c.At}
	f.st.Proposals[id] = p
	return p, nil
}

func (f *FSM) submitJob(c *AdminAction, spec JobSpec, signer signed) (*Proposal, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if !jobIDRE.MatchString(c.JobID) || c.InitialDigest == "" {
		return nil, fmt.Errorf("%w: a job needs an ID of the form job-XXXXXXXXXXXX and an initial model; got %q", ErrConflict, c.JobID)
	}
	if _, ok := f.st.Jobs[c.JobID]; ok {
		return nil, fmt.Errorf("%w: job %s exists", ErrConflict, c.JobID)
	}
	if _, ok := f.st.Proposals[c.JobID]; ok {
		return nil, fmt.Errorf("%w: proposal %s exists", ErrConflict, c.JobID)
	}
	j := &Job{ID: c.JobID, Spec: spec, Status: pb.JobStatus_JOB_STATUS_PENDING_APPROVAL, InitialDigest: c.InitialDigest,
		CreatedAt: c.At, Organization: signer.Organization, SubmittedBy: signer.Name}
	p, err := f.newProposal(c, kindSubmitJob, j.ID, signer)
	if err != nil {
		return nil, err
	}
	f.st.Jobs[j.ID] = j
	p.JobID = j.ID
	f.maybeExecute(p, c.At)
	return p, nil
}

func (f *FSM) proposeCancel(c *AdminAction, jobID, reason string, signer signed) (*Proposal, error) {
	j, ok := f.st.Jobs[jobID]
	if !ok {
		return nil, fmt.Errorf("%w %s", ErrUnknownJob, jobID)
	}
	if !j.Running() && j.Status != pb.JobStatus_JOB_STATUS_PENDING_APPROVAL {
		return nil, fmt.Errorf("%w: job %s is %s", ErrJobNotRunning, jobID, j.Status)
	}
	if p := f.pendingFor(kindCancelJob, jobID, ""); p != nil {
		return nil, fmt.Errorf("%w: cancelling job %s is already proposed as %s; approve it instead", ErrConflict, jobID, p.ID)
	}
	if reason == "" {
		reason = "cancelled by an administrator"
	}
	p, err := f.newProposal(c, kindCancelJob, fmt.Sprintf("cancel-%s-%d", jobID, f.nextIndex()), signer)
	if err != nil {
		return nil, err
	}
	p.JobID, p.Reason = jobID, reason
	f.maybeExecute(p, c.At)
	return p, nil
}

func (f *FSM) proposeDelete(c *AdminAction, jobID string, signer signed) (*Proposal, error) {
	j, ok := f.st.Jobs[jobID]
	switch {
	case !ok:
		return nil, fmt.Errorf("%w %s", ErrUnknownJob, jobID)
	case j.Running() || j.Status == pb.JobStatus_JOB_STATUS_PENDING_APPROVAL:
		return nil, fmt.Errorf("%w: job %s is %s; cancel it first", ErrConflict, jobID, j.Status)
	case j.ModelsDeleted:
		return nil, fmt.Errorf("%w: job %s's models are deleted already", ErrConflict, jobID)
	}
	if p := f.pendingFor(kindDeleteJob, jobID, ""); p != nil {
		return nil, fmt.Errorf("%w: deleting job %s is already proposed as %s; approve it instead", ErrConflict, jobID, p.ID)
	}
	p, err := f.newProposal(c, kindDeleteJob, fmt.Sprintf("delete-%s-%d", jobID, f.nextIndex()), signer)
	if err != nil {
		return nil, err
	}
	p.JobID = jobID
	f.maybeExecute(p, c.At)
	return p, nil
}

func (f *FSM) proposeMember(c *AdminAction, kind, name string, signer signed) (*Proposal, error) {
	if name == "" || len(name) > 64 {
		return nil, fmt.Errorf("%w: coordinator name %q", ErrBadPolicy, name)
	}
	if p := f.pendingFor(kind, "", name); p != nil {
		return nil, fmt.Errorf("%w: %s %s is already proposed as %s; approve it instead", ErrConflict, kind, name, p.ID)
	}
	p, err := f.newProposal(c, kind, fmt.Sprintf("%s-%s-%d", strings.TrimSuffix(kind, "_member"), name, f.nextIndex()), signer)
	if err != nil {
		return nil, err
	}
	p.Member = name
	f.maybeExecute(p, c.At)
	return p, nil
}

func (f *FSM) proposePolicy(c *AdminAction, pol Policy, signer signed) (*Proposal, error) {
	if err := pol.Validate(); err != nil {
		return nil, err
	}
	if len(pol.Organizations) > 0 && !slices.Contains(pol.Organizations, signer.Organization) {
		return nil, fmt.Errorf("%w: organizations must include the proposer's own (%s)", ErrBadPolicy, signer.Organization)
	}
	p, err := f.newProposal(c, kindSetPolicy, fmt.Sprintf("policy-%d", f.nextIndex()), signer)
	if err != nil {
		return nil, err
	}
	p.Policy = &pol
	f.maybeExecute(p, c.At)
	return p, nil
}

// pendingFor finds the pending proposal of kind for a job or member.
func (f *FSM) pendingFor(kind, jobID, member string) *Proposal {
	for _, p := range f.st.Proposals {
		if p.Status == proposalPending && p.Kind == kind && p.JobID == jobID && p.Member == member {
			return p
		}
	}
	return nil
}

// approve adds the signer's organisation's approval to the proposal id,
// which must be of the kind the admin signed for.
func (f *FSM) approve(c *AdminAction, id, kind string, signer signed) (*Proposal, error) {
	p := f.st.Proposals[id]
	switch {
	case p == nil:
		return nil, fmt.Errorf("%w: no proposal %s", ErrUnknownProposal, id)
	case kind == "":
		return nil, fmt.Errorf("%w: an approval must name the kind of action it approves", ErrBadPolicy)
	case p.Kind != kind:
		return nil, fmt.Errorf("%w: proposal %s is a %s, not the %s this approval was signed for", ErrConflict, id, p.Kind, kind)
	case p.Status != proposalPending:
		return nil, fmt.Errorf("%w: proposal %s is %s", ErrConflict, p.ID, p.Status)
	case f.approvedBy(p, signer.Organization):
		return nil, fmt.Errorf("%w: organisation %s already approved %s; another organisation must", ErrAlreadyApproved, signer.Organization, p.ID)
	}
	p.Approvals = append(p.Approvals, signer.approval(c.At))
	f.maybeExecute(p, c.At)
	return p, nil
}

// maybeExecute carries out a proposal once enough member organisations
// approved it.
func (f *FSM) maybeExecute(p *Proposal, at int64) {
	orgs := map[string]bool{}
	for _, a := range p.Approvals {
		if f.counts(a) {
			orgs[a.Organization] = true
		}
	}
	if len(orgs) < int(p.Required) {
		return
	}
	p.Status = ProposalExecuted
	switch p.Kind {
	case kindSubmitJob:
		if j := f.st.Jobs[p.JobID]; j != nil && j.Status == pb.JobStatus_JOB_STATUS_PENDING_APPROVAL {
			f.editJob(j).Status = pb.JobStatus_JOB_STATUS_RUNNING
			p.Outcome = "job running"
		} else {
			p.Status, p.Outcome = proposalFailed, "job is no longer pending"
		}
	case kindCancelJob:
		j := f.st.Jobs[p.JobID]
		if j == nil || (!j.Running() && j.Status != pb.JobStatus_JOB_STATUS_PENDING_APPROVAL) {
			p.Status, p.Outcome = proposalFailed, "job had already finished"
			return
		}
		f.cancel(j, p.Reason, at)
		p.Outcome = "job cancelled"
	case kindSetPolicy:
		f.st.Policy = *p.Policy
		p.Outcome = "policy in force"
	case kindAddMember:
		f.st.MemberRules[p.Member] = MemberAdmitted
		p.Outcome = "admitted: the leader adds it to the Raft configuration when it is alive"
	case KindRemoveMember:
		f.st.MemberRules[p.Member] = MemberExcluded
		p.Outcome = "excluded: the leader removes it from the Raft configuration"
	case kindDeleteJob:
		f.deleteJobModels(p)
	case kindRevoke:
		var done []Revocation
		for _, r := range p.Revocations {
			if f.st.Revoked[r.Serial] == nil {
				r.At = at
				f.st.Revoked[r.Serial] = &r
				done = append(done, r)
			}
		}
		p.Revocations = done
		p.Outcome = fmt.Sprintf("%d certificates revoked", len(done))
		if f.onRevoke != nil && len(done) > 0 {
			f.onRevoke(done)
		}
	}
}

// cancel ends a running or pending job.
func (f *FSM) cancel(j *Job, reason string, at int64) {
	j = f.editJob(j)
	if r := j.editOpenRound(); r != nil {
		r.Status, r.Reason, r.ClosedAt = pb.RoundStatus_ROUND_STATUS_ABORTED, "job cancelled", at
	}
	j.Status, j.Reason, j.FinishedAt = pb.JobStatus_JOB_STATUS_CANCELLED, reason, at
	if p := f.st.Proposals[j.ID]; p != nil && p.Status == proposalPending {
		p.Status, p.Outcome = proposalFailed, "job cancelled before it was approved"
	}
}

// Member rules set by approved proposals.
const (
	MemberAdmitted = "admitted"
	MemberExcluded = "excluded"
)

// proposeRevoke proposes revoking the certificate the request names by
// serial, or every serial the federation has seen under its name. An admin
// revokes its own organisation's certificates at once; a certificate of
// another organisation, or of none the federation knows, needs the
// approvals the policy requires, like any other governed action.
func (f *FSM) proposeRevoke(c *AdminAction, req *pb.RevokeRequest, signer signed) (*Proposal, error) {
	var serials []string
	name := req.GetName()
	switch {
	case req.GetSerial() != "" && name != "":
		return nil, fmt.Errorf("%w: name a certificate by serial or by name, not both", ErrBadPolicy)
	case req.GetSerial() != "":
		s, err := pki.ParseSerial(req.GetSerial())
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadPolicy, err)
		}
		serials = []string{s}
	case name != "":
		serials = f.serialsOf(name)
		if len(serials) == 0 {
			return nil, fmt.Errorf("%w: no certificate named %q has been seen; revoke it by --serial", ErrUnknownCertificate, name)
		}
	default:
		return nil, fmt.Errorf("%w: name a certificate by serial or name", ErrBadPolicy)
	}
	var targets []Revocation
	own := true
	for _, s := range serials {
		if f.st.Revoked[s] != nil {
			continue
		}
		holder, org := f.holderOf(s)
		if holder == "" {
			holder = name
		}
		own = own && org == signer.Organization
		targets = append(targets, Revocation{Serial: s, Name: holder, Organization: org, Reason: req.GetReason(),
			RevokedBy: signer.Name + " (" + signer.Organization + ")", At: c.At})
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("%w: already revoked", ErrConflict)
	}
	p, err := f.newProposal(c, kindRevoke, fmt.Sprintf("revoke-%d", f.nextIndex()), signer)
	if err != nil {
		return nil, err
	}
	p.Revocations, p.Reason = targets, req.GetReason()
	if own {
		p.Required = 1 // an organisation stops its own keys at once
	}
	f.maybeExecute(p, c.At)
	return p, nil
}

// serialsOf lists every certificate serial seen under a name: the
// participant's registrations and admins' signatures.
func (f *FSM) serialsOf(name string) []string {
	var out []string
	if p := f.st.Participants[name]; p != nil {
		out = append(out, p.Serials...)
	}
	for _, e := range f.st.Audit {
		if e.Signer != name {
			continue
		}
		if cert, err := x509.ParseCertificate(e.Signed.Certificate); err == nil {
			out = append(out, pki.SerialOf(cert))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// holderOf names the holder of a certificate serial the federation has
// seen, and its organisation ("" when unknown).
func (f *FSM) holderOf(serial string) (name, org string) {
	for _, p := range f.st.Participants {
		if slices.Contains(p.Serials, serial) {
			return p.ID, p.Organization
		}
	}
	for _, e := range f.st.Audit {
		if cert, err := x509.ParseCertificate(e.Signed.Certificate); err == nil && pki.SerialOf(cert) == serial {
			return e.Signer, e.Organization
		}
	}
	return "", ""
}

// IsRevoked reports whether a certificate serial is revoked.
func (f *FSM) IsRevoked(serial string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Revoked[serial] != nil
}

// Revocations lists the revoked certificates, by serial.
func (f *FSM) Revocations() []Revocation {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Revocation, 0, len(f.st.Revoked))
	for _, r := range f.st.Revoked {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Revocation) int { return strings.Compare(a.Serial, b.Serial) })
	return out
}

// Policy returns the federation's policy.
func (f *FSM) Policy() Policy {
	f.mu.RLock()
	defer f.mu.RUnlock()
	p := f.st.Policy
	p.Organizations = slices.Clone(p.Organizations)
	return p
}

// Proposals returns copies of every proposal, oldest first.
func (f *FSM) Proposals() []*Proposal {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*Proposal, 0, len(f.st.Proposals))
	for _, p := range f.st.Proposals {
		out = append(out, cloneJSON(p))
	}
	slices.SortFunc(out, func(a, b *Proposal) int {
		if a.CreatedAt != b.CreatedAt {
			return int(a.CreatedAt - b.CreatedAt)
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Proposal returns a copy of one proposal, or nil.
func (f *FSM) Proposal(id string) *Proposal {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if p := f.st.Proposals[id]; p != nil {
		return cloneJSON(p)
	}
	return nil
}

// MemberRule is what approved proposals decided about a coordinator:
// memberAdmitted, memberExcluded or "".
func (f *FSM) MemberRule(name string) string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.MemberRules[name]
}

// Audit returns the audit log from index from, at most limit entries
// (0: all), and the log's length.
func (f *FSM) Audit(from uint64, limit int) ([]audit.Entry, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n := uint64(len(f.st.Audit))
	if from >= n {
		return nil, n
	}
	end := n
	if limit > 0 {
		end = min(n, from+uint64(limit))
	}
	return slices.Clone(f.st.Audit[from:end]), n
}

// UsedNonce reports whether a signed request was already received.
func (f *FSM) UsedNonce(key string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, ok := f.st.Nonces[key]
	return ok
}

// RecordRefusal is the command recording a participant's site refusing a job.
type RecordRefusal struct {
	JobID       string `json:"job_id"`
	Participant string `json:"participant"`
	Reason      string `json:"reason"`
	At          int64  `json:"at"`
}

// Refusal is a participant's site policy refusing a job.
type Refusal struct {
	Participant string `json:"participant"`
	Reason      string `json:"reason"`
	At          int64  `json:"at"`
}

func (f *FSM) applyRecordRefusal(c *RecordRefusal) error {
	j, ok := f.st.Jobs[c.JobID]
	if !ok {
		return fmt.Errorf("%w %s", ErrUnknownJob, c.JobID)
	}
	if j.Refused(c.Participant) {
		return nil
	}
	j = f.editJob(j)
	j.Refusals = append(slices.Clip(j.Refusals), Refusal{Participant: c.Participant, Reason: c.Reason, At: c.At})
	return nil
}

// Refused reports whether participant id's site refused the job.
func (j *Job) Refused(participant string) bool {
	return slices.ContainsFunc(j.Refusals, func(r Refusal) bool { return r.Participant == participant })
}
