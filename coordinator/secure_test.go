package coordinator_test

import (
	"crypto/tls"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/accord-fl/accord/aggregate/secagg"
	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/participant"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
	"github.com/accord-fl/accord/scenarios"
)

func secureBlobsJob(rounds, perRound uint32, mode string) *pb.JobSpec {
	spec := blobsJob(rounds)
	spec.ParticipantsPerRound = perRound
	// Generous deadlines: a phase closes as soon as every member answered
	// or disconnected, so they cost nothing unless the machine is so loaded
	// that an honest participant is slow, which must not drop it.
	spec.SecureAggregation = &pb.SecureAggregation{Mode: mode, Clip: 10, DropoutRate: 0.3, PhaseDeadlineMs: 30_000}
	spec.RoundDeadlineMs = 60_000
	// Masked weights are examples / max_examples: a cap near the sites'
	// real sizes (120 here) keeps the quantisation error small.
	spec.MaxExamples = 1000
	return spec
}

// pullModel downloads a committed model's parameters.
func pullModel(t *testing.T, admin pb.AdminServiceClient, jobID string, round uint32) []float32 {
	t.Helper()
	blob, _, err := scenarios.PullModel(t.Context(), admin, jobID, round, false)
	if err != nil {
		t.Fatal(err)
	}
	params, err := protocol.DecodeFloat32(blob)
	if err != nil {
		t.Fatal(err)
	}
	return params
}

// waitConnected waits up to 10 s until n participants are connected to
// the leader.
func waitConnected(t testing.TB, admin pb.AdminServiceClient, n int) {
	t.Helper()
	waitConnectedWithin(t, admin, n, 10*time.Second)
}

// waitConnectedWithin waits up to timeout until n participants are
// connected to the leader, asking it a thousand times at most.
func waitConnectedWithin(t testing.TB, admin pb.AdminServiceClient, n int, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(timeout / 1000) {
		resp, err := admin.ListParticipants(t.Context(), &pb.ListParticipantsRequest{})
		connected := 0
		for _, p := range resp.GetParticipants() {
			if p.Connected {
				connected++
			}
		}
		if err == nil && connected >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d participants connected (%v)", connected, n, err)
		}
	}
}

func maxAbsDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// The same job, with the same seed and participants, commits the same
// models with secure aggregation as without: the masks cancel and the
// unmasked sum is the FedAvg sum up to quantisation (~1e-9 here). The
// participants hold 40 to 240 examples, so the masked weights matter.
func TestSecureAggregationCommitsTheFedAvgModel(t *testing.T) {
	for _, mode := range []string{state.ModeSecAgg, state.ModeSecAggPlus} {
		t.Run(mode, func(t *testing.T) {
			tc := coordtest.NewCluster(t, 3)
			tc.Leader(5 * time.Second)
			startFleet(t, tc, 6, fleetHooks{trainExamples: func(i int) int { return 40 * (i + 1) }})
			admin := tc.Admin(1, "ops")
			waitConnected(t, admin, 6)
			plain := blobsJob(3)
			// Every round waits for all six (on a loaded machine, too), so
			// both jobs train the same rounds from the same bases.
			plain.ParticipantsPerRound, plain.MinParticipants, plain.RoundDeadlineMs = 6, 6, 60_000
			plainID := submit(t, admin, plain)
			if job := tc.WaitJob(plainID, 30*time.Second); job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED {
				t.Fatalf("plain job ended %v: %s", job.Status, job.Reason)
			}
			secure := secureBlobsJob(3, 6, mode)
			secure.MinParticipants = 6
			secureID := submit(t, admin, secure)
			job := tc.WaitJob(secureID, 60*time.Second)
			if job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || job.CommittedRounds != 3 {
				t.Fatalf("secure job ended %v with %d rounds: %s", job.Status, job.CommittedRounds, job.Reason)
			}
			rounds, err := admin.ListRounds(t.Context(), &pb.ListRoundsRequest{JobId: secureID})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rounds.Rounds {
				if r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED && (len(r.Contributors) != 6 || r.Examples != 840) {
					t.Errorf("round %d: %d contributors, %d examples; want 6 and 840", r.Number, len(r.Contributors), r.Examples)
				}
			}
			for round := uint32(1); round <= 3; round++ {
				a, b := pullModel(t, admin, plainID, round), pullModel(t, admin, secureID, round)
				if d := maxAbsDiff(a, b); d > 1e-5 {
					t.Errorf("round %d: secure model differs from the plain one by %g", round, d)
				}
			}
			tc.WaitConverged(10 * time.Second)
			tc.CheckInvariants()
		})
	}
}

