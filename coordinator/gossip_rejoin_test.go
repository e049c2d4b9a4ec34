package coordinator_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/coordinator/coordtest"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// gossipStates returns how the answering coordinator sees each member.
func gossipStates(t *testing.T, admin pb.AdminServiceClient) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := admin.ListMembers(ctx, &pb.ListMembersRequest{})
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, m := range resp.Members {
		out[m.Name] = m.GossipState
	}
	return out
}

// TestRestartWithoutJoinFindsItsPeers: the first coordinator started joined
// nobody. Killed, forgotten by the others' gossip, and started again with
// the same flags (still no --join), it finds its peers from the addresses
// it remembered in its data folder.
func TestRestartWithoutJoinFindsItsPeers(t *testing.T) {
	tc := coordtest.NewCluster(t, 3)
	tc.Leader(30 * time.Second)
	// c1 has written down its peers once they are voters.
	peersFile := filepath.Join(tc.Cfg(0).DataDir, "gossip-peers.json")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(peersFile)
		if strings.Contains(string(b), `"c2"`) && strings.Contains(string(b), `"c3"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("c1's %s: %q; want c2 and c3", peersFile, b)
		}
	}
	tc.Kill(0)
	// Wait until c2 sees c1 failed, then past memberlist's gossip to the
	// dead, after which nobody contacts c1 on their own.
	deadline := time.Now().Add(30 * time.Second)
	for gossipStates(t, tc.Admin(1, "ops"))["c1"] != "failed" {
		if time.Now().After(deadline) {
			t.Fatalf("c2 never saw c1 fail: %v", gossipStates(t, tc.Admin(1, "ops")))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // GossipToTheDeadTime is 2 s with FastGossip
	cfg := tc.Cfg(0)
	cfg.Join = nil
	c, err := coordinator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	tc.Nodes[0] = c
	deadline = time.Now().Add(20 * time.Second)
	for {
		s := gossipStates(t, tc.Admin(0, "ops"))
		if s["c2"] == "alive" && s["c3"] == "alive" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted without --join, c1 sees %v; want c2 and c3 alive", s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
