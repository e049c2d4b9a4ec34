package coordtest

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/accord-fl/accord/internal/freeport"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// BuildAccord builds the accord binary into a temporary folder of tb's
// and returns its path.
func BuildAccord(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "accord")
	build := exec.Command("go", "build", "-o", bin, "github.com/accord-fl/accord/cmd/accord")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		tb.Fatalf("building accord: %v", err)
	}
	return bin
}

// Processes is a cluster of real `accord coordinator` processes of a
// built binary on loopback: c1…cn, each of its own organisation, with
// certificates from the cluster's CA in files, as an operator would run
// them. Each logs at warn level to NAME.log in the cluster's folder. The
// processes stop (SIGTERM, then SIGKILL) when the test ends.
type Processes struct {
	tb     testing.TB
	CA     *pki.CA
	dir    string
	names  []string
	addrs  []string
	cmds   []*exec.Cmd
	admins []pb.AdminServiceClient
}

// StartProcesses starts n coordinator processes of binary that form one
// Raft cluster once all have met by gossip.
func StartProcesses(tb testing.TB, binary string, n int) *Processes {
	tb.Helper()
	dir := tb.TempDir()
	// The CA certificate and the gossip key as accord pki init writes them.
	if err := pki.InitDir(dir, "test"); err != nil {
		tb.Fatal(err)
	}
	ca, err := pki.LoadCA(dir)
	if err != nil {
		tb.Fatal(err)
	}
	pc := &Processes{tb: tb, CA: ca, dir: dir}
	tb.Cleanup(pc.stop)
	caFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "gossip.key")
	type ports struct{ grpc, raft, gossip string }
	addrs := make([]ports, n)
	for i := range addrs {
		addrs[i] = ports{FreeLoopback(tb), FreeLoopback(tb), FreeLoopback(tb)}
	}
	opsCert := pc.AdminCert()
	for i := range n {
		name := fmt.Sprintf("c%d", i+1)
		cert, key, err := ca.IssueToDir(pc.dir, pki.Identity{Role: pki.RoleCoordinator, Name: name, Organization: fmt.Sprintf("org%d", i+1)},
			pki.IssueOptions{Hosts: []string{"127.0.0.1", "localhost"}})
		if err != nil {
			tb.Fatal(err)
		}
		args := []string{"coordinator", "--name", name, "--data-dir", filepath.Join(pc.dir, name), "--log-level", "warn",
			"--grpc-addr", addrs[i].grpc, "--raft-addr", addrs[i].raft, "--gossip-addr", addrs[i].gossip, "--gossip-key", keyFile,
			"--ca", caFile, "--cert", cert, "--key", key}
		if n == 1 {
			args = append(args, "--bootstrap")
		} else {
			var join []string
			for j := range n {
				if j != i {
					join = append(join, addrs[j].gossip)
				}
			}
			args = append(args, "--bootstrap-expect", strconv.Itoa(n), "--join", strings.Join(join, ","))
		}
		pc.names, pc.addrs = append(pc.names, name), append(pc.addrs, addrs[i].grpc)
		pc.start(name, binary, args)
		pc.admins = append(pc.admins, dialAdmin(pc.tb, addrs[i].grpc, opsCert, pc.CA.Pool()))
	}
	return pc
}

// start starts one coordinator process, its output into NAME.log.
func (pc *Processes) start(name, binary string, args []string) {
	pc.tb.Helper()
	log, err := os.Create(filepath.Join(pc.dir, name+".log"))
	if err != nil {
		pc.tb.Fatal(err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		pc.tb.Fatalf("starting %s: %v", name, err)
	}
	log.Close() // the child holds its own descriptor
	pc.cmds = append(pc.cmds, cmd)
}

// stop asks every process to end and kills those still running after 10 s.
func (pc *Processes) stop() {
	for _, cmd := range pc.cmds {
		cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, cmd := range pc.cmds {
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
}

// FreeLoopback returns a loopback address for a process to listen on
// (freeport.Loopback).
func FreeLoopback(tb testing.TB) string {
	tb.Helper()
	addr, err := freeport.Loopback()
	if err != nil {
		tb.Fatal(err)
	}
	return addr
}

// AdminCert issues a certificate for the admin ops of organisation ops.
func (pc *Processes) AdminCert() tls.Certificate {
	pc.tb.Helper()
	return adminCert(pc.tb, pc.CA, "ops", "ops")
}

// Addrs are the coordinators' gRPC addresses.
func (pc *Processes) Addrs() []string { return pc.addrs }

// Name is coordinator i's name.
func (pc *Processes) Name(i int) string { return pc.names[i] }

// Pid is coordinator i's process ID.
func (pc *Processes) Pid(i int) int { return pc.cmds[i].Process.Pid }

// Log is the path of coordinator i's log.
func (pc *Processes) Log(i int) string { return filepath.Join(pc.dir, pc.names[i]+".log") }

// Admin is an admin client (ops) of coordinator i, which answers from its
// own state.
func (pc *Processes) Admin(i int) pb.AdminServiceClient { return pc.admins[i] }

// Leader waits up to timeout until every coordinator names the same
// leader, and returns its index.
func (pc *Processes) Leader(timeout time.Duration) int {
	pc.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if i := pc.agreedLeader(); i >= 0 {
			return i
		}
		if time.Now().After(deadline) {
			pc.tb.Fatalf("no leader all %d coordinators agree on within %v (logs in %s)", len(pc.names), timeout, pc.dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// agreedLeader is the index of the leader every coordinator names, or −1.
func (pc *Processes) agreedLeader() int {
	leader := ""
	for _, a := range pc.admins {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		m, err := a.ListMembers(ctx, &pb.ListMembersRequest{})
		cancel()
		if err != nil || m.Leader == "" || leader != "" && m.Leader != leader {
			return -1
		}
		leader = m.Leader
	}
	for i, n := range pc.names {
		if n == leader {
			return i
		}
	}
	return -1
}

// Tail is the last lines of coordinator i's log.
func (pc *Processes) Tail(i, lines int) string {
	b, err := os.ReadFile(pc.Log(i))
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}
