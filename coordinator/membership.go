package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/pki"
)

// memberMeta is what each coordinator gossips about itself.
type memberMeta struct {
	Org  string `json:"org"`
	GRPC string `json:"grpc"`
	Raft string `json:"raft"`
}

// member is one coordinator as gossip sees it.
type member struct {
	Name   string
	Meta   memberMeta
	State  string // alive or failed (see gossipAlive)
	Gossip string // its gossip address
}

// membership is this coordinator's view of the others, kept by memberlist.
type membership struct {
	ml     *memberlist.Memberlist
	meta   []byte
	events chan memberlist.NodeEvent

	mu      sync.Mutex
	members map[string]*member
	refused map[string]string // why the leader did not add a member
}

// NodeMeta, NotifyMsg, GetBroadcasts, LocalState and MergeRemoteState make
// membership a memberlist.Delegate that only publishes metadata.
func (m *membership) NodeMeta(limit int) []byte {
	if len(m.meta) > limit {
		return nil
	}
	return m.meta
}
func (m *membership) NotifyMsg([]byte)                           {}
func (m *membership) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (m *membership) LocalState(join bool) []byte                { return nil }
func (m *membership) MergeRemoteState(buf []byte, join bool)     {}

// Gossip states of a member as this coordinator knows them. memberlist
// keeps a node's state to itself (Node.State is never set), so it is
// derived from its events and its list of live members: alive while the
// node is listed, failed once memberlist gave up on it (a crash, a
// partition or a shutdown alike). A coordinator that failed stays a Raft
// voter until an approved RemoveMember takes it out.
const (
	gossipAlive  = "alive"
	gossipFailed = "failed"
)

// eventState is the gossip state a membership event leaves a member in.
func eventState(ev memberlist.NodeEvent) string {
	if ev.Event == memberlist.NodeLeave {
		return gossipFailed
	}
	return gossipAlive
}

// startGossip joins the coordinators' gossip pool, encrypted with the
// federation's gossip key.
func (c *Coordinator) startGossip() error {
	meta, err := json.Marshal(memberMeta{Org: c.org, GRPC: c.Addr(), Raft: c.RaftAddr()})
	if err != nil {
		return err
	}
	c.members = &membership{meta: meta, events: make(chan memberlist.NodeEvent, 256), members: map[string]*member{}}
	mc := memberlist.DefaultLANConfig()
	if c.cfg.FastGossip {
		mc = memberlist.DefaultLocalConfig()
		mc.ProbeInterval, mc.ProbeTimeout, mc.GossipInterval = 200*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
		mc.SuspicionMult = 2
		mc.GossipToTheDeadTime = 2 * time.Second
	}
	if c.cfg.WANGossip {
		mc = memberlist.DefaultWANConfig()
	}
	host, port, err := net.SplitHostPort(c.cfg.GossipAddr)
	if err != nil {
		return fmt.Errorf("gossip address %q: %w", c.cfg.GossipAddr, err)
	}
	mc.Name = c.cfg.Name
	mc.BindAddr = host
	mc.BindPort, _ = strconv.Atoi(port)
	mc.AdvertisePort = mc.BindPort
	mc.SecretKey = c.cfg.GossipKey
	mc.Delegate = c.members
	mc.Events = &memberlist.ChannelEventDelegate{Ch: c.members.events}
	mc.Logger = memberlistLogger(c.log)
	if c.cfg.Network != nil {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: mc.BindPort, Logger: mc.Logger})
		if err != nil {
			return fmt.Errorf("starting gossip on %s: %w", c.cfg.GossipAddr, err)
		}
		mc.Transport = c.cfg.Network.WrapTransport(nt)
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("starting gossip on %s: %w", c.cfg.GossipAddr, err)
	}
	c.members.ml = ml
	c.wg.Go(c.gossipLoop)
	if len(c.cfg.Join) > 0 {
		if _, err := ml.Join(c.cfg.Join); err != nil {
			c.log.Warn("joining gossip; will keep running alone until someone joins us", "join", c.cfg.Join, "err", err)
		}
	}
	// The peers remembered from earlier runs are joined in the background,
	// each on its own, so that unreachable ones (decommissioned, or gone)
	// cost no start-up time.
	for _, a := range c.knownPeers() {
		if slices.Contains(c.cfg.Join, a) || a == c.GossipAddr() {
			continue
		}
		c.wg.Go(func() {
			if _, err := ml.Join([]string{a}); err != nil {
				c.log.Debug("rejoining a remembered peer", "addr", a, "err", err)
			}
		})
	}
	return nil
}

// peersFile, in the data folder, remembers the gossip addresses of the
// other coordinators met, so that a coordinator restarted without --join
// (the first one started, typically) finds them again, as Serf's snapshot
// does: alone in gossip, it would follow Raft but know no peer to fetch
// the models it missed from.
const peersFile = "gossip-peers.json"

