package blobsync

import (
	"context"
	"errors"
	"fmt"

	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// Server is the ClusterService the other coordinators call to push and
// fetch blobs.
type Server struct {
	pb.UnimplementedClusterServiceServer
	// Store holds this coordinator's blobs.
	Store Store
	// Authorize refuses a caller that may not push or fetch blobs (one
	// that is not a coordinator of the federation), with a gRPC status.
	Authorize func(ctx context.Context) error
	// Status turns an error into the gRPC status the caller sees.
	Status func(error) error
}

// PutBlob stores a blob a coordinator pushes, once it hashes to the digest
// its first chunk names.
func (s *Server) PutBlob(stream pb.ClusterService_PutBlobServer) error {
	if err := s.Authorize(stream.Context()); err != nil {
		return err
	}
	var digest string // named by the first chunk
	blob, err := protocol.ReceiveBlob(func() ([]byte, error) {
		ch, err := stream.Recv()
		if digest == "" {
			digest = ch.GetDigest()
		}
		return ch.GetData(), err
	}, "")
	if err == nil && protocol.Digest(blob) != digest {
		err = fmt.Errorf("%w: content does not hash to %s", protocol.ErrBlob, digest)
	}
	if errors.Is(err, protocol.ErrBlob) {
		return s.Status(fmt.Errorf("%w: %w", state.ErrBadUpdate, err))
	}
	if err != nil {
		return err
	}
	if err := s.Store.PutCheckedBlob(digest, blob); err != nil {
		return s.Status(err)
	}
	return stream.SendAndClose(&pb.PutBlobResponse{})
}

// GetBlob sends a stored blob in chunks.
func (s *Server) GetBlob(req *pb.GetBlobRequest, stream pb.ClusterService_GetBlobServer) error {
	if err := s.Authorize(stream.Context()); err != nil {
		return err
	}
	blob, err := s.Store.GetBlob(req.GetDigest())
	if err != nil {
		return s.Status(err)
	}
	for _, ch := range protocol.Chunks(blob) {
		if err := stream.Send(&pb.BlobChunk{Digest: req.GetDigest(), Data: ch}); err != nil {
			return err
		}
	}
	return nil
}
