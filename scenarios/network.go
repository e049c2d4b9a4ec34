package scenarios

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/netsim"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// RegionSpec is a country or region: its time zone and, optionally, the
// local hours its institutions are online.
type RegionSpec struct {
	Name string `yaml:"name"`
	// TimeZone is an IANA zone ("Europe/Berlin").
	TimeZone string `yaml:"timezone"`
	// WorkingHours, [from, to] in local hours (to < from: past midnight),
	// makes the region's institutions available for rounds only then; the
	// job's simulated_clock says what time each round is.
	WorkingHours []uint32 `yaml:"working_hours"`
}

// availability is what the region's participants declare (nil: always).
func (r RegionSpec) availability() *pb.Availability {
	if len(r.WorkingHours) != 2 {
		return nil
	}
	return &pb.Availability{TimeZone: r.TimeZone, FromHour: r.WorkingHours[0], ToHour: r.WorkingHours[1]}
}

// NetworkSpec is the modelled network between regions. A pair with no
// link takes Default; traffic inside one region takes Inside. An empty
// section is loopback with no delay.
type NetworkSpec struct {
	Inside  *LinkSpec  `yaml:"inside"`
	Default *LinkSpec  `yaml:"default"`
	Links   []LinkSpec `yaml:"links"`
}

// LinkSpec is a link between two regions, the same both ways.
type LinkSpec struct {
	// Between names the two regions (links only).
	Between []string `yaml:"between"`
	// Latency is the one-way delay; Jitter adds up to that much more.
	Latency state.Duration `yaml:"latency"`
	Jitter  state.Duration `yaml:"jitter"`
	// Bandwidth is "100Mbit", "1Gbit", "500kbit" (per second); empty is
	// unlimited.
	Bandwidth string `yaml:"bandwidth"`
	// Loss is the probability a packet is lost: gossip's UDP packets are
	// dropped; a stream's segment arrives a retransmission timeout late.
	Loss float64 `yaml:"loss"`
}

// region returns the named region's spec (zero if the scenario lists none).
func (s *Scenario) region(name string) RegionSpec {
	for _, r := range s.Regions {
		if r.Name == name {
			return r
		}
	}
	return RegionSpec{Name: name}
}

// parseBandwidth reads "100Mbit" as bytes per second.
func parseBandwidth(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	units := []struct {
		suffix string
		bits   float64
	}{{"Gbit", 1e9}, {"Mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || !(v > 0) || math.IsInf(v, 0) {
				break
			}
			return v * u.bits / 8, nil
		}
	}
	return 0, fmt.Errorf("bandwidth %q: want a positive number and a unit, bit, kbit, Mbit or Gbit (per second)", s)
}

// link converts the spec.
func (l LinkSpec) link() (netsim.Link, error) {
	bw, err := parseBandwidth(l.Bandwidth)
	switch {
	case err != nil:
		return netsim.Link{}, err
	case l.Latency < 0 || l.Jitter < 0:
		return netsim.Link{}, fmt.Errorf("latency %s, jitter %s: want durations ≥ 0", time.Duration(l.Latency), time.Duration(l.Jitter))
	case time.Duration(l.Latency) > 10*time.Second || time.Duration(l.Jitter) > 10*time.Second:
		return netsim.Link{}, fmt.Errorf("latency %s, jitter %s: at most 10s", time.Duration(l.Latency), time.Duration(l.Jitter))
	case !(l.Loss >= 0 && l.Loss < 0.5):
		return netsim.Link{}, fmt.Errorf("loss %v: want a probability in [0, 0.5)", l.Loss)
	}
	return netsim.Link{Latency: time.Duration(l.Latency), Jitter: time.Duration(l.Jitter), Bandwidth: bw, Loss: l.Loss}, nil
}

