package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"google.golang.org/grpc"

	"github.com/accord-fl/accord/coordinator/schedule"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/pki"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// participantService implements pb.ParticipantServiceServer. Every call's
// identity comes from the peer's certificate.
type participantService struct {
	pb.UnimplementedParticipantServiceServer
	c *Coordinator
}

func (s *participantService) Register(ctx context.Context, req *pb.RegisterRequest) (*pb.RegisterResponse, error) {
	id, err := s.c.caller(ctx, pki.RoleParticipant)
	if err != nil {
		return nil, toStatus(err)
	}
	if len(req.GetRegion()) > 64 || len(req.GetDatasets()) > state.MaxDatasets {
		return nil, toStatus(fmt.Errorf("%w: region or dataset list too long", state.ErrBadUpdate))
	}
	datasets, err := state.DatasetsFromRegister(req.GetDatasets(), req.GetHoldings())
	if err != nil {
		return nil, toStatus(err)
	}
	avail, err := state.AvailabilityFromProto(req.GetAvailability())
	if err != nil {
		return nil, toStatus(fmt.Errorf("%w: %v", state.ErrBadUpdate, err))
	}
	if resp, fwd, err := forwardUnary(ctx, s.c, id, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.RegisterResponse, error) {
		return pb.NewParticipantServiceClient(cc).Register(ctx, req)
	}); fwd {
		if err == nil {
			resp.Coordinators = s.c.coordinatorAddrs()
		}
		return resp, err
	}
	names := make([]string, len(datasets))
	for i, d := range datasets {
		names[i] = d.Name
	}
	s.c.sessions.setDatasets(id.Name, names)
	want := state.Participant{ID: id.Name, Organization: id.Organization, Region: req.GetRegion(), Examples: req.GetExamples(), Serials: []string{id.Serial},
		Availability: avail, Datasets: datasets}
	if old := s.c.fsm.Participant(id.Name); old == nil || old.Organization != want.Organization || old.Region != want.Region || old.Examples != want.Examples ||
		!old.Availability.Equal(want.Availability) || !slices.Contains(old.Serials, id.Serial) || !slices.Equal(old.Datasets, want.Datasets) {
		if err := s.c.requireLeader(); err != nil {
			return nil, toStatus(err)
		}
		want.RegisteredAt = time.Now().UnixMilli()
		if err := s.c.apply(state.CmdRegisterParticipant, state.RegisterParticipant{Participant: want}); err != nil {
			return nil, toStatus(err)
		}
	}
	return &pb.RegisterResponse{ParticipantId: id.Name, Coordinators: s.c.coordinatorAddrs()}, nil
}

func (s *participantService) Tasks(_ *pb.TasksRequest, stream pb.ParticipantService_TasksServer) error {
	id, err := s.c.caller(stream.Context(), pki.RoleParticipant)
	if err != nil {
		return toStatus(err)
	}
	if !s.c.IsLeader() {
		return s.forwardTasks(stream, id)
	}
	// A revocation of the participant's certificate ends the stream.
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer s.c.streams.add(id.Serial, cancel)()
	if s.c.fsm.IsRevoked(id.Serial) {
		return toStatus(fmt.Errorf("%w: %s's certificate %s", state.ErrRevoked, id.Name, id.Serial))
	}
	ses := s.c.sessions.open(id.Name, time.Now())
	defer s.c.sessions.close(ses, time.Now())
	s.c.kickLeader()
	for {
		select {
		case <-ctx.Done():
			if stream.Context().Err() == nil {
				return toStatus(fmt.Errorf("%w: %s's certificate %s", state.ErrRevoked, id.Name, id.Serial))
			}
			return nil
		case <-ses.done:
			return nil // replaced by a newer stream
		case <-s.c.stop:
			return nil
		case t := <-ses.tasks:
			if err := s.sendTask(stream, id.Name, t); err != nil {
				return err
			}
		}
	}
}

