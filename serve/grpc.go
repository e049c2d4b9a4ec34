package serve

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	pb "github.com/accord-fl/accord/protocol/accordpb"
	"github.com/accord-fl/accord/protocol/inferencepb"
)

// pbAdmin is the coordinators' admin service on conn.
func pbAdmin(conn *grpc.ClientConn) federation { return pb.NewAdminServiceClient(conn) }

// grpcAuth admits a call whose peer's certificate is a consumer's, not
// revoked now.
func (s *Server) grpcAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	var state *tls.ConnectionState
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			state = &ti.State
		}
	}
	err := s.authorize(state)
	if err != nil {
		s.log.Debug("serve: call refused", "method", info.FullMethod, "err", err)
		return nil, toStatus(err)
	}
	return handler(ctx, req)
}

// grpcService implements the Open Inference Protocol's
// GRPCInferenceService.
type grpcService struct {
	inferencepb.UnimplementedGRPCInferenceServiceServer
	s *Server
}

func (g *grpcService) ServerLive(context.Context, *inferencepb.ServerLiveRequest) (*inferencepb.ServerLiveResponse, error) {
	return &inferencepb.ServerLiveResponse{Live: true}, nil
}

func (g *grpcService) ServerReady(context.Context, *inferencepb.ServerReadyRequest) (*inferencepb.ServerReadyResponse, error) {
	return &inferencepb.ServerReadyResponse{Ready: g.s.Ready()}, nil
}

func (g *grpcService) ServerMetadata(context.Context, *inferencepb.ServerMetadataRequest) (*inferencepb.ServerMetadataResponse, error) {
	return &inferencepb.ServerMetadataResponse{Name: "accord", Version: "2"}, nil
}

func (g *grpcService) ModelReady(_ context.Context, req *inferencepb.ModelReadyRequest) (*inferencepb.ModelReadyResponse, error) {
	_, _, err := g.s.endpointFor(req.GetName(), req.GetVersion())
	return &inferencepb.ModelReadyResponse{Ready: err == nil}, nil
}

func (g *grpcService) ModelMetadata(_ context.Context, req *inferencepb.ModelMetadataRequest) (*inferencepb.ModelMetadataResponse, error) {
	_, m, err := g.s.endpointFor(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, toStatus(err)
	}
	meta := metadata(req.GetName(), m)
	out := &inferencepb.ModelMetadataResponse{Name: meta.Name, Versions: meta.Versions, Platform: meta.Platform}
	for _, t := range meta.Inputs {
		out.Inputs = append(out.Inputs, &inferencepb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
	}
	for _, t := range meta.Outputs {
		out.Outputs = append(out.Outputs, &inferencepb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
	}
	return out, nil
}

func (g *grpcService) ModelInfer(ctx context.Context, req *inferencepb.ModelInferRequest) (*inferencepb.ModelInferResponse, error) {
	start := time.Now()
	resp, err := g.modelInfer(ctx, req)
	g.s.metrics.requests.WithLabelValues("grpc", grpcCode(err).String()).Inc()
	g.s.metrics.latency.WithLabelValues("grpc").Observe(time.Since(start).Seconds())
	return resp, toStatus(err)
}

func (g *grpcService) modelInfer(ctx context.Context, req *inferencepb.ModelInferRequest) (*inferencepb.ModelInferResponse, error) {
	ep, m, err := g.s.endpointFor(req.GetModelName(), req.GetModelVersion())
	if err != nil {
		return nil, err
	}
	if len(req.GetInputs()) != 1 {
		return nil, fmt.Errorf("%w: %d inputs: want one, %q", ErrBadRequest, len(req.GetInputs()), inputName)
	}
	for _, o := range req.GetOutputs() {
		if o.GetName() != outputName {
			return nil, fmt.Errorf("%w: output %q requested: the model has one output, %q", ErrBadRequest, o.GetName(), outputName)
		}
	}
	in := req.GetInputs()[0]
	switch {
	case in.GetName() != inputName:
		return nil, fmt.Errorf("%w: input %q: the model's input is %q", ErrBadRequest, in.GetName(), inputName)
	case in.GetDatatype() != fp32:
		return nil, fmt.Errorf("%w: input datatype %q: want %s", ErrBadRequest, in.GetDatatype(), fp32)
	case len(req.GetRawInputContents()) > 1:
		return nil, fmt.Errorf("%w: %d raw_input_contents for one input", ErrBadRequest, len(req.GetRawInputContents()))
	}
	raw := len(req.GetRawInputContents()) == 1
	var x []float32
	if raw {
		if in.GetContents() != nil && len(in.GetContents().GetFp32Contents()) > 0 {
			return nil, fmt.Errorf("%w: input %q has both contents and raw_input_contents", ErrBadRequest, inputName)
		}
		b := req.GetRawInputContents()[0]
		if len(b)%4 != 0 {
			return nil, fmt.Errorf("%w: raw_input_contents of %d bytes is not FP32 values", ErrBadRequest, len(b))
		}
		x = make([]float32, len(b)/4)
		for i := range x {
			x[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	} else {
		c := in.GetContents()
		if c != nil && (len(c.GetFp64Contents()) > 0 || len(c.GetIntContents()) > 0 || len(c.GetInt64Contents()) > 0 ||
			len(c.GetUintContents()) > 0 || len(c.GetUint64Contents()) > 0 || len(c.GetBoolContents()) > 0 || len(c.GetBytesContents()) > 0) {
			return nil, fmt.Errorf("%w: FP32 input with values in another contents field: use fp32_contents", ErrBadRequest)
		}
		x = c.GetFp32Contents()
	}
	res, err := g.s.infer(ctx, ep, m, x, in.GetShape())
	if err != nil {
		return nil, err
	}
	lm := res.model
	out := &inferencepb.ModelInferResponse_InferOutputTensor{
		Name: outputName, Datatype: fp32, Shape: []int64{int64(len(res.out) / lm.classes), int64(lm.classes)},
	}
	resp := &inferencepb.ModelInferResponse{
		ModelName: ep.name, ModelVersion: strconv.FormatUint(uint64(lm.round), 10), Id: req.GetId(),
		Outputs: []*inferencepb.ModelInferResponse_InferOutputTensor{out},
		Parameters: map[string]*inferencepb.InferParameter{
			"accord_job":    {ParameterChoice: &inferencepb.InferParameter_StringParam{StringParam: lm.job}},
			"accord_round":  {ParameterChoice: &inferencepb.InferParameter_Int64Param{Int64Param: int64(lm.round)}},
			"accord_digest": {ParameterChoice: &inferencepb.InferParameter_StringParam{StringParam: lm.digest}},
		},
	}
	if raw {
		b := make([]byte, 4*len(res.out))
		for i, v := range res.out {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		resp.RawOutputContents = [][]byte{b}
	} else {
		out.Contents = &inferencepb.InferTensorContents{Fp32Contents: res.out}
	}
	return resp, nil
}
