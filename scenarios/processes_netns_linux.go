//go:build linux

package scenarios

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/accord-fl/accord/netsim"
)

// nsNetwork is the processes runner's network model made of Linux network
// namespaces: one per region, each with the region's address on its
// loopback interface, and a veth pair between every two regions. Every
// process of a region runs in its namespace, so whatever it dials in
// another region leaves through that pair with the region's address as
// its source (one shared loopback would not do: the kernel sends a local
// connection from the address it dials, whatever the dialler's region).
// Each end of a pair shapes its direction with tc: netem for latency,
// jitter, loss and rate, or tbf when the link only limits the rate; the
// link inside a region shapes its loopback.
// Partitions replace the routes between regions by blackholes and close
// the live connections across the cut, as netsim.Cut does: packets across
// the cut are lost and new dials fail, while traffic inside a region flows
// on.
type nsNetwork struct {
	prefix  string   // namespace names are prefix-1 … prefix-N
	regions []string // region i+1 is regions[i]

	mu  sync.Mutex
	cut map[string]bool
}

// nsAddressPrefix is the network the regions' addresses come from: region
// i (1-based) is 10.213.i.1 inside its namespace. Namespaces are private
// to the run, so the block cannot clash with the host's.
const nsAddressPrefix = "10.213."

// nsNamePrefix starts the name of every namespace a run makes, followed by
// the runner's process ID (see removeStaleNamespaces).
const nsNamePrefix = "accord-"

// newNSNetwork makes a namespace per region, joins every two with a veth
// pair and shapes each direction as model says (nil: no shaping). It
// needs root and the ip and tc commands; on any error it removes what it
// made.
func newNSNetwork(ctx context.Context, regions []string, model *netsim.Network) (_ *nsNetwork, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("network namespaces need root")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("network namespaces need the %s command: %w", tool, err)
		}
	}
	if len(regions) > 250 {
		return nil, fmt.Errorf("%d regions: network namespaces take at most 250", len(regions))
	}
	removeStaleNamespaces(ctx)
	var rnd [3]byte
	rand.Read(rnd[:])
	n := &nsNetwork{prefix: fmt.Sprintf("%s%d-%x", nsNamePrefix, os.Getpid(), rnd), regions: regions, cut: map[string]bool{}}
	made := 0
	defer func() {
		if err != nil {
			n.closeFirst(made)
		}
	}()
	for i := range regions {
		ns := n.ns(i)
		if err := nsRun(ctx, "ip", "netns", "add", ns); err != nil {
			return nil, err
		}
		made++
		if err := nsRunAll(ctx,
			[]string{"ip", "-n", ns, "link", "set", "lo", "up"},
			[]string{"ip", "-n", ns, "addr", "add", n.ip(i) + "/32", "dev", "lo"}); err != nil {
			return nil, err
		}
	}
	for i := range regions {
		for j := i + 1; j < len(regions); j++ {
			if err := nsRunAll(ctx,
				[]string{"ip", "link", "add", n.veth(j), "netns", n.ns(i), "type", "veth", "peer", "name", n.veth(i), "netns", n.ns(j)},
				[]string{"ip", "-n", n.ns(i), "link", "set", n.veth(j), "up"},
				[]string{"ip", "-n", n.ns(j), "link", "set", n.veth(i), "up"}); err != nil {
				return nil, err
			}
			if err := n.route(ctx, i, j, false); err != nil {
				return nil, err
			}
			if err := n.route(ctx, j, i, false); err != nil {
				return nil, err
			}
		}
	}
	if model == nil {
		return n, nil
	}
	for i, a := range regions {
		for j, b := range regions {
			dev := n.veth(j)
			if i == j {
				dev = "lo"
			}
			if err := nsShape(ctx, n.ns(i), dev, model.Link(a, b)); err != nil {
				return nil, fmt.Errorf("shaping the link %s→%s: %w", a, b, err)
			}
		}
	}
	return n, nil
}

// ns is region i's namespace (0-based i).
func (n *nsNetwork) ns(i int) string { return fmt.Sprintf("%s-%d", n.prefix, i+1) }

// ip is region i's address.
func (n *nsNetwork) ip(i int) string { return nsAddressPrefix + strconv.Itoa(i+1) + ".1" }

// veth names, in any namespace, the interface towards region j.
func (n *nsNetwork) veth(j int) string { return "v" + strconv.Itoa(j+1) }

func (n *nsNetwork) index(region string) int {
	for i, r := range n.regions {
		if r == region {
			return i
		}
	}
	return -1
}

// host is the address processes of region bind.
func (n *nsNetwork) host(region string) string { return n.ip(n.index(region)) }

// command is the prefix that runs a command in region's namespace.
func (n *nsNetwork) command(region string) []string {
	return []string{"ip", "netns", "exec", n.ns(n.index(region))}
}

// route sets the route from region i to region j: through their veth
// pair, or a blackhole while either is cut off.
func (n *nsNetwork) route(ctx context.Context, i, j int, blocked bool) error {
	dst := n.ip(j) + "/32"
	if blocked {
		return nsRun(ctx, "ip", "-n", n.ns(i), "route", "replace", "blackhole", dst)
	}
	return nsRun(ctx, "ip", "-n", n.ns(i), "route", "replace", dst, "dev", n.veth(j), "src", n.ip(i))
}