// secAggPartBytes is the most bytes of one task message carrying
// secure-aggregation items.
func (c *Coordinator) secAggPartBytes() int {
	if c.cfg.secAggPartBytes > 0 {
		return c.cfg.secAggPartBytes
	}
	return protocol.SecAggPartBytes
}

// sendTask sends t on a participant's task stream: whole, or in parts
// when it relays more advertisements or delivers more shares than one
// message should carry (protocol.SplitSecAggTask). The parts go one after
// another, so a follower relaying the stream forwards them as they come.
// A task that cannot be split is dropped and logged: the participant
// misses that phase, as if its stream had broken.
func (s *participantService) sendTask(stream pb.ParticipantService_TasksServer, to string, t *pb.Task) error {
	parts, err := protocol.SplitSecAggTask(t, s.c.secAggPartBytes())
	if err != nil {
		s.c.log.Warn("task not sent", "participant", to, "job", t.GetJobId(), "round", t.GetRound(), "kind", t.GetKind().String(), "err", err)
		return nil
	}
	for _, p := range parts {
		if err := stream.Send(p); err != nil {
			return err
		}
	}
	if len(parts) > 1 {
		s.c.metrics.secaggParts.WithLabelValues("task").Add(float64(len(parts)))
	}
	return nil
}

// sendBlob streams a stored blob in chunks.
func sendBlob(st interface{ Send(*pb.ModelChunk) error }, blob []byte, digest, spec string) error {
	off := 0
	for _, ch := range protocol.Chunks(blob) {
		if err := st.Send(&pb.ModelChunk{Digest: digest, Model: spec, TotalBytes: uint64(len(blob)), Offset: uint64(off), Data: ch}); err != nil {
			return err
		}
		off += len(ch)
	}
	return nil
}

func (s *participantService) DownloadModel(req *pb.DownloadModelRequest, stream pb.ParticipantService_DownloadModelServer) error {
	if _, err := s.c.caller(stream.Context(), pki.RoleParticipant, pki.RoleCoordinator, pki.RoleAdmin); err != nil {
		return toStatus(err)
	}
	blob, err := s.c.blob(stream.Context(), req.GetDigest())
	if err != nil {
		return toStatus(fmt.Errorf("%w %s: %w", ErrUnknownModel, req.GetDigest(), err))
	}
	return sendBlob(stream, blob, req.GetDigest(), "")
}

func (s *participantService) UploadUpdate(stream pb.ParticipantService_UploadUpdateServer) error {
	id, err := s.c.caller(stream.Context(), pki.RoleParticipant)
	if err != nil {
		return toStatus(err)
	}
	// A stream that never sends its header ends after StreamIdleTimeout;
	// one admitted to a round ends at the round's deadline, finished or
	// not: a slow client holds a slot no longer than the round would wait.
	first, err := within(time.Now().Add(s.c.cfg.Limits.StreamIdleTimeout), stream.Recv)
	if err != nil {
		return toStatus(fmt.Errorf("%w: no header: %w", state.ErrBadUpdate, err))
	}
	h := first.GetHeader()
	if h == nil {
		return toStatus(fmt.Errorf("%w: the first chunk must carry the header", state.ErrBadUpdate))
	}
	if !s.c.IsLeader() {
		return s.forwardUpload(stream, id, first)
	}
	r, deadline, err := s.c.admitUpdate(id.Name, h)
	if err != nil {
		return toStatus(err)
	}
	if h.GetMasked() {
		y, err := within(deadline, func() ([]uint32, error) {
			return receiveMasked(stream, first.GetData(), int(h.GetNumParams()), s.c.metrics)
		})
		if err != nil {
			s.c.releaseUpdate(r, id.Name)
			return toStatus(err)
		}
		if err := s.c.addMasked(r, id.Name, y); err != nil {
			return toStatus(err)
		}
		return stream.SendAndClose(&pb.UploadUpdateResponse{})
	}
	delta, err := within(deadline, func() ([]float32, error) {
		return receiveUpdate(stream, first.GetData(), r.Length, s.c.metrics)
	})
	if err != nil {
		s.c.releaseUpdate(r, id.Name)
		return toStatus(err)
	}
	n, err := s.c.addUpdate(r, id.Name, delta)
	if err != nil {
		return toStatus(err)
	}
	return stream.SendAndClose(&pb.UploadUpdateResponse{ContributorsSoFar: uint32(n)})
}

