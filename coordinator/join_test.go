package coordinator_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// A coordinator's name is its certificate's and its Raft server ID. One
// whose --name differs from its certificate does not start; and one that
// skips that check (a modified binary) is not let into the Raft
// configuration: the leader finds another name in its certificate.
func TestCoordinatorWhoseNameIsNotItsCertificatesCannotJoin(t *testing.T) {
	tc := coordtest.NewCluster(t, 3)
	leader := tc.Leader(5 * time.Second)
	cert, err := tc.CA.Issue(pki.Identity{Role: pki.RoleCoordinator, Name: "impostor", Organization: "org4"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := coordtest.Config("c4", filepath.Join(t.TempDir(), "c4"), cert, tc.CA)
	cfg.GossipKey = tc.Cfg(0).GossipKey
	for _, n := range tc.Nodes {
		cfg.Join = append(cfg.Join, n.GossipAddr())
	}
	if _, err := coordinator.New(cfg); err == nil || !strings.Contains(err.Error(), "differs from the certificate") {
		t.Fatalf("New with name c4 and a certificate for impostor: %v; want refused", err)
	}
	cfg.Name = "impostor"
	c, err := coordinator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	coordinator.SetNameForTest(c, "c4") // what a modified binary would do
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown() })

	var why string
	for deadline := time.Now().Add(20 * time.Second); why == ""; time.Sleep(20 * time.Millisecond) {
		leader = tc.Leader(5 * time.Second)
		why = leader.JoinRefusals()["c4"]
		if time.Now().After(deadline) {
			t.Fatal("the leader never considered c4")
		}
	}
	t.Logf("leader %s refused c4: %s", leader.Name(), why)
	if !strings.Contains(why, `certificate names "impostor"`) {
		t.Errorf("refusal %q; want it to name the certificate's name", why)
	}
	servers, err := coordinator.VotersForTest(leader)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if s.ID == raft.ServerID("c4") || s.ID == "impostor" {
			t.Errorf("%s is in the Raft configuration", s.ID)
		}
	}
}

// TestStoppedCoordinatorShowsAsFailed: members list reads each member's
// state from gossip, so a coordinator that stopped shows as failed on the
// others within the gossip timeout, and as alive again once it is back.
func TestStoppedCoordinatorShowsAsFailed(t *testing.T) {
	tc := coordtest.NewCluster(t, 3)
	tc.Leader(10 * time.Second)
	admin := tc.Admin(0, "ops")
	stateOf := func(name string) string {
		resp, err := admin.ListMembers(t.Context(), &pb.ListMembersRequest{})
		if err != nil {
			return err.Error()
		}
		for _, m := range resp.Members {
			if m.Name == name {
				return m.GossipState
			}
		}
		return "missing"
	}
	waitState := func(name, want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for stateOf(name) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s is %q; want %q", name, stateOf(name), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	name := tc.Cfg(2).Name
	waitState(name, "alive")
	stopped := time.Now()
	tc.Kill(2)
	waitState(name, "failed")
	t.Logf("%s shown as failed %v after it stopped", name, time.Since(stopped).Round(time.Millisecond))
	tc.Restart(2)
	waitState(name, "alive")
}
