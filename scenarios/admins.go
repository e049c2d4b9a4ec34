package scenarios

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/accord-fl/accord/adminauth"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// admins is the operator's connection to the federation: one client
// connection per coordinator, and calls that move on to the next
// coordinator when one is down or cut off from the leader, as an operator
// would. It is a grpc.ClientConnInterface, so the generated clients run on it.
type admins struct {
	pb.AdminServiceClient
	conns []*grpc.ClientConn

	// leader, if set, returns the index of the coordinator that leads (−1:
	// none known): a coordinator cut off from the others still answers
	// reads from its own, stale, state, so the runner asks the leader.
	leader func() int

	mu      sync.Mutex
	current int
}

// attemptTimeout bounds one call on one coordinator.
const attemptTimeout = 5 * time.Second

// dialAdmins connects an operator with cert to every coordinator at addrs;
// opts add to the connections' options (a dialer, say).
func dialAdmins(addrs []string, cert tls.Certificate, ca *pki.CA, opts ...grpc.DialOption) (*admins, error) {
	a := &admins{}
	for _, addr := range addrs {
		cc, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(cert, ca.Pool()))),
			grpc.WithChainUnaryInterceptor(adminauth.UnaryClientInterceptor(cert))}, opts...)...)
		if err != nil {
			a.close()
			return nil, err
		}
		a.conns = append(a.conns, cc)
	}
	a.AdminServiceClient = pb.NewAdminServiceClient(a)
	return a, nil
}

func (a *admins) close() {
	for _, cc := range a.conns {
		cc.Close()
	}
}

// retryable reports whether another coordinator might answer.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// conn returns the coordinator to try next and its index.
func (a *admins) conn() (*grpc.ClientConn, int) {
	l := -1
	if a.leader != nil {
		l = a.leader()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if l >= 0 && l < len(a.conns) {
		a.current = l
	}
	return a.conns[a.current], a.current
}

// failed moves on from coordinator i.
func (a *admins) failed(i int) {
	a.mu.Lock()
	if a.current == i {
		a.current = (i + 1) % len(a.conns)
	}
	a.mu.Unlock()
}

// Invoke makes a unary call, on each coordinator in turn until one answers.
func (a *admins) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	var err error
	for range 2 * len(a.conns) {
		cc, i := a.conn()
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err = cc.Invoke(actx, method, args, reply, opts...)
		cancel()
		if err == nil || ctx.Err() != nil || !retryable(err) {
			return err
		}
		a.failed(i)
	}
	return fmt.Errorf("no coordinator answered %s: %w", method, err)
}

// NewStream opens a stream on the current coordinator; a caller whose
// stream breaks calls again (pullRetrying).
func (a *admins) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	var err error
	for range len(a.conns) {
		cc, i := a.conn()
		var s grpc.ClientStream
		if s, err = cc.NewStream(ctx, desc, method, opts...); err == nil {
			return s, nil
		}
		if ctx.Err() != nil || !retryable(err) {
			return nil, err
		}
		a.failed(i)
	}
	return nil, err
}

// failStream moves on from the current coordinator after a broken stream.
func (a *admins) failStream() {
	_, i := a.conn()
	a.failed(i)
}
