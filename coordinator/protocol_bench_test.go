package coordinator_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/participant"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// BenchmarkRoundProtocol measures one round's protocol cost without
// training: 100 participants each download the 2NN's 199,210 parameters and
// upload an update of the same size, through mutual TLS on loopback; the
// leader sums them, stores the new model and commits the round through Raft.
// The end of a round is signalled by the FSM applying its commit
// (coordtest.WaitCommitted waits on FSM.Changed), not polled.
//
//	go test -run '^$' -bench RoundProtocol -benchtime 20x ./coordinator/
func BenchmarkRoundProtocol(b *testing.B) {
	const participants = 100
	tc := coordtest.NewCluster(b, 1)
	tc.Leader(5 * time.Second)
	type raw struct {
		name   string
		client pb.ParticipantServiceClient
		tasks  pb.ParticipantService_TasksClient
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var raws []*raw
	for i := range participants {
		name := fmt.Sprintf("site-%d", i)
		client := pb.NewParticipantServiceClient(tc.Dial(0, tc.Credentials(pki.RoleParticipant, name)))
		if _, err := client.Register(ctx, &pb.RegisterRequest{Examples: 600, Datasets: []string{"mnist"}}); err != nil {
			b.Fatal(err)
		}
		tasks, err := client.Tasks(ctx, &pb.TasksRequest{})
		if err != nil {
			b.Fatal(err)
		}
		raws = append(raws, &raw{name: name, client: client, tasks: tasks})
	}
	admin := tc.Admin(0, "ops")
	waitConnected(b, admin, participants)
	spec := state.DefaultJobSpec()
	spec.Rounds, spec.TargetAccuracy, spec.EvaluateFraction = 1_000_000, 0, 0
	spec.ParticipantsPerRound, spec.MinParticipants = participants, participants
	resp, err := admin.SubmitJob(ctx, &pb.SubmitJobRequest{Spec: spec.ToProto()})
	if err != nil {
		b.Fatal(err)
	}
	const numParams = 199_210
	delta := make([]float32, numParams)
	for i := range delta {
		delta[i] = 1e-4
	}
	b.SetBytes(2 * 4 * numParams * participants)
	b.ResetTimer()
	for i := range b.N {
		var wg sync.WaitGroup
		errs := make(chan error, participants)
		for _, r := range raws {
			wg.Go(func() {
				t, err := r.tasks.Recv()
				if err != nil {
					errs <- err
					return
				}
				stream, err := r.client.DownloadModel(ctx, &pb.DownloadModelRequest{Digest: t.BaseModelDigest})
				if err != nil {
					errs <- err
					return
				}
				for {
					if _, err := stream.Recv(); err == io.EOF {
						break
					} else if err != nil {
						errs <- err
						return
					}
				}
				hdr := &pb.UpdateHeader{JobId: t.JobId, Round: t.Round, Attempt: t.Attempt, BaseModelDigest: t.BaseModelDigest, NumParams: numParams, Examples: 600}
				if err := participant.Upload(ctx, r.client, hdr, delta); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		tc.WaitCommitted(resp.JobId, uint32(i+1), 30*time.Second)
	}
	b.StopTimer()
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/round")
	admin.CancelJob(ctx, &pb.CancelJobRequest{JobId: resp.JobId})
}
