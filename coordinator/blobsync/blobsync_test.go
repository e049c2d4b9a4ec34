package blobsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
	"github.com/accord-fl/accord/store"
)

// node is one coordinator of a test cluster: a Badger store served by a
// real gRPC ClusterService on loopback.
type node struct {
	name  string
	store *store.Store
	srv   *grpc.Server
	addr  string
	conn  *grpc.ClientConn
}

// cluster is the nodes, their names in order, and which are down.
type cluster struct {
	t     *testing.T
	nodes map[string]*node
	order []string
}

func newCluster(t *testing.T, names ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, nodes: map[string]*node{}, order: names}
	for _, name := range names {
		c.nodes[name] = c.start(name, nil)
	}
	return c
}

// start serves a store on loopback; st, if set, is served instead of the
// node's own (a lying peer).
func (c *cluster) start(name string, st Store) *node {
	c.t.Helper()
	s, err := store.Open(c.t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { s.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	n := &node{name: name, store: s, srv: grpc.NewServer(), addr: ln.Addr().String()}
	if st == nil {
		st = s
	}
	pb.RegisterClusterServiceServer(n.srv, &Server{Store: st, Authorize: func(context.Context) error { return nil },
		Status: func(err error) error {
			if errors.Is(err, state.ErrBadUpdate) {
				return status.Error(codes.InvalidArgument, err.Error())
			}
			return status.Error(codes.NotFound, err.Error())
		}})
	go n.srv.Serve(ln)
	c.t.Cleanup(n.srv.Stop)
	if n.conn, err = grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { n.conn.Close() })
	return n
}

// syncer is node self's Syncer, whose peers are the others in order.
func (c *cluster) syncer(self string) *Syncer {
	return New(self, c.nodes[self].store, clusterView{c, self}, 5*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

type clusterView struct {
	c    *cluster
	self string
}

func (v clusterView) Conn(name string) (grpc.ClientConnInterface, error) {
	n := v.c.nodes[name]
	if n == nil {
		return nil, fmt.Errorf("no coordinator %s", name)
	}
	return n.conn, nil
}

func (v clusterView) Voters() ([]string, error) { return v.c.order, nil }

func (v clusterView) Peers() []string {
	var out []string
	for _, name := range v.c.order {
		if name != v.self {
			out = append(out, name)
		}
	}
	return out
}

func (c *cluster) stop(name string) { c.nodes[name].srv.Stop() }

func (c *cluster) has(name, digest string) bool {
	ok, err := c.nodes[name].store.HasBlob(digest)
	if err != nil {
		c.t.Fatal(err)
	}
	return ok
}

// blob is a model of 300,000 parameters (several chunks), different for
// each seed.
func blob(seed float32) []byte {
	v := make([]float32, 300_000)
	for i := range v {
		v[i] = seed + float32(i)
	}
	return protocol.EncodeFloat32(v)
}

// TestReplicateReachesAQuorum: a blob is stored on a quorum of the voters
// before its digest is returned; one voter of three down does not stop
// it, two do, with an error that says how far it got.
func TestReplicateReachesAQuorum(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	a := c.syncer("a")
	d, err := a.Replicate(t.Context(), blob(1))
	if err != nil {
		t.Fatal(err)
	}
	if !c.has("a", d) || !c.has("b", d) && !c.has("c", d) {
		t.Fatalf("%s is on a %v, b %v, c %v; want a and one more", d, c.has("a", d), c.has("b", d), c.has("c", d))
	}
	c.stop("c")
	if d, err = a.Replicate(t.Context(), blob(2)); err != nil || !c.has("b", d) {
		t.Fatalf("with c down: %v (on b: %v); want the quorum of a and b", err, err == nil && c.has("b", d))
	}
	c.stop("b")
	_, err = a.Replicate(t.Context(), blob(3))
	if err == nil || !strings.Contains(err.Error(), "reached 0 of the 1 other coordinators a quorum needs") {
		t.Fatalf("with b and c down: %v; want an error saying the quorum was not reached", err)
	}
}

// liar serves, for every digest, a blob that does not hash to it.
type liar struct{ Store }

func (l liar) GetBlob(string) ([]byte, error) { return blob(99), nil }

// TestFetchChecksWhatPeersSend: a blob this coordinator lacks is fetched
// from the first peer that has it and stored; a peer that sends other
// bytes is passed over; nobody having it is store.ErrNotFound.
func TestFetchChecksWhatPeersSend(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	c.nodes["b"] = c.start("b", liar{})
	want := blob(1)
	d, err := c.nodes["c"].store.PutBlob(want)
	if err != nil {
		t.Fatal(err)
	}
	a := c.syncer("a")
	got, err := a.Blob(t.Context(), d)
	if err != nil || !bytes.Equal(got, want) || !c.has("a", d) {
		t.Fatalf("fetched %d bytes (%v), stored %v; want c's blob, stored", len(got), err, c.has("a", d))
	}
	c.stop("c")
	_, err = a.Fetch(t.Context(), protocol.Digest(blob(2)))
	if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "no coordinator could supply it") {
		t.Fatalf("a blob nobody holds: %v; want store.ErrNotFound", err)
	}
}

// TestPutBlobRefusesContentOfAnotherDigest: a pushed blob that does not
// hash to its digest is refused as InvalidArgument and not stored.
func TestPutBlobRefusesContentOfAnotherDigest(t *testing.T) {
	c := newCluster(t, "a")
	stream, err := pb.NewClusterServiceClient(c.nodes["a"].conn).PutBlob(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	claimed := protocol.Digest(blob(1))
	for _, ch := range protocol.Chunks(blob(2)) {
		if stream.Send(&pb.BlobChunk{Digest: claimed, Data: ch}) != nil {
			break
		}
	}
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a blob under another's digest: %v; want InvalidArgument", err)
	}
	if c.has("a", claimed) || c.has("a", protocol.Digest(blob(2))) {
		t.Fatal("the refused blob was stored")
	}
}

// TestRunFetchesWhatJobsName: the loop fetches the models a job names
// that this coordinator lacks, and again when the job's view changes.
func TestRunFetchesWhatJobsName(t *testing.T) {
	c := newCluster(t, "a", "b")
	d0, err := c.nodes["b"].store.PutBlob(blob(1))
	if err != nil {
		t.Fatal(err)
	}
	views := make(chan map[string]*state.Job, 1)
	current := map[string]*state.Job{"j": {ID: "j", InitialDigest: d0}}
	jobs := func() map[string]*state.Job {
		select {
		case v := <-views:
			current = v
		default:
		}
		return current
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); c.syncer("a").Run(ctx, 10*time.Millisecond, jobs) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { return c.has("a", d0) })
	d1, err := c.nodes["b"].store.PutBlob(blob(2))
	if err != nil {
		t.Fatal(err)
	}
	views <- map[string]*state.Job{"j": {ID: "j", InitialDigest: d1}}
	waitFor(t, func() bool { return c.has("a", d1) })
}

// waitFor waits up to 10 s for cond, checking every 10 ms.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
	}
}
