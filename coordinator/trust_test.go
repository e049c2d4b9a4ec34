package coordinator_test

import (
	"context"
	"crypto/tls"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/accord-fl/accord/adminauth"
	"github.com/accord-fl/accord/audit"
	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/coordinator/schedule"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/participant"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// The test clusters' coordinators c1, c2, c3 are run by org1, org2, org3.
// These are an admin of each.
var (
	alice = pki.Identity{Role: pki.RoleAdmin, Name: "alice", Organization: "org1"}
	bob   = pki.Identity{Role: pki.RoleAdmin, Name: "bob", Organization: "org2"}
	carol = pki.Identity{Role: pki.RoleAdmin, Name: "carol", Organization: "org3"}
)

func adminOf(tc *coordtest.Cluster, i int, id pki.Identity) pb.AdminServiceClient {
	return tc.AdminOf(i, id.Name, id.Organization)
}

// asCoordinator is an admin client of node i that presents coordinator
// c1's certificate (org1's), as a hostile org1 coordinator would when it
// makes or forwards calls.
func asCoordinator(t *testing.T, tc *coordtest.Cluster, i int) pb.AdminServiceClient {
	t.Helper()
	cert, err := tc.CA.Issue(pki.Identity{Role: pki.RoleCoordinator, Name: "c1", Organization: "org1"})
	if err != nil {
		t.Fatal(err)
	}
	return pb.NewAdminServiceClient(tc.Dial(i, credentials.NewTLS(pki.ClientTLS(cert, tc.CA.Pool()))))
}

// vouchFor is the metadata a forwarding coordinator used to add to speak
// for an admin.
func vouchFor(ctx context.Context, id pki.Identity) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "accord-on-behalf-of", strings.Join([]string{string(id.Role), id.Name, id.Organization, ""}, "|"))
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if status.Code(err) != want {
		t.Errorf("%s: got %v (%v); want %v", what, status.Code(err), err, want)
	}
}