// Killing 30% of the cohort after they shared their keys leaves the round
// able to commit: survivors reveal the dropped clients' mask keys. Killing
// four of the seven left leaves fewer than the threshold: that round aborts with the
// reason, and the job goes on with who is left.
func TestSecureRoundSurvivesParticipantsKilledAfterSharingKeys(t *testing.T) {
	tc := coordtest.NewCluster(t, 3)
	tc.Leader(5 * time.Second)
	const n = 10
	var mu sync.Mutex
	victims := map[uint32]int{2: 3, 4: 4} // round → how many to kill
	killed := map[uint32]int{}
	k := startFleet(t, tc, n, fleetHooks{kill: func(name string, task *pb.Task) bool {
		mu.Lock()
		defer mu.Unlock()
		if task.Kind != pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS || task.Attempt != 1 || killed[task.Round] >= victims[task.Round] {
			return false
		}
		killed[task.Round]++
		return true
	}})
	admin := tc.Admin(0, "ops")
	waitConnected(t, admin, n) // every round's cohort is everyone still alive
	spec := secureBlobsJob(5, n, state.ModeSecAggPlus)
	spec.MinParticipants = 2
	jobID := submit(t, admin, spec)
	job := tc.WaitJob(jobID, 90*time.Second)
	if job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || job.CommittedRounds != 5 {
		t.Fatalf("job ended %v with %d rounds: %s", job.Status, job.CommittedRounds, job.Reason)
	}
	rounds, err := admin.ListRounds(t.Context(), &pb.ListRoundsRequest{JobId: jobID, IncludeAborted: true})
	if err != nil {
		t.Fatal(err)
	}
	byNumber := map[[2]uint32]*pb.Round{}
	for _, r := range rounds.Rounds {
		byNumber[[2]uint32{r.Number, r.Attempt}] = r
		t.Logf("round %d attempt %d: %v, cohort %d, contributors %d %s", r.Number, r.Attempt, r.Status, len(r.Cohort), len(r.Contributors), r.Reason)
	}
	if r := byNumber[[2]uint32{2, 1}]; r == nil || r.Status != pb.RoundStatus_ROUND_STATUS_COMMITTED || len(r.Cohort) != n || len(r.Contributors) != n-3 {
		t.Errorf("round 2 (3 of %d killed after sharing keys): %v; want committed by %d", n, r, n-3)
	}
	// Round 4's cohort is the 7 left; killing 4 leaves 3, below its threshold of 4.
	r := byNumber[[2]uint32{4, 1}]
	if r == nil || r.Status != pb.RoundStatus_ROUND_STATUS_ABORTED || !strings.Contains(r.Reason, "secure aggregation") || !strings.Contains(r.Reason, "threshold") {
		t.Errorf("round 4 (4 of 7 killed): %v; want aborted with a secure aggregation reason", r)
	}
	if r := byNumber[[2]uint32{4, 2}]; r == nil || r.Status != pb.RoundStatus_ROUND_STATUS_COMMITTED {
		t.Errorf("round 4 attempt 2 did not commit with the participants left: %v", r)
	}
	// Had a dropped client's masks stayed in the sum, round 2's model would
	// be noise; the rounds after it train on from it.
	last := byNumber[[2]uint32{5, 1}]
	if last == nil || last.Evaluation == nil || last.Evaluation.Examples == 0 {
		t.Fatalf("round 5 has no federated evaluation: %v", last)
	}
	if acc := float64(last.Evaluation.Correct) / float64(last.Evaluation.Examples); acc < 0.85 {
		t.Errorf("federated accuracy after 5 rounds %.3f; want ≥ 0.85", acc)
	}
	k.mu.Lock()
	if len(k.killed) != 7 {
		t.Errorf("%d participants killed; want 7", len(k.killed))
	}
	k.mu.Unlock()
	tc.WaitConverged(10 * time.Second)
	tc.CheckInvariants()
}