// regions lists every region the scenario names: its coordinators' and
// its participants', in order of first mention.
func (s *Scenario) regions() []string {
	var out []string
	add := func(r string) {
		if r != "" && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	for _, r := range s.Regions {
		add(r.Name)
	}
	for _, c := range s.Coordinators {
		add(c.Region)
	}
	for _, g := range s.Participants.Groups {
		add(g.Region)
	}
	return out
}

// validateNetwork checks the regions and the network section.
func (s *Scenario) validateNetwork() error {
	seen := map[string]bool{}
	for i, r := range s.Regions {
		field := fmt.Sprintf("regions[%d]", i)
		switch {
		case r.Name == "":
			return fieldErrorf(field+".name", "a region needs a name")
		case seen[r.Name]:
			return fieldErrorf(field+".name", "region %q is listed twice", r.Name)
		}
		seen[r.Name] = true
		if len(r.WorkingHours) > 0 {
			switch h := r.WorkingHours; {
			case r.TimeZone == "":
				return fieldErrorf(field+".working_hours", "working hours need the region's timezone")
			case len(h) != 2 || h[0] > 24 || h[1] > 24 || h[0] == h[1]:
				return fieldErrorf(field+".working_hours", "%v: want [from, to], two different hours in 0–24", h)
			case s.Job.SimulatedClock == nil:
				return fieldErrorf(field+".working_hours", "working hours need job.simulated_clock (what time each round is)")
			}
		}
		if r.TimeZone != "" {
			if _, err := time.LoadLocation(r.TimeZone); err != nil {
				return fieldErrorf(field+".timezone", "%q is not a time zone (want an IANA name such as Europe/Berlin): %v", r.TimeZone, err)
			}
		}
	}
	if len(s.Regions) > 0 {
		for i, c := range s.Coordinators {
			if c.Region != "" && !seen[c.Region] {
				return fieldErrorf(fmt.Sprintf("coordinators[%d].region", i), "%q is not in regions", c.Region)
			}
		}
		for i, g := range s.Participants.Groups {
			if !seen[g.Region] {
				return fieldErrorf(fmt.Sprintf("participants.groups[%d].region", i), "%q is not in regions", g.Region)
			}
		}
	}
	if s.RaftProfile != "" && s.RaftProfile != coordinator.ProfileLAN && s.RaftProfile != coordinator.ProfileWAN {
		return fieldErrorf("raft_profile", "%q: want lan or wan", s.RaftProfile)
	}
	n := s.Network
	if n == nil {
		return nil
	}
	all := s.regions()
	for _, l := range []struct {
		field string
		spec  *LinkSpec
	}{{"network.inside", n.Inside}, {"network.default", n.Default}} {
		if l.spec == nil {
			continue
		}
		if len(l.spec.Between) > 0 {
			return fieldErrorf(l.field+".between", "only links name regions")
		}
		if _, err := l.spec.link(); err != nil {
			return fieldErrorf(l.field, "%v", err)
		}
	}
	pairs := map[[2]string]bool{}
	for i, l := range n.Links {
		field := fmt.Sprintf("network.links[%d]", i)
		if len(l.Between) != 2 || l.Between[0] == l.Between[1] {
			return fieldErrorf(field+".between", "want two different regions, [a, b]")
		}
		for _, r := range l.Between {
			if !slices.Contains(all, r) {
				return fieldErrorf(field+".between", "region %q is not in the scenario", r)
			}
		}
		key := [2]string{min(l.Between[0], l.Between[1]), max(l.Between[0], l.Between[1])}
		if pairs[key] {
			return fieldErrorf(field+".between", "the link %s–%s is listed twice", key[0], key[1])
		}
		pairs[key] = true
		if _, err := l.link(); err != nil {
			return fieldErrorf(field, "%v", err)
		}
	}
	return nil
}

// network builds the modelled network (with no network section: every
// link loopback, but regions can still be cut off).
func (s *Scenario) network(seed uint64) *netsim.Network {
	net := netsim.New(seed)
	n := s.Network
	if n == nil {
		return net
	}
	if n.Default != nil {
		l, _ := n.Default.link() // validated
		net.SetDefault(l)
	}
	if n.Inside != nil {
		l, _ := n.Inside.link()
		for _, r := range s.regions() {
			net.SetLink(r, r, l)
		}
	}
	for _, ls := range n.Links {
		l, _ := ls.link()
		net.SetLink(ls.Between[0], ls.Between[1], l)
	}
	return net
}

// nearest orders the coordinators' addresses by the latency from region
// (the scenario's order among equals): a participant connects to the
// nearest coordinator first.
func nearest(net *netsim.Network, region string, coords []CoordinatorSpec, addrs []string) []string {
	idx := make([]int, len(addrs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		la, lb := net.Link(region, coords[a].Region), net.Link(region, coords[b].Region)
		return int(la.Latency - lb.Latency)
	})
	out := make([]string, len(idx))
	for i, k := range idx {
		out[i] = addrs[k]
	}
	return out
}