// Organisation 1's coordinator cannot submit, cancel, remove or approve in
// the name of organisation 2's admin: not by vouching for it, not with a
// signature of its own, and not by changing a request bob signed. Nothing
// changes.
func TestCoordinatorCannotActInAnAdminsName(t *testing.T) {
	tc := coordtest.NewCluster(t, 3)
	leader := tc.Leader(5 * time.Second)
	bobAdmin := adminOf(tc, 1, bob)
	jobID := submit(t, bobAdmin, blobsJob(1))
	tc.WaitConverged(10 * time.Second)
	before := leader.FSM().Digest()

	c1Cert, err := tc.CA.Issue(pki.Identity{Role: pki.RoleCoordinator, Name: "c1", Organization: "org1"})
	if err != nil {
		t.Fatal(err)
	}
	bobCert := tc.AdminCert(bob.Name, bob.Organization)
	for i := range 3 { // through each coordinator, leader and followers alike
		raw := asCoordinator(t, tc, i)
		ctx := vouchFor(t.Context(), bob)
		_, err := raw.SubmitJob(ctx, &pb.SubmitJobRequest{Spec: blobsJob(1)})
		wantCode(t, "submit vouched for bob", err, codes.PermissionDenied)
		_, err = raw.CancelJob(ctx, &pb.CancelJobRequest{JobId: jobID})
		wantCode(t, "cancel vouched for bob", err, codes.PermissionDenied)
		_, err = raw.RemoveMember(ctx, &pb.RemoveMemberRequest{Name: "c3"})
		wantCode(t, "remove member vouched for bob", err, codes.PermissionDenied)
		_, err = raw.Approve(ctx, &pb.ApproveRequest{ProposalId: jobID, Kind: "submit_job"})
		wantCode(t, "approve vouched for bob", err, codes.PermissionDenied)

		// Signed with the coordinator's own key: not an admin's.
		req := &pb.CancelJobRequest{JobId: jobID}
		own, err := adminauth.Sign(c1Cert, "/accord.v1.AdminService/CancelJob", req, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		_, err = raw.CancelJob(adminauth.Attach(t.Context(), own), req)
		wantCode(t, "cancel signed by a coordinator", err, codes.PermissionDenied)

		// Bob signed a harmless request; the coordinator swaps the request.
		signed, err := adminauth.Sign(bobCert, "/accord.v1.AdminService/CancelJob", &pb.CancelJobRequest{JobId: "job-other"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		_, err = raw.CancelJob(adminauth.Attach(t.Context(), signed), req)
		wantCode(t, "bob's signature on an altered request", err, codes.PermissionDenied)
		// ... or the method.
		_, err = raw.RemoveMember(adminauth.Attach(t.Context(), signed), &pb.RemoveMemberRequest{Name: "c3"})
		wantCode(t, "bob's signature on another method", err, codes.PermissionDenied)
	}
	tc.WaitConverged(10 * time.Second)
	if after := tc.Leader(5 * time.Second).FSM().Digest(); after != before {
		t.Error("the replicated state changed")
	}
	if j, _ := leader.FSM().Job(jobID); j == nil || j.Status != pb.JobStatus_JOB_STATUS_RUNNING {
		t.Errorf("bob's job: %+v; want it running", j)
	}
}

// A signed admin request is carried out once: replayed to the same
// coordinator or another one, or replayed late, it is refused.
func TestReplayedAdminRequestIsRefused(t *testing.T) {
	tc := coordtest.NewCluster(t, 3)
	tc.Leader(5 * time.Second)
	cert := tc.AdminCert(alice.Name, alice.Organization)
	creds := credentials.NewTLS(pki.ClientTLS(cert, tc.CA.Pool()))
	req := &pb.SubmitJobRequest{Spec: blobsJob(1)}
	signed, err := adminauth.Sign(cert, "/accord.v1.AdminService/SubmitJob", req, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx := adminauth.Attach(t.Context(), signed)
	first := pb.NewAdminServiceClient(tc.Dial(0, creds))
	var resp *pb.SubmitJobResponse
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err = first.SubmitJob(ctx, req); status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			break // Unavailable: no leader known yet, nothing done
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	_, err = first.SubmitJob(ctx, req)
	wantCode(t, "replay to the same coordinator", err, codes.PermissionDenied)
	tc.WaitConverged(10 * time.Second)
	for i := 1; i < 3; i++ {
		_, err = pb.NewAdminServiceClient(tc.Dial(i, creds)).SubmitJob(ctx, req)
		wantCode(t, "replay to another coordinator", err, codes.PermissionDenied)
	}
	stale, err := adminauth.Sign(cert, "/accord.v1.AdminService/SubmitJob", req, time.Now().Add(-adminauth.MaxSkew-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	_, err = first.SubmitJob(adminauth.Attach(t.Context(), stale), req)
	wantCode(t, "request signed long ago", err, codes.PermissionDenied)
	// A read is refused when replayed too.
	list := &pb.ListJobsRequest{}
	signedList, _ := adminauth.Sign(cert, "/accord.v1.AdminService/ListJobs", list, time.Now())
	if _, err := first.ListJobs(adminauth.Attach(t.Context(), signedList), list); err != nil {
		t.Fatal(err)
	}
	_, err = first.ListJobs(adminauth.Attach(t.Context(), signedList), list)
	wantCode(t, "replayed read", err, codes.PermissionDenied)
	// An unsigned call from an admin is refused.
	_, err = first.ListJobs(t.Context(), list)
	wantCode(t, "unsigned call", err, codes.Unauthenticated)

	if jobs := tc.Leader(5 * time.Second).FSM().Jobs(); len(jobs) != 1 || jobs[0].ID != resp.JobId {
		t.Errorf("%d jobs; want the one submitted once", len(jobs))
	}
}

// Expired certificates are refused, whoever presents them.
func TestExpiredCertificatesAreRefused(t *testing.T) {
	tc := coordtest.NewCluster(t, 3)
	tc.Leader(5 * time.Second)
	expired := func(id pki.Identity) tls.Certificate {
		c, err := tc.CA.IssueWith(id, pki.IssueOptions{NotBefore: time.Now().Add(-48 * time.Hour), ValidFor: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	p := expired(pki.Identity{Role: pki.RoleParticipant, Name: "stale", Organization: "h1"})
	_, err := pb.NewParticipantServiceClient(tc.Dial(0, credentials.NewTLS(pki.ClientTLS(p, tc.CA.Pool())))).
		Register(t.Context(), &pb.RegisterRequest{Examples: 10, Datasets: []string{"blobs"}})
	if err == nil {
		t.Error("a participant with an expired certificate registered")
	}
	a := expired(alice)
	for i := range 3 {
		if _, err := tc.AdminWith(i, a).ListJobs(t.Context(), &pb.ListJobsRequest{}); err == nil {
			t.Errorf("c%d answered an admin with an expired certificate", i+1)
		}
	}
	// A request signed while the certificate was valid, sent after it
	// expired, is refused too: the certificate must be valid now.
	short, err := tc.CA.IssueWith(alice, pki.IssueOptions{NotBefore: time.Now().Add(-time.Hour), ValidFor: time.Hour + 2*time.Second})
	if err != nil {
		t.Fatal(err)
	}
	list := &pb.ListJobsRequest{}
	signed, err := adminauth.Sign(short, "/accord.v1.AdminService/ListJobs", list, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := signed.VerifyAt(tc.CA.Pool(), time.Now().Add(time.Minute)); !errors.Is(err, adminauth.ErrBadSignature) {
		t.Errorf("a signature checked after its certificate expired: %v; want refused", err)
	}
	if got := tc.Nodes[0].FSM().Participants(); len(got) != 0 {
		t.Errorf("participants %v; want none", got)
	}
}

// With approvals_required 2, a job org1 submits waits for another
// organisation: org1 approving again does not count, a coordinator of org1
// cannot approve for org2, and once org2's admin approves the job trains
// and commits.
func TestJobWaitsForApprovalsOfOtherOrganisations(t *testing.T) {
	tc := coordtest.NewCluster(t, 3)
	tc.Leader(5 * time.Second)
	startFleet(t, tc, 4, fleetHooks{})
	a, b := adminOf(tc, 0, alice), adminOf(tc, 1, bob)
	p, err := a.SetPolicy(t.Context(), &pb.SetPolicyRequest{Policy: &pb.Policy{Organizations: []string{"org1", "org2", "org3"}, ApprovalsRequired: 2}})
	if err != nil || p.GetProposal().GetStatus() != "executed" {
		t.Fatalf("first policy (one approval needed so far): %v %v", p, err)
	}
	waitConnected(t, a, 4)
	id := submit(t, a, blobsJob(2))
	job, err := a.GetJob(t.Context(), &pb.GetJobRequest{JobId: id})
	if err != nil || job.Status != pb.JobStatus_JOB_STATUS_PENDING_APPROVAL {
		t.Fatalf("job after submission: %v %v; want PENDING_APPROVAL", job.GetStatus(), err)
	}
	_, err = a.Approve(t.Context(), &pb.ApproveRequest{ProposalId: id, Kind: "submit_job"})
	wantCode(t, "org1 approving its own job again", err, codes.AlreadyExists)
	_, err = adminOf(tc, 2, pki.Identity{Name: "alice2", Organization: "org1"}).Approve(t.Context(), &pb.ApproveRequest{ProposalId: id, Kind: "submit_job"})
	wantCode(t, "a second admin of org1 approving", err, codes.AlreadyExists)
	_, err = asCoordinator(t, tc, 1).Approve(vouchFor(t.Context(), bob), &pb.ApproveRequest{ProposalId: id, Kind: "submit_job"})
	wantCode(t, "org1's coordinator approving for bob", err, codes.PermissionDenied)
	_, err = adminOf(tc, 0, pki.Identity{Name: "dave", Organization: "org9"}).Approve(t.Context(), &pb.ApproveRequest{ProposalId: id, Kind: "submit_job"})
	wantCode(t, "an admin of a non-member organisation", err, codes.PermissionDenied)

	// The participants are connected, so a running job would open a round
	// within a few leader ticks; for a while, this one must not.
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		j, err := tc.Leader(5 * time.Second).FSM().Job(id)
		if err != nil || j.Status != pb.JobStatus_JOB_STATUS_PENDING_APPROVAL || len(j.Rounds) > 0 {
			t.Fatalf("before org2 approved: job %v with %d rounds (%v)", j.Status, len(j.Rounds), err)
		}
	}
	resp, err := b.Approve(t.Context(), &pb.ApproveRequest{ProposalId: id, Kind: "submit_job"})
	if err != nil || resp.GetProposal().GetStatus() != "executed" {
		t.Fatalf("org2's approval: %v %v", resp, err)
	}
	if done := tc.WaitJob(id, 30*time.Second); done.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || done.CommittedRounds != 2 {
		t.Fatalf("job ended %v with %d rounds: %s", done.Status, done.CommittedRounds, done.Reason)
	}
	job, err = b.GetJob(t.Context(), &pb.GetJobRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	var approvers []string
	for _, ap := range job.Approvals {
		approvers = append(approvers, ap.Admin+"@"+ap.Organization)
	}
	if !slices.Equal(approvers, []string{"alice@org1", "bob@org2"}) {
		t.Errorf("approvals %v; want alice@org1, bob@org2", approvers)
	}
	// Cancelling and changing the policy follow the same rule.
	id2 := submit(t, b, blobsJob(50))
	if _, err := a.Approve(t.Context(), &pb.ApproveRequest{ProposalId: id2, Kind: "submit_job"}); err != nil {
		t.Fatal(err)
	}
	c, err := a.CancelJob(t.Context(), &pb.CancelJobRequest{JobId: id2})
	if err != nil || c.GetProposal().GetStatus() != "pending" {
		t.Fatalf("cancel by org1 alone: %v %v; want pending", c, err)
	}
	// An approval is signed for one kind of action: org3 supporting the
	// job cannot be counted for its cancellation, nor the other way round.
	_, err = adminOf(tc, 2, carol).Approve(t.Context(), &pb.ApproveRequest{ProposalId: id2, Kind: "submit_job"})
	wantCode(t, "approving the running job's submission again", err, codes.FailedPrecondition)
	_, err = adminOf(tc, 2, carol).Approve(t.Context(), &pb.ApproveRequest{ProposalId: c.GetProposal().GetId(), Kind: "submit_job"})
	wantCode(t, "an approval signed for another kind", err, codes.FailedPrecondition)
	if j, _ := tc.Leader(5 * time.Second).FSM().Job(id2); j.Status != pb.JobStatus_JOB_STATUS_RUNNING {
		t.Fatalf("job %s is %v before its cancellation was approved", id2, j.Status)
	}
	if _, err := adminOf(tc, 2, carol).Approve(t.Context(), &pb.ApproveRequest{ProposalId: c.GetProposal().GetId(), Kind: "cancel_job"}); err != nil {
		t.Fatalf("org3 approving the cancellation: %v", err)
	}
	if done := tc.WaitJob(id2, 10*time.Second); done.Status != pb.JobStatus_JOB_STATUS_CANCELLED {
		t.Errorf("job %s %v after two organisations cancelled it", id2, done.Status)
	}
	tc.WaitConverged(10 * time.Second)
	tc.CheckInvariants()
}

// A participant whose site policy accepts only org1's and org2's jobs does
// not train org3's: it refuses, the refusal is recorded, and the job
// commits its rounds with the others.
func TestSitePolicyRefusesAnotherOrganisationsJob(t *testing.T) {
	tc := coordtest.NewCluster(t, 3)
	tc.Leader(5 * time.Second)
	const picky = "pa0"
	trained := map[string]bool{}
	startFleet(t, tc, 4, fleetHooks{
		policy: func(name string) *participant.Policy {
			if name == picky {
				return &participant.Policy{Organizations: []string{"org1", "org2"}}
			}
			return nil
		},
	})
	c := adminOf(tc, 2, carol)
	waitConnected(t, c, 4)
	spec := blobsJob(3)
	spec.ParticipantsPerRound = 4 // the picky site is in every cohort
	id := submit(t, c, spec)
	job := tc.WaitJob(id, 30*time.Second)
	if job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || job.CommittedRounds != 3 {
		t.Fatalf("job ended %v with %d rounds: %s", job.Status, job.CommittedRounds, job.Reason)
	}
	if len(job.Refusals) != 1 || job.Refusals[0].Participant != picky || !strings.Contains(job.Refusals[0].Reason, "org3") {
		t.Errorf("refusals %+v; want %s's, naming org3", job.Refusals, picky)
	}
	for _, r := range job.Rounds {
		if r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED && slices.Contains(r.Contributors, picky) {
			t.Errorf("round %d counts %s's update", r.Number, picky)
		}
		for _, p := range r.Contributors {
			trained[p] = true
		}
	}
	if len(trained) != 3 {
		t.Errorf("contributors %v; want the three other sites", trained)
	}
	shown, err := c.GetJob(t.Context(), &pb.GetJobRequest{JobId: id})
	if err != nil || len(shown.Refusals) != 1 {
		t.Errorf("job show lists refusals %v (%v)", shown.GetRefusals(), err)
	}
	tc.WaitConverged(10 * time.Second)
	tc.CheckInvariants()
}

// A participant claiming 2^64−1 examples counts as max_examples, in plain
// and secure rounds alike: the committed model is the FedAvg of the
// cohort's updates computed here by hand with the liar at max_examples and
// the others at their real sizes.
func TestClaimedExamplesAreCappedAtMaxExamples(t *testing.T) {
	for _, mode := range []string{"", state.ModeSecAgg} {
		t.Run("mode="+mode, func(t *testing.T) {
			tc := coordtest.NewCluster(t, 3)
			tc.Leader(5 * time.Second)
			const liar, maxExamples = "pa0", 200
			startFleet(t, tc, 4, fleetHooks{declared: func(name string) uint64 {
				if name == liar {
					return math.MaxUint64
				}
				return 0
			}})
			admin := tc.Admin(0, "ops")
			waitConnected(t, admin, 4)
			spec := blobsJob(1)
			spec.ParticipantsPerRound, spec.MinParticipants, spec.MaxExamples, spec.EvaluateFraction = 4, 4, maxExamples, 0
			tolerance := 1e-6
			if mode != "" {
				spec.SecureAggregation = &pb.SecureAggregation{Mode: mode, Clip: 10}
				tolerance = 1e-5 // quantisation
			}
			id := submit(t, admin, spec)
			if job := tc.WaitJob(id, 30*time.Second); job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED {
				t.Fatalf("job ended %v: %s", job.Status, job.Reason)
			}
			job, _ := tc.Leader(time.Second).FSM().Job(id)
			round := job.Rounds[len(job.Rounds)-1]
			if round.Status != pb.RoundStatus_ROUND_STATUS_COMMITTED || len(round.Contributors) != 4 {
				t.Fatalf("round 1: %v with %v", round.Status, round.Contributors)
			}
			if want := uint64(3*120 + maxExamples); round.Examples != want {
				t.Errorf("round 1 weighs %d examples; want %d (three sites of 120, the liar capped at %d)", round.Examples, want, maxExamples)
			}
			// The admin's coordinator (0) may still be applying the commit
			// the leader has: wait until every node holds it.
			tc.WaitConverged(30 * time.Second)
			base, got := pullModel(t, admin, id, 0), pullModel(t, admin, id, 1)
			m := state.JobSpecFromProto(spec)
			mspec := model.MustParseSpec(m.Model)
			capped, uncapped := make([]float64, len(base)), make([]float64, len(base))
			var wCapped, wUncapped float64
			for i := range 4 {
				name := "p" + string(rune('a'+i)) + "0"
				local, err := model.FromParams(mspec, slices.Clone(base))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := model.Train(t.Context(), local, blobs(120, uint64(i)), m.TrainConfig(schedule.TaskSeed(m.Seed, 1, round.Attempt, name))); err != nil {
					t.Fatal(err)
				}
				w, claimed := 120.0, 120.0
				if name == liar {
					w, claimed = maxExamples, float64(math.MaxUint64)
				}
				for j := range base {
					d := float64(local.Params[j] - base[j])
					capped[j] += w * d
					uncapped[j] += claimed * d
				}
				wCapped, wUncapped = wCapped+w, wUncapped+claimed
			}
			var diff, diffUncapped float64
			for j := range base {
				diff = max(diff, math.Abs(float64(base[j])+capped[j]/wCapped-float64(got[j])))
				diffUncapped = max(diffUncapped, math.Abs(float64(base[j])+uncapped[j]/wUncapped-float64(got[j])))
			}
			t.Logf("committed model vs FedAvg by hand with the liar at max_examples: %.3g; with its claim believed: %.3g", diff, diffUncapped)
			if diff > tolerance {
				t.Errorf("committed model differs from the capped FedAvg by %g (tolerance %g)", diff, tolerance)
			}
			if diffUncapped < 100*tolerance {
				t.Errorf("the liar's claim would barely have mattered (%g): the test proves nothing", diffUncapped)
			}
			if n := job.Declared[liar]; n != maxExamples {
				t.Errorf("liar's declared count fixed at %d; want %d", n, maxExamples)
			}
		})
	}
}

// A revoked participant's open task stream is closed at once and it cannot
// reconnect; a revoked admin's next call is refused.
func TestRevocation(t *testing.T) {
	tc := coordtest.NewCluster(t, 3)
	tc.Leader(5 * time.Second)
	a := adminOf(tc, 1, alice)
	mallory := connectRaw(t, tc, "mallory") // its task stream is open on c1
	waitConnected(t, a, 1)
	ended := make(chan error, 1)
	go func() {
		_, err := mallory.tasks.Recv()
		ended <- err
	}()
	asked := time.Now()
	resp, err := a.Revoke(t.Context(), &pb.RevokeRequest{Name: "mallory", Reason: "key leaked"})
	if err != nil || len(resp.Revoked) != 1 || resp.Revoked[0].Serial != pki.SerialOf(mallory.cert.Leaf) {
		t.Fatalf("revoking mallory: %v %v", resp, err)
	}
	answered := time.Now()
	select {
	case err := <-ended:
		t.Logf("mallory's task stream closed; the revocation took %v from request to answer, the stream had closed %v after that: %v",
			answered.Sub(asked), time.Since(answered), err)
	case <-time.After(10 * time.Second):
		t.Fatal("mallory's task stream is still open 10 s after the revocation")
	}
	for i := range 3 {
		cl := pb.NewParticipantServiceClient(tc.Dial(i, credentials.NewTLS(pki.ClientTLS(mallory.cert, tc.CA.Pool()))))
		if _, err := cl.Register(t.Context(), &pb.RegisterRequest{Examples: 1, Datasets: []string{"blobs"}}); err == nil {
			t.Errorf("mallory registered again with c%d", i+1)
		}
	}

	bobCert := tc.AdminCert(bob.Name, bob.Organization)
	b := tc.AdminWith(2, bobCert)
	if _, err := b.ListJobs(t.Context(), &pb.ListJobsRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Revoke(t.Context(), &pb.RevokeRequest{Serial: pki.SerialOf(bobCert.Leaf)}); err != nil {
		t.Fatal(err)
	}
	tc.WaitConverged(10 * time.Second)
	_, err = b.ListJobs(t.Context(), &pb.ListJobsRequest{})
	wantCode(t, "revoked admin's next call", err, codes.PermissionDenied)
	if _, err := b.SubmitJob(t.Context(), &pb.SubmitJobRequest{Spec: blobsJob(1)}); err == nil {
		t.Error("a revoked admin submitted a job")
	}
	if n := len(tc.Nodes[0].FSM().Revocations()); n != 2 {
		t.Errorf("%d revocations replicated; want 2", n)
	}
}

// The audit log of a real run verifies from the CA certificate alone, and
// names the entry when one is altered.
func TestAuditLogVerifies(t *testing.T) {
	tc := coordtest.NewCluster(t, 3)
	tc.Leader(5 * time.Second)
	a, b := adminOf(tc, 0, alice), adminOf(tc, 1, bob)
	// Coordinator 0 may not have heard from the new leader yet: it answers
	// Unavailable until it has.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, err := a.SetPolicy(t.Context(), &pb.SetPolicyRequest{Policy: &pb.Policy{ApprovalsRequired: 2}})
		if err == nil {
			break
		}
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	id := submit(t, a, blobsJob(1))
	if _, err := b.Approve(t.Context(), &pb.ApproveRequest{ProposalId: id, Kind: "submit_job"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CancelJob(t.Context(), &pb.CancelJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
	tc.WaitConverged(10 * time.Second)
	resp, err := b.ListAudit(t.Context(), &pb.ListAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var entries []audit.Entry
	for _, e := range resp.Entries {
		entries = append(entries, audit.FromWire(e))
	}
	if len(entries) != 4 {
		t.Fatalf("%d audit entries; want 4 (policy, submit, approve, cancel)", len(entries))
	}
	for _, e := range entries {
		t.Logf("audit %d: %s by %s of %s: %s", e.Index, e.Action, e.Signer, e.Organization, e.Summary)
	}
	if err := audit.Verify(entries, tc.CA.Pool()); err != nil {
		t.Fatalf("the log of a real run does not verify: %v", err)
	}
	alter := []struct {
		name string
		edit func(e *audit.Entry)
	}{
		{"summary", func(e *audit.Entry) { e.Summary = "approved nothing" }},
		{"signer", func(e *audit.Entry) { e.Signer = "alice" }},
		{"signed request", func(e *audit.Entry) {
			e.Signed.Request = append([]byte{}, e.Signed.Request...)
			e.Signed.Request[0] ^= 1
		}},
	}
	for _, c := range alter {
		forged := slices.Clone(entries)
		c.edit(&forged[2])
		err := audit.Verify(forged, tc.CA.Pool())
		var ee *audit.EntryError
		if !errors.As(err, &ee) || ee.Index != 2 {
			t.Errorf("altered %s: %v; want entry 2 named", c.name, err)
		}
		// Rehashing the altered entry breaks the next one's link instead.
		forged[2].Hash = forged[2].ComputeHash()
		if err := audit.Verify(forged, tc.CA.Pool()); !errors.As(err, &ee) || (ee.Index != 2 && ee.Index != 3) {
			t.Errorf("altered and rehashed %s: %v; want entry 2 or 3 named", c.name, err)
		}
	}
}