// TestSecureAggregationRefusals checks that each secure-aggregation message
// that does not belong is refused with a clear status and changes nothing.
func TestSecureAggregationRefusals(t *testing.T) {
	tc := coordtest.NewCluster(t, 1)
	tc.Leader(5 * time.Second)
	var raws []*rawParticipant
	for _, name := range []string{"alice", "bob", "carol", "dave"} {
		raws = append(raws, connectRaw(t, tc, name))
	}
	admin := tc.Admin(0, "ops")
	waitConnected(t, admin, 4)
	spec := secureBlobsJob(1, 3, state.ModeSecAgg)
	spec.EvaluateFraction, spec.RoundDeadlineMs = 0, 60_000
	spec.MaxOverSelection = 1 // a cohort of 3, and one participant outside it
	jobID := submit(t, admin, spec)

	// Three of the four get a training task with secure aggregation.
	cohort, others, task := firstRound(t, tc, jobID, raws)
	if len(cohort) != 3 || len(others) != 1 || task.Secagg == nil {
		t.Fatalf("cohort of %d, %d others, secagg %v", len(cohort), len(others), task.GetSecagg())
	}
	outsider := others[0]
	st := task.Secagg
	params := secagg.Params{N: int(st.N), K: int(st.Degree), T: int(st.Threshold), Length: int(st.Length), GraphSeed: st.GraphSeed,
		Session: protocol.SecAggSession(jobID, task.Round, task.Attempt, 0)}
	round := &pb.SecAggRound{JobId: jobID, Round: task.Round, Attempt: task.Attempt}
	advertisement := func(r *rawParticipant, signer tls.Certificate) *pb.SecAggAdvertisement {
		return signedAdvertisement(t, params, st.Cohort, r.name, r.cert, signer)
	}
	alice, bob := cohort[0], cohort[1]
	otherSession := params
	otherSession.Session = protocol.SecAggSession(jobID, task.Round+1, task.Attempt, 0)
	replayed := signedAdvertisement(t, otherSession, st.Cohort, alice.name, alice.cert, alice.cert)
	wrongIndex := advertisement(alice, alice.cert)
	wrongIndex.From = (wrongIndex.From + 1) % 3
	otherRound := proto.Clone(round).(*pb.SecAggRound)
	otherRound.Round++
	plainHeader := &pb.UpdateHeader{JobId: jobID, Round: task.Round, Attempt: task.Attempt, BaseModelDigest: task.BaseModelDigest, NumParams: 27, Examples: 100}
	maskedHeader := &pb.UpdateHeader{JobId: jobID, Round: task.Round, Attempt: task.Attempt, BaseModelDigest: task.BaseModelDigest, NumParams: st.Length, Masked: true}

	tests := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"an unmasked update", func() error {
			return participant.Upload(t.Context(), alice.client, plainHeader, make([]float32, 27))
		}, codes.InvalidArgument},
		{"keys from outside the cohort", func() error {
			_, err := outsider.client.SecAggAdvertise(t.Context(), &pb.SecAggAdvertiseRequest{Round: round, Advertisement: advertisement(outsider, outsider.cert)})
			return err
		}, codes.PermissionDenied},
		{"keys under another client's index", func() error {
			_, err := alice.client.SecAggAdvertise(t.Context(), &pb.SecAggAdvertiseRequest{Round: round, Advertisement: wrongIndex})
			return err
		}, codes.InvalidArgument},
		{"keys signed by someone else", func() error {
			_, err := alice.client.SecAggAdvertise(t.Context(), &pb.SecAggAdvertiseRequest{Round: round, Advertisement: advertisement(alice, bob.cert)})
			return err
		}, codes.InvalidArgument},
		{"keys signed for another round", func() error {
			_, err := alice.client.SecAggAdvertise(t.Context(), &pb.SecAggAdvertiseRequest{Round: round, Advertisement: replayed})
			return err
		}, codes.InvalidArgument},
		{"keys for another round", func() error {
			_, err := alice.client.SecAggAdvertise(t.Context(), &pb.SecAggAdvertiseRequest{Round: otherRound, Advertisement: advertisement(alice, alice.cert)})
			return err
		}, codes.FailedPrecondition},
		{"no round named", func() error {
			_, err := alice.client.SecAggAdvertise(t.Context(), &pb.SecAggAdvertiseRequest{Advertisement: advertisement(alice, alice.cert)})
			return err
		}, codes.InvalidArgument},
		{"shares before the share-keys phase", func() error {
			_, err := alice.client.SecAggShareKeys(t.Context(), &pb.SecAggShareKeysRequest{Round: round})
			return err
		}, codes.FailedPrecondition},
		{"a masked input before its phase", func() error {
			return participant.UploadMasked(t.Context(), alice.client, maskedHeader, make([]uint32, st.Length))
		}, codes.FailedPrecondition},
		{"a genuine advertisement", func() error {
			_, err := alice.client.SecAggAdvertise(t.Context(), &pb.SecAggAdvertiseRequest{Round: round, Advertisement: advertisement(alice, alice.cert)})
			return err
		}, codes.OK},
		{"a second advertisement", func() error {
			_, err := alice.client.SecAggAdvertise(t.Context(), &pb.SecAggAdvertiseRequest{Round: round, Advertisement: advertisement(alice, alice.cert)})
			return err
		}, codes.AlreadyExists},
		{"reveals before the unmask phase", func() error {
			_, err := bob.client.SecAggUnmask(t.Context(), &pb.SecAggUnmaskRequest{Round: round})
			return err
		}, codes.FailedPrecondition},
	}
	for _, tt := range tests {
		err := tt.call()
		if got := status.Code(err); got != tt.want {
			t.Errorf("%s: got %v (%v); want %v", tt.name, got, err, tt.want)
		} else if err != nil {
			t.Logf("%s: %v", tt.name, err)
		}
	}

	// Once all three advertised, alice's shares may come in parts: in
	// order, each once, at most one share per neighbour, none oversized.
	for _, r := range cohort[1:] {
		if _, err := r.client.SecAggAdvertise(t.Context(), &pb.SecAggAdvertiseRequest{Round: round, Advertisement: advertisement(r, r.cert)}); err != nil {
			t.Fatal(err)
		}
	}
	shareKeys, err := alice.tasks.Recv()
	if err != nil || shareKeys.Kind != pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS {
		t.Fatalf("alice's next task: %v, %v; want share keys", shareKeys.GetKind(), err)
	}
	index := func(r *rawParticipant) uint32 { return uint32(slices.Index(st.Cohort, r.name)) }
	share := func(to *rawParticipant, size int) *pb.SecAggShare {
		return &pb.SecAggShare{From: index(alice), To: index(to), Ciphertext: make([]byte, size)}
	}
	carol := cohort[2]
	part := func(part, parts uint32, shares ...*pb.SecAggShare) func() error {
		return func() error {
			_, err := alice.client.SecAggShareKeys(t.Context(), &pb.SecAggShareKeysRequest{Round: round, Shares: shares, Part: part, Parts: parts})
			return err
		}
	}
	parts := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"part 1 before part 0", part(1, 2, share(bob, 100)), codes.InvalidArgument},
		{"part 0 of 2", part(0, 2, share(bob, 100)), codes.OK},
		{"part 0 again", part(0, 2, share(carol, 100)), codes.AlreadyExists},
		{"part 2 of 2", part(2, 2, share(carol, 100)), codes.InvalidArgument},
		{"part 1 of 3", part(1, 3, share(carol, 100)), codes.InvalidArgument},
		{"a second share to bob", part(1, 2, share(bob, 100)), codes.InvalidArgument},
		{"an oversized share", part(1, 2, share(carol, secagg.MaxShareCiphertext+1)), codes.InvalidArgument},
		{"part 1 of 2", part(1, 2, share(carol, 100)), codes.OK},
		{"shares after the last part", part(0, 1, share(carol, 100)), codes.AlreadyExists},
	}
	for _, tt := range parts {
		err := tt.call()
		if got := status.Code(err); got != tt.want {
			t.Errorf("%s: got %v (%v); want %v", tt.name, got, err, tt.want)
		} else if err != nil {
			t.Logf("%s: %v", tt.name, err)
		}
	}
}

