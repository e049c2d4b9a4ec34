package peers

import (
	"errors"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestRelayPool: streams fill a connection to its limit before another
// opens; a connection is given back to be closed once it carries nothing,
// the last one too; a dial error opens nothing; releases after a drop do
// nothing.
func TestRelayPool(t *testing.T) {
	dials, failDial := 0, false
	rp := &relayPool{limit: 2, dial: func() (*grpc.ClientConn, error) {
		if failDial {
			return nil, errors.New("peer unreachable")
		}
		dials++
		// A client that is never used never connects.
		return grpc.NewClient("passthrough:///peer", grpc.WithTransportCredentials(insecure.NewCredentials()))
	}}
	var held []*relayConn
	for range 5 {
		r, err := rp.acquire()
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, r)
	}
	if dials != 3 || len(rp.conns) != 3 || held[0] != held[1] || held[1] == held[2] || held[4].active != 1 {
		t.Fatalf("5 streams at 2 a connection: %d dials, %d connections; want 3", dials, len(rp.conns))
	}
	if cc := rp.release(held[0]); cc != nil {
		t.Fatal("a connection still carrying a stream was given back")
	}
	// The freed slot is taken before a new connection is opened.
	if r, err := rp.acquire(); err != nil || r != held[0] || dials != 3 {
		t.Fatalf("got %p (err %v) after %d dials; want the first connection's free slot", r, err, dials)
	}
	if cc := rp.release(held[4]); cc == nil || len(rp.conns) != 2 {
		t.Fatalf("an idle connection was kept (%d open)", len(rp.conns))
	} else {
		cc.Close()
	}
	for _, r := range held[1:4] { // the first connection still carries the re-taken slot
		if cc := rp.release(r); cc != nil {
			cc.Close()
		}
	}
	if cc := rp.release(held[0]); cc == nil || len(rp.conns) != 0 {
		t.Fatalf("%d connections open after every stream ended; want none (a former leader keeps none)", len(rp.conns))
	} else {
		cc.Close()
	}
	failDial = true
	if r, err := rp.acquire(); err == nil || r != nil || len(rp.conns) != 0 {
		t.Fatalf("a failed dial: %v, %d connections", err, len(rp.conns))
	}
	failDial = false
	r, err := rp.acquire()
	if err != nil {
		t.Fatal(err)
	}
	for _, cc := range rp.drop() {
		cc.Close()
	}
	if cc := rp.release(r); cc != nil || len(rp.conns) != 0 {
		t.Fatal("a release after the pool was dropped gave back a connection")
	}
}