// knownPeers returns the remembered gossip addresses (none if there is no
// file or it does not parse).
func (c *Coordinator) knownPeers() []string {
	b, err := os.ReadFile(filepath.Join(c.cfg.DataDir, peersFile))
	if err != nil {
		return nil
	}
	var peers map[string]string
	if json.Unmarshal(b, &peers) != nil {
		return nil
	}
	out := slices.Sorted(maps.Values(peers))
	return slices.Compact(out)
}

// savePeers writes the gossip addresses of the members that are voters in
// the Raft configuration (the file is rewritten, so members that left the
// configuration are dropped, and a gossip member that is not a voter — a
// stranger with the gossip key — is never recorded). Written atomically:
// a crash mid-write leaves the old file.
func (c *Coordinator) savePeers() {
	if c.raft == nil {
		return
	}
	voters, err := c.voters()
	if err != nil {
		return
	}
	peers := map[string]string{}
	c.members.mu.Lock()
	for _, v := range voters {
		if m, ok := c.members.members[string(v.ID)]; ok && m.Gossip != "" && m.Name != c.cfg.Name && len(peers) < maxRememberedPeers {
			peers[m.Name] = m.Gossip
		}
	}
	c.members.mu.Unlock()
	path := filepath.Join(c.cfg.DataDir, peersFile)
	if old, err := os.ReadFile(path); err == nil {
		var was map[string]string
		if json.Unmarshal(old, &was) == nil && maps.Equal(was, peers) {
			return
		}
	}
	b, err := json.Marshal(peers)
	if err == nil {
		err = writeFileSynced(path, b)
	}
	if err != nil {
		c.log.Warn("remembering the peers' gossip addresses", "err", err)
	}
}

// writeFileSynced writes b to path through a synced temporary file and a
// rename.
func writeFileSynced(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// maxRememberedPeers bounds the peers file (a cluster has at most a few
// coordinators; gossip from a hostile member cannot grow it without end).
const maxRememberedPeers = 64

// GossipAddr is where other coordinators reach this one's gossip.
func (c *Coordinator) GossipAddr() string {
	if c.members == nil || c.members.ml == nil {
		return c.cfg.GossipAddr
	}
	n := c.members.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// gossipLoop reads membership events in one place.
func (c *Coordinator) gossipLoop() {
	// Voters join the Raft configuration after their gossip event: the
	// peers file is brought up to date now and then too.
	peersTick := time.NewTicker(2 * time.Second)
	defer peersTick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-peersTick.C:
			c.savePeers()
		case ev := <-c.members.events:
			var meta memberMeta
			if err := json.Unmarshal(ev.Node.Meta, &meta); err != nil {
				continue // not one of ours
			}
			c.members.mu.Lock()
			c.members.members[ev.Node.Name] = &member{Name: ev.Node.Name, Meta: meta, State: eventState(ev),
				Gossip: net.JoinHostPort(ev.Node.Addr.String(), strconv.Itoa(int(ev.Node.Port)))}
			c.members.mu.Unlock()
			c.log.Info("member event", "member", ev.Node.Name, "state", eventState(ev))
			c.maybeBootstrap()
			c.savePeers()
			c.kickLeader()
		}
	}
}

