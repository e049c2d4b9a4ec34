package scenarios

import (
	"context"
	"fmt"
	"sync"

	pb "github.com/accord-fl/accord/protocol/accordpb"

	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/netsim"
)

// inProcess is the in-process runner's coordinators: each with its config
// (to restart it), its region, and whether it runs.
type inProcess struct {
	net     *netsim.Network
	mu      sync.Mutex                 // guards nodes and configs (a restart rewrites its config's addresses)
	nodes   []*coordinator.Coordinator // nil while killed
	configs []coordinator.Config
	region  []string
	jobID   string
}

func (p *inProcess) index(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.indexLocked(name)
}

// indexLocked is index for a caller that holds p.mu.
func (p *inProcess) indexLocked(name string) int {
	for i, c := range p.configs {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// start starts coordinator i on its config and places its addresses in
// its region.
func (p *inProcess) start(ctx context.Context, i int) error {
	p.mu.Lock()
	cfg := p.configs[i]
	p.mu.Unlock()
	c, err := coordinator.New(cfg)
	if err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	for _, a := range []string{c.Addr(), c.RaftAddr(), c.GossipAddr()} {
		p.net.Register(a, p.region[i])
	}
	// A restart binds the same addresses: Raft's configuration names them.
	p.mu.Lock()
	p.configs[i].GRPCAddr, p.configs[i].RaftAddr, p.configs[i].GossipAddr = c.Addr(), c.RaftAddr(), c.GossipAddr()
	p.nodes[i] = c
	p.mu.Unlock()
	return nil
}

// running returns the coordinators that run.
func (p *inProcess) running() []*coordinator.Coordinator {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*coordinator.Coordinator
	for _, c := range p.nodes {
		if c != nil {
			out = append(out, c)
		}
	}
	return out
}

func (p *inProcess) shutdown() {
	for _, c := range p.running() {
		c.Shutdown()
	}
}

func (p *inProcess) leader() string {
	for _, c := range p.running() {
		if c.IsLeader() && !p.net.IsCut(p.region[p.index(c.Name())], "") {
			return c.Name()
		}
	}
	// A cut-off leader that has not yet stepped down still says it leads;
	// prefer one that can reach the others, else take it.
	for _, c := range p.running() {
		if c.IsLeader() {
			return c.Name()
		}
	}
	return ""
}

func (p *inProcess) regionOf(name string) string {
	if i := p.index(name); i >= 0 {
		return p.region[i]
	}
	return ""
}

func (p *inProcess) kill(name string) error {
	i := p.index(name)
	p.mu.Lock()
	c := p.nodes[i]
	p.nodes[i] = nil
	p.mu.Unlock()
	if c == nil {
		return fmt.Errorf("%s is not running", name)
	}
	return c.Crash()
}

// restart starts a killed coordinator again on its config: the first one
// started joined nobody's gossip, and finds its peers again from the
// addresses it remembered (coordinator's gossip-peers.json), as a real
// coordinator restarted with its original flags must.
func (p *inProcess) restart(ctx context.Context, name string) error {
	return p.start(ctx, p.index(name))
}

func (p *inProcess) cut(region string)  { p.net.Cut(region) }
func (p *inProcess) heal(region string) { p.net.Heal(region) }

func (p *inProcess) committed(name string) int {
	p.mu.Lock()
	c := p.nodes[p.indexLocked(name)]
	jobID := p.jobID
	p.mu.Unlock()
	if c == nil || jobID == "" {
		return 0
	}
	j, err := c.FSM().Job(jobID)
	if err != nil {
		return 0
	}
	n := 0
	for _, r := range j.Rounds {
		if r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED {
			n++
		}
	}
	return n
}

func (p *inProcess) names() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, len(p.configs))
	for i, c := range p.configs {
		out[i] = c.Name
	}
	return out
}

func (p *inProcess) live(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nodes[p.indexLocked(name)] != nil
}
