package scenarios

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
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

	mu         sync.Mutex
	current    int          // the coordinator that answered last
	streamFrom int          // the coordinator of the last stream opened
	broken     map[int]bool // where the last stream broke (failStream)
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

// order is the coordinators to try for one call: the leader first (when
// known), then the one that answered last, then the others; those in
// skip (failed earlier in the call, or a broken stream's) go last.
func (a *admins) order(skip map[int]bool) []int {
	l := -1
	if a.leader != nil {
		l = a.leader()
	}
	a.mu.Lock()
	first := []int{a.current}
	a.mu.Unlock()
	if l >= 0 && l < len(a.conns) {
		first = []int{l, first[0]}
	}
	var out, later []int
	for _, i := range append(first, seq(len(a.conns))...) {
		switch {
		case slices.Contains(out, i) || slices.Contains(later, i):
		case skip[i]:
			later = append(later, i)
		default:
			out = append(out, i)
		}
	}
	return append(out, later...)
}

// answered remembers the coordinator that answered.
func (a *admins) answered(i int) {
	a.mu.Lock()
	a.current = i
	a.mu.Unlock()
}

// Invoke makes a unary call on the leader, or on each other coordinator in
// turn until one answers; each is tried once (the list twice over).
func (a *admins) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	var err error
	failed := map[int]bool{}
	for range 2 {
		for _, i := range a.order(failed) {
			actx, cancel := context.WithTimeout(ctx, attemptTimeout)
			err = a.conns[i].Invoke(actx, method, args, reply, opts...)
			cancel()
			if err == nil {
				a.answered(i)
				return nil
			}
			if ctx.Err() != nil || !retryable(err) {
				return err
			}
			failed[i] = true
		}
	}
	return fmt.Errorf("no coordinator answered %s: %w", method, err)
}

// NewStream opens a stream on the first coordinator that accepts it, the
// leader first; a caller whose stream breaks calls failStream and again.
func (a *admins) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	var err error
	for _, i := range a.order(a.brokenStreams()) {
		var s grpc.ClientStream
		if s, err = a.conns[i].NewStream(ctx, desc, method, opts...); err == nil {
			a.mu.Lock()
			a.streamFrom = i
			a.mu.Unlock()
			return s, nil
		}
		if ctx.Err() != nil || !retryable(err) {
			return nil, err
		}
	}
	return nil, err
}

// failStream marks the coordinator of the last stream broken, so that the
// next stream is tried elsewhere first; brokenStreams returns and clears
// the mark.
func (a *admins) failStream() {
	a.mu.Lock()
	a.broken = map[int]bool{a.streamFrom: true}
	a.mu.Unlock()
}

func (a *admins) brokenStreams() map[int]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.broken
	a.broken = nil
	return b
}