// memberList returns the known coordinators, by name, each with memberlist's
// current view of its state.
func (c *Coordinator) memberList() []member {
	if c.members == nil {
		return nil
	}
	live := map[string]bool{}
	if c.members.ml != nil {
		for _, n := range c.members.ml.Members() {
			live[n.Name] = true
		}
	}
	c.members.mu.Lock()
	defer c.members.mu.Unlock()
	var out []member
	for _, m := range c.members.members {
		mm := *m
		if live[m.Name] {
			mm.State = gossipAlive
		} else if c.members.ml != nil {
			mm.State = gossipFailed // memberlist no longer lists it
		}
		out = append(out, mm)
	}
	slices.SortFunc(out, func(a, b member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// memberByName returns a known coordinator's metadata.
func (c *Coordinator) memberByName(name string) (memberMeta, bool) {
	if c.members == nil {
		return memberMeta{}, false
	}
	c.members.mu.Lock()
	defer c.members.mu.Unlock()
	m, ok := c.members.members[name]
	if !ok {
		return memberMeta{}, false
	}
	return m.Meta, true
}

// coordinatorAddrs are the gRPC addresses of every known coordinator, this
// one first, for participants to fail over to.
func (c *Coordinator) coordinatorAddrs() []string {
	out := []string{c.Addr()}
	for _, m := range c.memberList() {
		if !slices.Contains(out, m.Meta.GRPC) {
			out = append(out, m.Meta.GRPC)
		}
	}
	return out
}

// maybeBootstrap forms the cluster once BootstrapExpect coordinators have
// gossiped, if this node has no Raft state: every one of them bootstraps
// with the same configuration, as Consul and Nomad do.
func (c *Coordinator) maybeBootstrap() {
	if c.cfg.BootstrapExpect <= 0 || c.bootstrapped.Load() {
		return
	}
	var servers []raft.Server
	for _, m := range c.memberList() {
		if m.State == gossipAlive {
			servers = append(servers, raft.Server{ID: raft.ServerID(m.Name), Address: raft.ServerAddress(m.Meta.Raft), Suffrage: raft.Voter})
		}
	}
	if len(servers) < c.cfg.BootstrapExpect {
		return
	}
	c.bootstrapped.Store(true)
	f := c.raft.BootstrapCluster(raft.Configuration{Servers: servers})
	if err := f.Error(); err != nil && err != raft.ErrCantBootstrap {
		c.log.Error("bootstrapping raft", "err", err)
		return
	}
	c.log.Info("bootstrapped raft", "servers", len(servers))
}

// reconcileMembers runs on the leader: a live coordinator that gossips but is
// not in the Raft configuration is added as a voter, if the federation's
// policy lets it join (see mayJoin) and its Raft port presents a
// certificate with its name; one that left gracefully, or that an approved
// proposal excluded, is removed. One that failed is left in place (an
// operator removes it), so a flapping network never shrinks the quorum by
// itself.
func (c *Coordinator) reconcileMembers() {
	if c.members == nil {
		return
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return
	}
	inConfig := map[raft.ServerID]bool{}
	for _, s := range f.Configuration().Servers {
		inConfig[s.ID] = true
		if name := string(s.ID); c.fsm.MemberRule(name) == state.MemberExcluded {
			if name == c.cfg.Name {
				c.log.Info("this coordinator was excluded by an approved proposal; handing over leadership")
				_ = c.raft.LeadershipTransfer().Error()
				return
			}
			if err := c.removeServer(name); err != nil {
				c.log.Warn("removing an excluded coordinator", "member", name, "err", err)
			}
		}
	}
	for _, m := range c.memberList() {
		id := raft.ServerID(m.Name)
		if m.State != gossipAlive || inConfig[id] {
			continue
		}
		if err := c.mayJoin(m); err != nil {
			c.refuseJoin(m.Name, err)
			continue
		}
		c.log.Info("adding coordinator to raft", "member", m.Name, "raft", m.Meta.Raft)
		if err := c.raft.AddVoter(id, raft.ServerAddress(m.Meta.Raft), 0, c.cfg.ApplyTimeout).Error(); err != nil {
			c.log.Warn("adding voter", "member", m.Name, "err", err)
		}
	}
}

// mayJoin decides whether a coordinator that gossips may become a voter:
// no approved proposal excluded it; under a policy that requires approvals,
// an approved AddMember admitted it; and its Raft port presents a
// coordinator certificate, not revoked, whose name is the name it gossips
// (its Raft server ID).
func (c *Coordinator) mayJoin(m member) error {
	switch rule := c.fsm.MemberRule(m.Name); {
	case rule == state.MemberExcluded:
		return fmt.Errorf("%w: an approved proposal removed %s; an approved add-member lets it back", state.ErrForbidden, m.Name)
	case rule != state.MemberAdmitted && c.fsm.Policy().Governed():
		return fmt.Errorf("%w: the federation's policy requires an approved add-member for %s", state.ErrForbidden, m.Name)
	}
	cfg := pki.ClientTLS(c.cfg.Cert, c.cfg.CA)
	cfg.VerifyConnection = c.links.VerifyNamed(m.Name)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := c.dialPeer(ctx, m.Meta.Raft, cfg)
	if err != nil {
		return fmt.Errorf("checking %s's identity at %s: %w", m.Name, m.Meta.Raft, err)
	}
	conn.Close()
	return nil
}

// refuseJoin logs (once per reason) and remembers why a coordinator was
// not let into the Raft configuration.
func (c *Coordinator) refuseJoin(name string, err error) {
	c.members.mu.Lock()
	if c.members.refused == nil {
		c.members.refused = map[string]string{}
	}
	changed := c.members.refused[name] != err.Error()
	c.members.refused[name] = err.Error()
	c.members.mu.Unlock()
	if changed {
		c.log.Warn("coordinator not admitted to raft", "member", name, "err", err)
	}
}

// JoinRefusals says, by name, why this coordinator (while leading) refused
// to add coordinators to the Raft configuration.
func (c *Coordinator) JoinRefusals() map[string]string {
	if c.members == nil {
		return nil
	}
	c.members.mu.Lock()
	defer c.members.mu.Unlock()
	return maps.Clone(c.members.refused)
}