// ErrStreamTimeout means a stream did not finish in the time it had.
var ErrStreamTimeout = errors.New("stream did not finish in time")

// within runs recv, which reads from a stream, and gives up at deadline.
// The handler then returns, gRPC cancels the stream, and recv's blocked
// read returns: the goroutine ends with the stream.
func within[T any](deadline time.Time, recv func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := recv()
		done <- result{v, err}
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case r := <-done:
		return r.v, r.err
	case <-timer.C:
		var zero T
		return zero, fmt.Errorf("%w: deadline %s passed", ErrStreamTimeout, deadline.UTC().Format(time.RFC3339Nano))
	}
}

// receiveUpdate reads an update's data chunks into a vector of n values,
// refusing too many or too few values and non-finite ones.
func receiveUpdate(stream pb.ParticipantService_UploadUpdateServer, firstData []byte, n int, m *metrics) ([]float32, error) {
	delta := make([]float32, n)
	err := receiveWords(stream, firstData, n, m, func(at int, b []byte) error {
		return protocol.DecodeFloat32Into(delta, at, b)
	})
	return delta, err
}

// receiveMasked reads a masked input of n uint32 values (little endian).
func receiveMasked(stream pb.ParticipantService_UploadUpdateServer, firstData []byte, n int, m *metrics) ([]uint32, error) {
	y := make([]uint32, n)
	err := receiveWords(stream, firstData, n, m, func(at int, b []byte) error {
		return protocol.DecodeUint32Into(y, at, b)
	})
	return y, err
}

// receiveWords reads the data chunks of an upload of n four-byte values
// (the first chunk's data, then the rest of the stream), handing each chunk
// to decode with the index of its first value. Too many or too few values,
// a partial value or a second header are refused.
func receiveWords(stream pb.ParticipantService_UploadUpdateServer, firstData []byte, n int, m *metrics, decode func(at int, b []byte) error) error {
	filled := 0
	add := func(b []byte) error {
		if len(b)%4 != 0 || filled+len(b)/4 > n {
			return fmt.Errorf("%w: more than the %d values announced, or a partial value", state.ErrBadUpdate, n)
		}
		if err := decode(filled, b); err != nil {
			return fmt.Errorf("%w: %w", state.ErrBadUpdate, err)
		}
		filled += len(b) / 4
		m.bytesReceived.Add(float64(len(b)))
		return nil
	}
	if err := add(firstData); err != nil {
		return err
	}
	for {
		ch, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if ch.GetHeader() != nil {
			return fmt.Errorf("%w: a second header in one upload", state.ErrBadUpdate)
		}
		if err := add(ch.GetData()); err != nil {
			return err
		}
	}
	if filled != n {
		return fmt.Errorf("%w: %d of %d values received", state.ErrBadUpdate, filled, n)
	}
	return nil
}

// maxSecAggItems bounds the shares or reveals one message may carry: one
// per client of the largest cohort secure aggregation accepts. A client's
// message may come in several parts (protocol.SecAggPartBytes each); the
// round bounds the items of all its parts by the client's neighbours.
const maxSecAggItems = 1 << 16

func (s *participantService) SecAggAdvertise(ctx context.Context, req *pb.SecAggAdvertiseRequest) (*pb.SecAggResponse, error) {
	// The signature is checked outside the leader's lock: the X.509 checks
	// are the costly part, and every other call waits for the lock.
	var checked schedule.CheckedAdvertisement
	return s.secAggCall(ctx, req.GetRound(), func(ctx context.Context, cc pb.ParticipantServiceClient) (*pb.SecAggResponse, error) {
		return cc.SecAggAdvertise(ctx, req)
	}, func(from string, r *schedule.SecureRound) (err error) {
		checked, err = r.CheckAdvertisement(from, req.GetAdvertisement())
		return err
	}, func(_ string, r *schedule.SecureRound) error { return r.Advertise(checked) })
}