// setCut cuts region off from every other region, or heals it (a pair
// stays cut while its other region is cut).
func (n *nsNetwork) setCut(region string, on bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	r := n.index(region)
	if r < 0 {
		return fmt.Errorf("no region %q", region)
	}
	n.cut[region] = on
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for j, other := range n.regions {
		if j == r {
			continue
		}
		blocked := on || n.cut[other]
		errs = append(errs, n.route(ctx, r, j, blocked), n.route(ctx, j, r, blocked))
		if on {
			// As netsim.Cut does, close the live connections across the
			// cut at once on both sides (ss -K): otherwise a peer with no
			// keepalive of its own waits on a dead connection until TCP
			// gives up, minutes later.
			errs = append(errs,
				nsRun(ctx, "ss", "-N", n.ns(r), "-K", "-t", "dst", n.ip(j)),
				nsRun(ctx, "ss", "-N", n.ns(j), "-K", "-t", "dst", n.ip(r)))
		}
	}
	return errors.Join(errs...)
}

// dial opens a TCP connection from inside the namespace of the region
// addr is in (the runner stands in that region, so it reaches a cut-off
// coordinator as its own region does); other addresses are dialled from
// the runner's own namespace.
func (n *nsNetwork) dial(ctx context.Context, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	i := -1
	for k := range n.regions {
		if n.ip(k) == host {
			i = k
		}
	}
	if i < 0 {
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// This thread enters the namespace for the dial and comes back:
		// the socket stays in the namespace it was made in. The thread is
		// not left to end (a goroutine that exits locked ends its thread),
		// since a child process dies with the thread that started it
		// (Pdeathsig), and any thread may have started one.
		runtime.LockOSThread()
		home, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer home.Close()
		target, err := os.Open(filepath.Join("/run/netns", n.ns(i)))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("entering namespace %s: %w", n.ns(i), err)}
			return
		}
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else the thread, stuck in the namespace, ends with the goroutine
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// bytes is what left each region for each other, "from→to", as the veth
// interfaces count it (packets with their headers).
func (n *nsNetwork) bytes() map[string]uint64 {
	out := map[string]uint64{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, a := range n.regions {
		for j, b := range n.regions {
			if i == j {
				continue
			}
			b2, err := exec.CommandContext(ctx, "ip", "-n", n.ns(i), "-j", "-s", "link", "show", "dev", n.veth(j)).Output()
			if err != nil {
				continue
			}
			var links []struct {
				Stats struct {
					TX struct {
						Bytes uint64 `json:"bytes"`
					} `json:"tx"`
				} `json:"stats64"`
			}
			if json.Unmarshal(b2, &links) == nil && len(links) == 1 {
				out[a+"→"+b] = links[0].Stats.TX.Bytes
			}
		}
	}
	return out
}

// close deletes every namespace (their veth pairs go with them). Every
// process in them must have ended.
func (n *nsNetwork) close() error { return n.closeFirst(len(n.regions)) }

func (n *nsNetwork) closeFirst(count int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for i := range count {
		errs = append(errs, nsRun(ctx, "ip", "netns", "del", n.ns(i)))
	}
	return errors.Join(errs...)
}

// nsShape installs link's model on dev's egress in namespace ns: netem
// (delay latency + jitter/2 ± jitter/2, as netsim's jitter adds up to
// jitter; loss; rate) or, for a rate alone, tbf. A zero link is left
// alone.
func nsShape(ctx context.Context, ns, dev string, l netsim.Link) error {
	if l.Latency == 0 && l.Jitter == 0 && l.Loss == 0 && l.Bandwidth == 0 {
		return nil
	}
	rate := strconv.FormatUint(uint64(l.Bandwidth*8), 10) + "bit"
	if l.Latency == 0 && l.Jitter == 0 && l.Loss == 0 {
		// Burst above a 64 KiB segment: veth hands tc whole GSO segments,
		// and tbf drops a packet larger than its burst.
		burst := max(int(l.Bandwidth/100), 1<<17)
		return nsRun(ctx, "tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate,
			"burst", strconv.Itoa(burst), "latency", "10s")
	}
	us := func(d time.Duration) string { return strconv.FormatInt(d.Microseconds(), 10) + "us" }
	args := []string{"tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "netem", "limit", "100000",
		"delay", us(l.Latency + l.Jitter/2), us(l.Jitter / 2)}
	if l.Loss > 0 {
		args = append(args, "loss", strconv.FormatFloat(100*l.Loss, 'f', 4, 64)+"%")
	}
	if l.Bandwidth > 0 {
		args = append(args, "rate", rate)
	}
	if err := nsRun(ctx, args...); err != nil {
		return fmt.Errorf("%w (is the kernel's netem qdisc, sch_netem, available?)", err)
	}
	return nil
}

// childProcAttr makes a child process die with the runner (Pdeathsig), so
// that a runner killed before it cleans up leaves no process behind.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// removeStaleNamespaces deletes the namespaces earlier runs left behind
// (a runner killed before it cleaned up): those named after a process
// that no longer runs.
func removeStaleNamespaces(ctx context.Context) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, nsNamePrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = nsRun(ctx, "ip", "netns", "del", name)
		}
	}
}

// nsRun runs a command and returns its output in the error.
func nsRun(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func nsRunAll(ctx context.Context, cmds ...[]string) error {
	for _, c := range cmds {
		if err := nsRun(ctx, c...); err != nil {
			return err
		}
	}
	return nil
}
