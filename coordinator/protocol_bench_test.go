package coordinator_test

import (
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/coordinator/state"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// BenchmarkRoundProtocol measures one round's protocol cost without
// training: 100 lightweight participants (coordtest.Light) each download
// the 2NN's 199,210 parameters and upload a precomputed update of the same
// size, through mutual TLS on loopback; the leader sums them, stores the
// new model and commits the round through Raft. The end of a round is
// signalled by the FSM applying its commit (coordtest.WaitCommitted waits
// on FSM.Changed), not polled; the participants take the next round's task
// at once. BenchmarkScale does the same at 1,000 participants on real
// coordinator processes.
//
//	go test -run '^$' -bench RoundProtocol -benchtime 20x ./coordinator/
func BenchmarkRoundProtocol(b *testing.B) {
	const participants = 100
	tc := coordtest.NewCluster(b, 1)
	tc.Leader(5 * time.Second)
	fleet := coordtest.StartFleet(b, coordtest.FleetConfig{N: participants, Addrs: tc.Addrs(), CA: tc.CA, Update: coordtest.NewUpdate(scaleDelta(), 600)})
	admin := tc.Admin(0, "ops")
	waitConnected(b, admin, participants)
	spec := state.DefaultJobSpec()
	spec.Model = scaleModel // the model of the update the fleet sends
	spec.Rounds, spec.TargetAccuracy, spec.EvaluateFraction = 1_000_000, 0, 0
	spec.ParticipantsPerRound, spec.MinParticipants = participants, participants
	resp, err := admin.SubmitJob(b.Context(), &pb.SubmitJobRequest{Spec: spec.ToProto()})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(2 * 4 * scaleParams * participants))
	b.ResetTimer()
	for i := range b.N {
		tc.WaitCommitted(resp.JobId, uint32(i+1), 30*time.Second)
		if err := fleet.Err(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/round")
	if _, _, failed, last := fleet.Stats(); failed > 0 {
		b.Fatalf("%d participant tasks failed; the last: %v", failed, last)
	}
	admin.CancelJob(b.Context(), &pb.CancelJobRequest{JobId: resp.JobId})
}
