package scenarios

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/accord-fl/accord/netsim"
)

// processNet is the network a processes run uses.
type processNet struct {
	mode   ProcessNetwork
	note   string
	ns     *nsNetwork      // mode namespaces
	model  *netsim.Network // mode proxies: shapes the proxied links
	cutter interface{ setCut(string, bool) error }
	closes []func() error
}

// setUpProcessNetwork makes the run's network as opts.Network asks.
func setUpProcessNetwork(ctx context.Context, sc *Scenario, opts ProcessOptions, regions []string, m *netsim.Network) (*processNet, error) {
	shaped := sc.Network != nil && !opts.NoNetwork
	cuts := slices.ContainsFunc(sc.Events, func(e Event) bool { return e.Kind == EventPartition })
	if !shaped && !cuts && opts.Network == ProcessNetworkAuto {
		return &processNet{mode: processNetworkNone, note: "the scenario models no network and cuts no region: plain loopback"}, nil
	}
	why := ""
	switch opts.Network {
	case ProcessNetworkAuto, ProcessNetworkNamespaces:
		var shape *netsim.Network
		if shaped {
			shape = m
		}
		ns, err := newNSNetwork(ctx, regions, shape)
		if err == nil {
			what := "no link shaped"
			if shaped {
				what = "every link shaped by tc, the coordinators' own included"
			}
			return &processNet{mode: ProcessNetworkNamespaces, ns: ns, cutter: ns,
				note: fmt.Sprintf("a network namespace per region (%s-…), %s; partitions cut every link", ns.prefix, what)}, nil
		}
		if opts.Network == ProcessNetworkNamespaces {
			return nil, fmt.Errorf("%w: %v", ErrNoNamespaces, err)
		}
		why = fmt.Sprintf("; network namespaces failed: %v", err)
	case ProcessNetworkProxies:
	default:
		return nil, fmt.Errorf("network %q: want namespaces or proxies", opts.Network)
	}
	return &processNet{mode: ProcessNetworkProxies, model: m, cutter: proxyCutter{m},
		note: "proxies shape the participants' links only; the coordinators' links are plain loopback and partitions cut only the participants' links" + why}, nil
}

// command is the command line prefix that runs binary in region.
func (n *processNet) command(region, binary string) []string {
	if n.ns != nil {
		return append(n.ns.command(region), binary)
	}
	return []string{binary}
}

// dial is the runner's dialer (nil: direct).
func (n *processNet) dial(ctx context.Context, addr string) (net.Conn, error) {
	if n.ns != nil {
		return n.ns.dial(ctx, addr)
	}
	return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
}

// proxies starts a proxy from region to each coordinator and returns
// their addresses, in the coordinators' order.
func (n *processNet) proxies(region string, coords []CoordinatorSpec, targets []string) ([]string, error) {
	out := make([]string, len(targets))
	for i, t := range targets {
		addr, closeFn, err := n.model.Proxy(region, coords[i].Region, t)
		if err != nil {
			return nil, err
		}
		n.closes = append(n.closes, closeFn)
		out[i] = addr
	}
	return out, nil
}

// bytes is what each link carried, "from→to".
func (n *processNet) bytes() map[string]uint64 {
	if n.ns != nil {
		return n.ns.bytes()
	}
	if n.model == nil {
		return nil
	}
	out := map[string]uint64{}
	for pair, b := range n.model.Bytes() {
		out[pair[0]+"→"+pair[1]] = b
	}
	return out
}

// close stops the proxies and removes the namespaces (after the processes
// in them have ended).
func (n *processNet) close() error {
	var errs []error
	for _, c := range n.closes {
		errs = append(errs, c())
	}
	if n.ns != nil {
		errs = append(errs, n.ns.close())
	}
	return errors.Join(errs...)
}

// proxyCutter partitions the participants' links in the fallback network
// (netsim proxies): the coordinators' own links are not modelled there.
type proxyCutter struct{ net *netsim.Network }

func (p proxyCutter) setCut(region string, on bool) error {
	if on {
		p.net.Cut(region)
	} else {
		p.net.Heal(region)
	}
	return nil
}
