// Package netsim models a wide-area network between regions on loopback,
// so that coordinators and participants started in one process see the
// latency, jitter, bandwidth, loss and partitions of real links between
// countries.
//
// A Network holds regions, the Link between each pair of regions (and
// inside each), and the listening addresses registered in each region.
// Code in a region reaches other addresses through that region's Endpoint:
//
//	n := netsim.New(1)
//	n.SetLink("eu", "us", netsim.Link{Latency: 40 * time.Millisecond, Jitter: 5 * time.Millisecond, Bandwidth: 10 << 20})
//	n.Register(usAddr, "us")
//	eu := n.Endpoint("eu")
//	conn, err := grpc.NewClient(usAddr, grpc.WithContextDialer(eu.GRPCDialer()), …)
//	cfg.Transport = eu.WrapTransport(memberlistTransport)
//	n.Cut("us") // a partition; n.Heal("us") ends it
//
// For a process that cannot take a dialer, Network.Proxy listens on
// loopback and forwards to a target, shaped between two named regions.
//
// # Streams
//
// Only the dialling side shapes a connection, both ways: what it writes
// travels Link(from, to), what it reads travelled Link(to, from), so the
// accepting side needs nothing. Opening the connection takes one modelled
// round trip, as a TCP handshake does.
//
// Write copies its bytes into a queue and returns without waiting for the
// latency; it blocks only when 4 MiB are in flight, like a full socket
// buffer, until the write deadline. A Write is cut into chunks of at most
// 32 KiB, each scheduled on a sender-side clock:
//
//	sendEnd   = max(now, previous sendEnd) + size/Bandwidth
//	deliverAt = max(previous deliverAt, sendEnd + Latency + jitter [+ retransmission timeout if lost])
//
// and a pump writes each chunk to the underlying connection at deliverAt.
// The return direction is scheduled the same way from the moment the bytes
// arrive, and Read hands them over at their deliverAt. Jitter therefore
// never reorders a stream, and a lost chunk delays every chunk behind it,
// as TCP's head-of-line blocking does. Bandwidth limits each connection on
// its own; connections between the same regions do not share it.
//
// Deadlines are kept by the shaped connection itself and fail with an
// error that matches os.ErrDeadlineExceeded and is a net.Error with
// Timeout. Close fails pending Reads and Writes at once and delivers what
// was already written in the background, for at most a second. A cut
// instead closes at once and drops what is queued; Reads and Writes then
// fail with an error matching ErrPartitioned.
//
// # Packets
//
// A wrapped memberlist transport delays each packet by its serialisation,
// the latency and a jitter draw (packets may reorder), or drops it with
// probability Loss, or when the regions are cut, even while in flight.
//
// # What is not modelled
//
// Addresses not registered are reached plainly: not shaped, not counted,
// never cut. A registered address is always reached through a shaped
// connection, even over the zero Link, so that it is counted, can be cut,
// and follows later SetLink calls. Loss does not slow a stream's rate, only delays the lost
// chunk; the handshake suffers no loss. The seed fixes the sequence of
// random draws, but goroutines draw in the order the scheduler runs them,
// so a seed repeats a run's statistics, not its exact timings.
package netsim