// TestSecureRoundInParts runs secure rounds with message budgets so small
// that every share-keys and masked-input task comes in parts and every
// client sends its shares and reveals in several requests, with the
// participants spread over three coordinators so that followers relay
// parts both ways: every round commits with the whole cohort, and the
// leader counted parts of each kind.
func TestSecureRoundInParts(t *testing.T) {
	tc := coordtest.NewCluster(t, 3, coordinator.SecAggPartBytesForTest(2<<10), func(cfg *coordinator.Config) { cfg.MetricsAddr = "127.0.0.1:0" })
	tc.Leader(5 * time.Second)
	// Eight clients: seven shares of ~300 bytes each go one request apiece
	// at 400 bytes, and eight reveals of ~55 in two; seven advertisements
	// with certificates need four task parts of 2 KiB, and seven shares two.
	const n, rounds = 8, 2
	startFleet(t, tc, n, fleetHooks{spread: true, secAggPartBytes: 400})
	admin := tc.Admin(0, "ops")
	waitConnected(t, admin, n)
	spec := secureBlobsJob(rounds, n, state.ModeSecAgg)
	spec.MinParticipants = n
	jobID := submit(t, admin, spec)
	job := tc.WaitJob(jobID, 60*time.Second)
	if job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || job.CommittedRounds != rounds {
		for _, r := range job.Rounds {
			t.Logf("round %d attempt %d: %v %q", r.Number, r.Attempt, r.Status, r.Reason)
		}
		t.Fatalf("job ended %v with %d rounds: %s", job.Status, job.CommittedRounds, job.Reason)
	}
	for _, r := range job.Rounds {
		if len(r.Contributors) != n {
			t.Errorf("round %d attempt %d: %v with %d contributors; want %d", r.Number, r.Attempt, r.Status, len(r.Contributors), n)
		}
	}
	text := scrape(t, tc.Leader(time.Second))
	for _, m := range []string{"task", "share_keys", "unmask"} {
		// Each member's message of each kind took two parts at least, in
		// every round.
		name := `accord_secagg_parts_total{message="` + m + `"}`
		if v := metricValue(text, name); v < 2*n*rounds {
			t.Errorf("%s = %v; want ≥ %d", name, v, 2*n*rounds)
		} else {
			t.Logf("%s = %v", name, v)
		}
	}
	tc.WaitConverged(10 * time.Second)
	tc.CheckInvariants()
}