func (s *participantService) SecAggShareKeys(ctx context.Context, req *pb.SecAggShareKeysRequest) (*pb.SecAggResponse, error) {
	if len(req.GetShares()) > maxSecAggItems {
		return nil, toStatus(fmt.Errorf("%w: %d shares in one message", state.ErrBadUpdate, len(req.GetShares())))
	}
	return s.secAggCall(ctx, req.GetRound(), func(ctx context.Context, cc pb.ParticipantServiceClient) (*pb.SecAggResponse, error) {
		return cc.SecAggShareKeys(ctx, req)
	}, nil, func(from string, r *schedule.SecureRound) error {
		return s.c.countParts("share_keys", req.GetParts(), r.ShareKeys(from, req.GetShares(), req.GetPart(), req.GetParts()))
	})
}

func (s *participantService) SecAggUnmask(ctx context.Context, req *pb.SecAggUnmaskRequest) (*pb.SecAggResponse, error) {
	if len(req.GetReveals()) > maxSecAggItems {
		return nil, toStatus(fmt.Errorf("%w: %d reveals in one message", state.ErrBadUpdate, len(req.GetReveals())))
	}
	return s.secAggCall(ctx, req.GetRound(), func(ctx context.Context, cc pb.ParticipantServiceClient) (*pb.SecAggResponse, error) {
		return cc.SecAggUnmask(ctx, req)
	}, nil, func(from string, r *schedule.SecureRound) error {
		return s.c.countParts("unmask", req.GetParts(), r.Unmask(from, req.GetReveals(), req.GetPart(), req.GetParts()))
	})
}

// countParts counts a secure-aggregation request part taken (err nil) if
// its message came in parts, and returns err.
func (c *Coordinator) countParts(message string, parts uint32, err error) error {
	if err == nil && parts > 1 {
		c.metrics.secaggParts.WithLabelValues(message).Inc()
	}
	return err
}

// secAggCall authenticates a participant's secure-aggregation message for
// round ref and either forwards it to the leader or delivers it to that
// round here: check (nil: none) without the leader's lock, then deliver
// under it.
func (s *participantService) secAggCall(ctx context.Context, ref *pb.SecAggRound,
	forward func(context.Context, pb.ParticipantServiceClient) (*pb.SecAggResponse, error), check, deliver func(from string, r *schedule.SecureRound) error) (*pb.SecAggResponse, error) {
	id, err := s.c.caller(ctx, pki.RoleParticipant)
	if err != nil {
		return nil, toStatus(err)
	}
	if ref == nil {
		return nil, toStatus(fmt.Errorf("%w: the message names no round", state.ErrBadUpdate))
	}
	if resp, fwd, err := forwardUnary(ctx, s.c, id, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.SecAggResponse, error) {
		return forward(ctx, pb.NewParticipantServiceClient(cc))
	}); fwd {
		return resp, err
	}
	var checkGroup func(*schedule.SecureRound) error
	if check != nil {
		checkGroup = func(r *schedule.SecureRound) error { return check(id.Name, r) }
	}
	if err := s.c.secureMessage(id.Name, ref, checkGroup, func(r *schedule.SecureRound) error { return deliver(id.Name, r) }); err != nil {
		return nil, toStatus(err)
	}
	return &pb.SecAggResponse{}, nil
}

func (s *participantService) RefuseTask(ctx context.Context, req *pb.RefuseTaskRequest) (*pb.RefuseTaskResponse, error) {
	id, err := s.c.caller(ctx, pki.RoleParticipant)
	if err != nil {
		return nil, toStatus(err)
	}
	if resp, fwd, err := forwardUnary(ctx, s.c, id, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.RefuseTaskResponse, error) {
		return pb.NewParticipantServiceClient(cc).RefuseTask(ctx, req)
	}); fwd {
		return resp, err
	}
	if err := s.c.refuseTask(id.Name, req); err != nil {
		return nil, toStatus(err)
	}
	return &pb.RefuseTaskResponse{}, nil
}

