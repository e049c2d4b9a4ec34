package netsim

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// pair is a direction of travel: from one region to another.
type pair [2]string

// Network is a set of regions and the links between them. Its methods are
// safe for concurrent use; link changes apply to live connections from
// their next chunk on.
type Network struct {
	mu      sync.Mutex
	dflt    Link
	links   map[pair]Link
	regions map[string]string // listening address → region
	cut     map[string]bool
	conns   map[*shapedConn]struct{}
	bytes   map[pair]uint64

	rngMu sync.Mutex
	rng   *rand.Rand
}

// New returns a network with no regions, no links and the zero (loopback)
// default link. seed drives the jitter and loss draws; as connections draw
// in whatever order the scheduler runs them, a seed makes a run's
// statistics repeatable, not its exact timings.
func New(seed uint64) *Network {
	return &Network{
		links:   map[pair]Link{},
		regions: map[string]string{},
		cut:     map[string]bool{},
		conns:   map[*shapedConn]struct{}{},
		bytes:   map[pair]uint64{},
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
}

// SetDefault sets the link for the pairs of regions with none set. It
// panics if l is not valid (see Link.Validate).
func (n *Network) SetDefault(l Link) {
	mustValidate("SetDefault", l)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dflt = l
}

// SetLink sets the link both ways between regions a and b; a == b sets the
// link inside region a. It panics if l is not valid (see Link.Validate).
func (n *Network) SetLink(a, b string, l Link) {
	mustValidate("SetLink", l)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.links[pair{a, b}] = l
	n.links[pair{b, a}] = l
}

// mustValidate panics on an invalid link: links are set by the program,
// never by a peer.
func mustValidate(op string, l Link) {
	if err := l.Validate(); err != nil {
		panic(fmt.Sprintf("netsim: %s: %v", op, err))
	}
}

// Link returns the link that traffic from region from to region to travels.
func (n *Network) Link(from, to string) Link {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.linkLocked(from, to)
}

func (n *Network) linkLocked(from, to string) Link {
	if l, ok := n.links[pair{from, to}]; ok {
		return l
	}
	return n.dflt
}

// Register places the listening address addr ("127.0.0.1:port") in region.
// Dials and packets to addr are shaped by the link towards region; those
// to unregistered addresses go unshaped, uncounted and never cut. The
// address is matched as written, so register it as dialers spell it.
func (n *Network) Register(addr, region string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.regions[addr] = region
}

// regionOf returns the region addr was registered in.
func (n *Network) regionOf(addr string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	r, ok := n.regions[addr]
	return r, ok
}

// Cut partitions region from every other region: live connections crossing
// the cut are closed at once (queued bytes are lost), new dials across it
// fail with ErrPartitioned and packets across it are dropped, including
// those already in flight. Traffic inside the region still flows.
func (n *Network) Cut(region string) {
	n.mu.Lock()
	n.cut[region] = true
	var victims []*shapedConn
	for c := range n.conns {
		if n.isCutLocked(c.from, c.to) {
			victims = append(victims, c)
		}
	}
	n.mu.Unlock()
	for _, c := range victims {
		c.abort(partitionError(c.from, c.to))
	}
}

// Heal ends region's partition. Connections closed by the cut stay closed.
func (n *Network) Heal(region string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.cut, region)
}

// IsCut reports whether traffic from region from to region to is cut off.
func (n *Network) IsCut(from, to string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.isCutLocked(from, to)
}

func (n *Network) isCutLocked(from, to string) bool {
	return from != to && (n.cut[from] || n.cut[to])
}

func partitionError(from, to string) error {
	return fmt.Errorf("%s and %s: %w", from, to, ErrPartitioned)
}

// Bytes returns the bytes carried per (from region, to region), counting
// both directions of every shaped connection and every shaped packet, as
// delivered: what a dialler writes once it is written to the far side's
// socket, what it receives once Read returns it, a packet once it is
// handed to the underlying transport. Registered addresses are counted
// even over a zero Link; unregistered ones never are.
func (n *Network) Bytes() map[[2]string]uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[[2]string]uint64, len(n.bytes))
	for p, b := range n.bytes {
		out[p] = b
	}
	return out
}

// count adds size delivered bytes to the pair (from, to).
func (n *Network) count(from, to string, size int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.bytes[pair{from, to}] += uint64(size)
}

// draw rolls the jitter and loss of one chunk or packet on l.
func (n *Network) draw(l Link) draw {
	if l.Jitter <= 0 && l.Loss <= 0 {
		return draw{}
	}
	n.rngMu.Lock()
	defer n.rngMu.Unlock()
	var d draw
	if l.Jitter > 0 {
		d.jitter = time.Duration(n.rng.Int64N(int64(l.Jitter) + 1))
	}
	if l.Loss > 0 {
		d.lost = n.rng.Float64() < l.Loss
	}
	return d
}

// track records a live shaped connection so that a cut can close it; false
// if its regions are cut off from each other.
func (n *Network) track(c *shapedConn) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.isCutLocked(c.from, c.to) {
		return false
	}
	n.conns[c] = struct{}{}
	return true
}

func (n *Network) untrack(c *shapedConn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.conns, c)
}

// Endpoint returns the view of the network from region: its dialers and
// transports shape what they send and receive by region's links.
func (n *Network) Endpoint(region string) *Endpoint {
	return &Endpoint{n: n, region: region}
}
