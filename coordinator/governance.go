package coordinator

import (
	"crypto/x509"
	"encoding/hex"
	"fmt"
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

// governed reports whether actions need more than the proposer.
func (p Policy) governed() bool { return p.required() > 1 }

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

func (p Policy) toProto() *pb.Policy {
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
	kindRemoveMember = "remove_member"
	kindSetPolicy    = "set_policy"
)

// Proposal states.
const (
	proposalPending  = "pending"
	proposalExecuted = "executed"
	proposalFailed   = "failed"
)

// Approval is one organisation's approval of a proposal.
type Approval struct {
	Admin        string `json:"admin"`
	Organization string `json:"organization"`
	At           int64  `json:"at"`
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
}

func (p *Proposal) approvedBy(org string) bool {
	return slices.ContainsFunc(p.Approvals, func(a Approval) bool { return a.Organization == org })
}

func (p *Proposal) toProto() *pb.Proposal {
	out := &pb.Proposal{Id: p.ID, Kind: p.Kind, JobId: p.JobID, Member: p.Member, Reason: p.Reason, ProposedBy: p.ProposedBy,
		Organization: p.Organization, ApprovalsRequired: p.Required, Status: p.Status, Outcome: p.Outcome, CreatedUnixMs: p.CreatedAt}
	if p.Policy != nil {
		out.Policy = p.Policy.toProto()
	}
	for _, a := range p.Approvals {
		out.Approvals = append(out.Approvals, a.toProto())
	}
	return out
}

func (a Approval) toProto() *pb.Approval {
	return &pb.Approval{Admin: a.Admin, Organization: a.Organization, UnixMs: a.At}
}

// Revocation is a revoked certificate, by serial (pki.SerialOf).
type Revocation struct {
	Serial    string `json:"serial"`
	Name      string `json:"name"`
	Reason    string `json:"reason,omitempty"`
	RevokedBy string `json:"revoked_by"`
	At        int64  `json:"at"`
}

func (r *Revocation) toProto() *pb.Revocation {
	return &pb.Revocation{Serial: r.Serial, Name: r.Name, Reason: r.Reason, RevokedBy: r.RevokedBy, UnixMs: r.At}
}

// Admin methods whose requests the FSM applies.
const (
	methodSubmitJob    = "/accord.v1.AdminService/SubmitJob"
	methodCancelJob    = "/accord.v1.AdminService/CancelJob"
	methodApprove      = "/accord.v1.AdminService/Approve"
	methodAddMember    = "/accord.v1.AdminService/AddMember"
	methodRemoveMember = "/accord.v1.AdminService/RemoveMember"
	methodSetPolicy    = "/accord.v1.AdminService/SetPolicy"
	methodRevoke       = "/accord.v1.AdminService/Revoke"
)

// adminAction is the Raft command for every admin action: the admin's
// signed request itself, plus what only the leader can supply (the time,
// a new job's ID and initial model). Every coordinator's FSM checks the
// signature and decodes the request itself, so a leader cannot apply an
// action no admin signed, or alter one.
type adminAction struct {
	Signed        adminauth.Signed `json:"signed"`
	At            int64            `json:"at"`
	JobID         string           `json:"job_id,omitempty"`
	InitialDigest string           `json:"initial_digest,omitempty"`
}

// actionResult is what applying an admin action returns through the
// future's Response when it succeeds.
type actionResult struct {
	proposal *Proposal
	revoked  []Revocation
}

// applyAdminAction verifies a signed admin request and carries it out; on
// success the action is appended to the audit log.
func (f *FSM) applyAdminAction(c *adminAction) (any, error) {
	s := &c.Signed
	signer, cert, err := f.verifySigner(s, c.At)
	if err != nil {
		return nil, err
	}
	if f.nonces[s.NonceKey()] {
		return nil, fmt.Errorf("%w: this signed request was already carried out (a replay)", ErrReplay)
	}
	if f.st.Revoked[pki.SerialOf(cert)] != nil {
		return nil, fmt.Errorf("%w: the certificate of %s is revoked", ErrRevoked, signer.Name)
	}
	if !f.st.Policy.admits(signer.Organization) {
		return nil, fmt.Errorf("%w: organisation %s is not a member of the federation's policy", ErrForbidden, signer.Organization)
	}
	var (
		action, summary string
		res             actionResult
	)
	switch s.Method {
	case methodSubmitJob:
		req := &pb.SubmitJobRequest{}
		if err := decodeSigned(s, req); err != nil {
			return nil, err
		}
		action = kindSubmitJob
		res.proposal, err = f.submitJob(c, JobSpecFromProto(req.GetSpec()), signer)
		if err == nil {
			summary = fmt.Sprintf("submitted job %s (%s, %s)", c.JobID, req.GetSpec().GetName(), req.GetSpec().GetModel())
		}
	case methodCancelJob:
		req := &pb.CancelJobRequest{}
		if err := decodeSigned(s, req); err != nil {
			return nil, err
		}
		action, summary = kindCancelJob, fmt.Sprintf("proposed cancelling job %s", req.GetJobId())
		res.proposal, err = f.proposeCancel(c, req.GetJobId(), req.GetReason(), signer)
	case methodAddMember, methodRemoveMember:
		req := &pb.AddMemberRequest{} // RemoveMemberRequest has the same shape
		var name string
		if s.Method == methodAddMember {
			err = decodeSigned(s, req)
			name, action = req.GetName(), kindAddMember
		} else {
			r := &pb.RemoveMemberRequest{}
			err = decodeSigned(s, r)
			name, action = r.GetName(), kindRemoveMember
		}
		if err != nil {
			return nil, err
		}
		summary = fmt.Sprintf("proposed %s %s", strings.ReplaceAll(action, "_", " "), name)
		res.proposal, err = f.proposeMember(c, action, name, signer)
	case methodSetPolicy:
		req := &pb.SetPolicyRequest{}
		if err := decodeSigned(s, req); err != nil {
			return nil, err
		}
		p := PolicyFromProto(req.GetPolicy())
		action, summary = kindSetPolicy, fmt.Sprintf("proposed policy: organisations %v, %d approvals", p.Organizations, p.ApprovalsRequired)
		res.proposal, err = f.proposePolicy(c, p, signer)
	case methodApprove:
		req := &pb.ApproveRequest{}
		if err := decodeSigned(s, req); err != nil {
			return nil, err
		}
		action = "approve"
		res.proposal, err = f.approve(c, req.GetProposalId(), signer)
		if err == nil {
			summary = fmt.Sprintf("approved %s (%s): %d of %d organisations", res.proposal.ID, res.proposal.Kind, len(res.proposal.Approvals), res.proposal.Required)
		}
	case methodRevoke:
		req := &pb.RevokeRequest{}
		if err := decodeSigned(s, req); err != nil {
			return nil, err
		}
		action = "revoke"
		res.revoked, err = f.revoke(c, req, signer)
		if err == nil {
			var serials []string
			for _, r := range res.revoked {
				serials = append(serials, r.Name+" "+r.Serial)
			}
			summary = "revoked " + strings.Join(serials, ", ")
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
	f.nonces[e.Signed.NonceKey()] = true
}

// nextIndex is the audit index the action being applied will take: a
// deterministic suffix for new proposal IDs.
func (f *FSM) nextIndex() int { return len(f.st.Audit) }

func (f *FSM) newProposal(c *adminAction, kind, id string, signer pki.Identity) *Proposal {
	p := &Proposal{ID: id, Kind: kind, ProposedBy: signer.Name, Organization: signer.Organization,
		Approvals: []Approval{{Admin: signer.Name, Organization: signer.Organization, At: c.At}},
		Required:  uint32(f.st.Policy.required()), Status: proposalPending, CreatedAt: c.At}
	f.st.Proposals[id] = p
	return p
}

func (f *FSM) submitJob(c *adminAction, spec JobSpec, signer pki.Identity) (*Proposal, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if c.JobID == "" || c.InitialDigest == "" {
		return nil, fmt.Errorf("%w: a job needs an ID and an initial model", ErrConflict)
	}
	if _, ok := f.st.Jobs[c.JobID]; ok {
		return nil, fmt.Errorf("%w: job %s exists", ErrConflict, c.JobID)
	}
	j := &Job{ID: c.JobID, Spec: spec, Status: pb.JobStatus_JOB_STATUS_PENDING_APPROVAL, InitialDigest: c.InitialDigest,
		CreatedAt: c.At, Organization: signer.Organization, SubmittedBy: signer.Name}
	f.st.Jobs[j.ID] = j
	p := f.newProposal(c, kindSubmitJob, j.ID, signer)
	p.JobID = j.ID
	f.maybeExecute(p, c.At)
	return p, nil
}

func (f *FSM) proposeCancel(c *adminAction, jobID, reason string, signer pki.Identity) (*Proposal, error) {
	j, ok := f.st.Jobs[jobID]
	if !ok {
		return nil, fmt.Errorf("%w %s", ErrUnknownJob, jobID)
	}
	if !j.running() && j.Status != pb.JobStatus_JOB_STATUS_PENDING_APPROVAL {
		return nil, fmt.Errorf("%w: job %s is %s", ErrJobNotRunning, jobID, j.Status)
	}
	if p := f.pendingFor(kindCancelJob, jobID, ""); p != nil {
		return nil, fmt.Errorf("%w: cancelling job %s is already proposed as %s; approve it instead", ErrConflict, jobID, p.ID)
	}
	if reason == "" {
		reason = "cancelled by an administrator"
	}
	p := f.newProposal(c, kindCancelJob, fmt.Sprintf("cancel-%s-%d", jobID, f.nextIndex()), signer)
	p.JobID, p.Reason = jobID, reason
	f.maybeExecute(p, c.At)
	return p, nil
}

func (f *FSM) proposeMember(c *adminAction, kind, name string, signer pki.Identity) (*Proposal, error) {
	if name == "" || len(name) > 64 {
		return nil, fmt.Errorf("%w: coordinator name %q", ErrBadPolicy, name)
	}
	if p := f.pendingFor(kind, "", name); p != nil {
		return nil, fmt.Errorf("%w: %s %s is already proposed as %s; approve it instead", ErrConflict, kind, name, p.ID)
	}
	p := f.newProposal(c, kind, fmt.Sprintf("%s-%s-%d", strings.TrimSuffix(kind, "_member"), name, f.nextIndex()), signer)
	p.Member = name
	f.maybeExecute(p, c.At)
	return p, nil
}

func (f *FSM) proposePolicy(c *adminAction, pol Policy, signer pki.Identity) (*Proposal, error) {
	if err := pol.Validate(); err != nil {
		return nil, err
	}
	if len(pol.Organizations) > 0 && !slices.Contains(pol.Organizations, signer.Organization) {
		return nil, fmt.Errorf("%w: organizations must include the proposer's own (%s)", ErrBadPolicy, signer.Organization)
	}
	p := f.newProposal(c, kindSetPolicy, fmt.Sprintf("policy-%d", f.nextIndex()), signer)
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

// approve adds the signer's organisation's approval to a proposal. A job
// ID names the job's pending submission, or else its pending cancellation.
func (f *FSM) approve(c *adminAction, id string, signer pki.Identity) (*Proposal, error) {
	p := f.st.Proposals[id]
	if p != nil && p.Status != proposalPending && p.Kind == kindSubmitJob {
		if cp := f.pendingFor(kindCancelJob, id, ""); cp != nil {
			p = cp
		}
	}
	if p == nil {
		return nil, fmt.Errorf("%w: no proposal %s", ErrUnknownProposal, id)
	}
	if p.Status != proposalPending {
		return nil, fmt.Errorf("%w: proposal %s is %s", ErrConflict, p.ID, p.Status)
	}
	if p.approvedBy(signer.Organization) {
		return nil, fmt.Errorf("%w: organisation %s already approved %s; another organisation must", ErrAlreadyApproved, signer.Organization, p.ID)
	}
	p.Approvals = append(p.Approvals, Approval{Admin: signer.Name, Organization: signer.Organization, At: c.At})
	f.maybeExecute(p, c.At)
	return p, nil
}

// maybeExecute carries out a proposal once enough member organisations
// approved it.
func (f *FSM) maybeExecute(p *Proposal, at int64) {
	n := 0
	for _, a := range p.Approvals {
		if f.st.Policy.admits(a.Organization) {
			n++
		}
	}
	if n < int(p.Required) {
		return
	}
	p.Status = proposalExecuted
	switch p.Kind {
	case kindSubmitJob:
		if j := f.st.Jobs[p.JobID]; j != nil && j.Status == pb.JobStatus_JOB_STATUS_PENDING_APPROVAL {
			j.Status = pb.JobStatus_JOB_STATUS_RUNNING
			p.Outcome = "job running"
		} else {
			p.Status, p.Outcome = proposalFailed, "job is no longer pending"
		}
	case kindCancelJob:
		j := f.st.Jobs[p.JobID]
		if j == nil || (!j.running() && j.Status != pb.JobStatus_JOB_STATUS_PENDING_APPROVAL) {
			p.Status, p.Outcome = proposalFailed, "job had already finished"
			return
		}
		f.cancel(j, p.Reason, at)
		p.Outcome = "job cancelled"
	case kindSetPolicy:
		f.st.Policy = *p.Policy
		p.Outcome = "policy in force"
	case kindAddMember:
		f.st.MemberRules[p.Member] = memberAdmitted
		p.Outcome = "admitted: the leader adds it to the Raft configuration when it is alive"
	case kindRemoveMember:
		f.st.MemberRules[p.Member] = memberExcluded
		p.Outcome = "excluded: the leader removes it from the Raft configuration"
	}
}

// cancel ends a running or pending job.
func (f *FSM) cancel(j *Job, reason string, at int64) {
	if r := j.openRound(); r != nil {
		r.Status, r.Reason, r.ClosedAt = pb.RoundStatus_ROUND_STATUS_ABORTED, "job cancelled", at
	}
	j.Status, j.Reason, j.FinishedAt = pb.JobStatus_JOB_STATUS_CANCELLED, reason, at
	if p := f.st.Proposals[j.ID]; p != nil && p.Status == proposalPending {
		p.Status, p.Outcome = proposalFailed, "job cancelled before it was approved"
	}
}

// Member rules set by approved proposals.
const (
	memberAdmitted = "admitted"
	memberExcluded = "excluded"
)

// revoke revokes the certificate the request names by serial, or every
// serial the federation has seen under its name.
func (f *FSM) revoke(c *adminAction, req *pb.RevokeRequest, signer pki.Identity) ([]Revocation, error) {
	var serials []string
	name := req.GetName()
	switch {
	case req.GetSerial() != "":
		s := strings.ToLower(strings.TrimPrefix(req.GetSerial(), "0x"))
		if _, err := hex.DecodeString(strings.Repeat("0", len(s)%2) + s); err != nil || len(s) == 0 || len(s) > 64 {
			return nil, fmt.Errorf("%w: serial %q: want the certificate's serial number in hex", ErrBadPolicy, req.GetSerial())
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
	var out []Revocation
	for _, s := range serials {
		if f.st.Revoked[s] != nil {
			continue
		}
		r := Revocation{Serial: s, Name: name, Reason: req.GetReason(), RevokedBy: signer.Name + " (" + signer.Organization + ")", At: c.At}
		if r.Name == "" {
			r.Name = f.nameOfSerial(s)
		}
		f.st.Revoked[s] = &r
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: already revoked", ErrConflict)
	}
	if f.onRevoke != nil {
		f.onRevoke(out)
	}
	return out, nil
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

func (f *FSM) nameOfSerial(serial string) string {
	for _, p := range f.st.Participants {
		if slices.Contains(p.Serials, serial) {
			return p.ID
		}
	}
	return ""
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

// UsedNonce reports whether a signed request was already carried out.
func (f *FSM) UsedNonce(key string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.nonces[key]
}

// recordRefusal is the command recording a participant's site refusing a job.
type recordRefusal struct {
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

func (f *FSM) applyRecordRefusal(c *recordRefusal) error {
	j, ok := f.st.Jobs[c.JobID]
	if !ok {
		return fmt.Errorf("%w %s", ErrUnknownJob, c.JobID)
	}
	if j.refused(c.Participant) {
		return nil
	}
	j.Refusals = append(j.Refusals, Refusal{Participant: c.Participant, Reason: c.Reason, At: c.At})
	return nil
}

func (j *Job) refused(participant string) bool {
	return slices.ContainsFunc(j.Refusals, func(r Refusal) bool { return r.Participant == participant })
}