func (s *participantService) ReportTaskFailure(ctx context.Context, req *pb.ReportTaskFailureRequest) (*pb.ReportTaskFailureResponse, error) {
	id, err := s.c.caller(ctx, pki.RoleParticipant)
	if err != nil {
		return nil, toStatus(err)
	}
	if resp, fwd, err := forwardUnary(ctx, s.c, id, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.ReportTaskFailureResponse, error) {
		return pb.NewParticipantServiceClient(cc).ReportTaskFailure(ctx, req)
	}); fwd {
		return resp, err
	}
	if err := s.c.taskFailed(id.Name, req); err != nil {
		return nil, toStatus(err)
	}
	return &pb.ReportTaskFailureResponse{}, nil
}

func (s *participantService) ReportEvaluation(ctx context.Context, req *pb.ReportEvaluationRequest) (*pb.ReportEvaluationResponse, error) {
	id, err := s.c.caller(ctx, pki.RoleParticipant)
	if err != nil {
		return nil, toStatus(err)
	}
	if resp, fwd, err := forwardUnary(ctx, s.c, id, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.ReportEvaluationResponse, error) {
		return pb.NewParticipantServiceClient(cc).ReportEvaluation(ctx, req)
	}); fwd {
		return resp, err
	}
	if err := s.c.addEvaluation(id.Name, req); err != nil {
		return nil, toStatus(err)
	}
	return &pb.ReportEvaluationResponse{}, nil
}

// forwardTasks relays the leader's task stream for a participant connected
// to this follower. It ends when either side does; the participant then
// reconnects (to whichever coordinator it reaches).
func (s *participantService) forwardTasks(stream pb.ParticipantService_TasksServer, id principal) error {
	cc, release, err := s.c.leaderRelay()
	if err != nil {
		return toStatus(err)
	}
	defer release()
	ctx, cancel := context.WithCancel(forwardContext(stream.Context(), id))
	defer cancel()
	defer s.c.streams.add(id.Serial, cancel)()
	up, err := pb.NewParticipantServiceClient(cc).Tasks(ctx, &pb.TasksRequest{})
	if err != nil {
		return err
	}
	go func() {
		select {
		case <-s.c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		t, err := up.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := stream.Send(t); err != nil {
			return err
		}
	}
}

// forwardUpload relays an update to the leader chunk by chunk.
func (s *participantService) forwardUpload(stream pb.ParticipantService_UploadUpdateServer, id principal, first *pb.UpdateChunk) error {
	cc, release, err := s.c.leaderRelay()
	if err != nil {
		return toStatus(err)
	}
	defer release()
	up, err := pb.NewParticipantServiceClient(cc).UploadUpdate(forwardContext(stream.Context(), id))
	if err != nil {
		return err
	}
	send := func(ch *pb.UpdateChunk) error {
		if err := up.Send(ch); err != nil {
			if errors.Is(err, io.EOF) {
				_, err = up.CloseAndRecv()
			}
			return err
		}
		return nil
	}
	if err := send(first); err != nil {
		return err
	}
	// The leader bounds the upload (within); when it gives up, its end of
	// the relay closes, and so does this one, however slow the client.
	relayed := make(chan error, 1)
	go func() {
		for {
			ch, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				relayed <- nil
				return
			}
			if err == nil {
				err = send(ch)
			}
			if err != nil {
				relayed <- err
				return
			}
		}
	}()
	select {
	case err := <-relayed:
		if err != nil {
			return err
		}
	case <-up.Context().Done():
		_, err := up.CloseAndRecv()
		return err
	}
	resp, err := up.CloseAndRecv()
	if err != nil {
		return err
	}
	return stream.SendAndClose(resp)
}