// signedAdvertisement makes a client's advertisement for params, signed
// with signer's key and carrying cert.
func signedAdvertisement(t *testing.T, params secagg.Params, cohort []string, name string, cert, signer tls.Certificate) *pb.SecAggAdvertisement {
	t.Helper()
	c, err := secagg.NewClient(params, max(slices.Index(cohort, name), 0), name, make([]uint32, params.Length),
		func(msg []byte) ([]byte, error) { return pki.Sign(signer, msg) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.Advertise()
	if err != nil {
		t.Fatal(err)
	}
	return protocol.AdvertisementToWire(a, cert.Certificate[0])
}

// TestSecureRoundLeaderKilled kills the leader in the middle of a round's
// secure aggregation (after keys were shared): the new leader records the
// round aborted ("leader change") and retries it with fresh keys, and the
// job completes on every coordinator alike.
func TestSecureRoundLeaderKilled(t *testing.T) {
	tc := coordtest.NewCluster(t, 3)
	tc.Leader(10 * time.Second)
	shared := make(chan struct{}, 16)
	gate := make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	defer release()
	startFleet(t, tc, 6, fleetHooks{kill: func(_ string, task *pb.Task) bool {
		if task.Kind == pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS && task.Round == 3 && task.Attempt == 1 {
			shared <- struct{}{}
			<-gate // hold this participant until the leader is dead
		}
		return false
	}})
	admin := tc.Admin(1, "ops")
	waitConnected(t, admin, 6)
	jobID := submit(t, admin, secureBlobsJob(6, 6, state.ModeSecAggPlus))
	select {
	case <-shared:
	case <-time.After(30 * time.Second):
		t.Fatal("round 3 never reached the share-keys phase")
	}
	old := tc.Index(tc.Leader(time.Second))
	tc.Kill(old)
	tc.Leader(10 * time.Second)
	release()
	job := tc.WaitJob(jobID, 60*time.Second)
	if job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || job.CommittedRounds != 6 {
		t.Fatalf("job ended %v with %d rounds: %s", job.Status, job.CommittedRounds, job.Reason)
	}
	if !hasAbort(job, "leader change") {
		for _, r := range job.Rounds {
			t.Logf("round %d attempt %d: %v %q", r.Number, r.Attempt, r.Status, r.Reason)
		}
		t.Error("no round was recorded aborted by the leader change")
	}
	tc.Restart(old)
	tc.WaitConverged(20 * time.Second)
	tc.CheckInvariants()
}
