package coordinator_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/coordinator/coordtest"
)

// syncBuffer is a bytes.Buffer safe for the coordinators' goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRaftAndGossipLogsAreRecorded: Raft's and memberlist's own logs go
// through the coordinator's logger: after the leader is killed, a
// survivor's log shows the election (component=raft) and gossip giving up
// on the dead coordinator (component=memberlist).
func TestRaftAndGossipLogsAreRecorded(t *testing.T) {
	var logs syncBuffer
	tc := coordtest.NewCluster(t, 3, func(cfg *coordinator.Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	old := tc.Index(tc.Leader(10 * time.Second))
	tc.Kill(old)
	tc.Leader(10 * time.Second)
	want := []string{`msg="election won"`, `component=memberlist`}
	deadline := time.Now().Add(30 * time.Second)
	for _, w := range want {
		for !strings.Contains(logs.String(), w) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the coordinators' logs:\n%s", w, logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
