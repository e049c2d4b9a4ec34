package coordinator

import (
	"time"

	"github.com/accord-fl/accord/coordinator/state"
	"github.com/hashicorp/raft"
)

// Hooks for the external tests of this package (compiled with the tests
// only).

// SetNameForTest changes a coordinator's name (its Raft ID and gossip
// name) after New checked it against the certificate, as a modified binary
// would, before Start.
func SetNameForTest(c *Coordinator, name string) { c.cfg.Name = name }

// VotersForTest is the coordinator's Raft configuration.
func VotersForTest(c *Coordinator) ([]raft.Server, error) { return c.voters() }

// SecAggPartBytesForTest is a NewCluster option: its coordinators send a
// task whose secure-aggregation items take more than n bytes in parts
// (protocol.SecAggPartBytes otherwise).
func SecAggPartBytesForTest(n int) func(*Config) { return func(c *Config) { c.secAggPartBytes = n } }

// HoldNextOpenRoundForTest makes the coordinator's FSM wait d before it
// applies the next openRound command, as a slow Raft commit would. It
// returns a channel closed when that apply starts waiting and one closed
// when it goes on.
func HoldNextOpenRoundForTest(c *Coordinator, d time.Duration) (held, released <-chan struct{}) {
	h, r := make(chan struct{}), make(chan struct{})
	fn := func(t state.CommandType) {
		if t != state.CmdOpenRound {
			return
		}
		c.fsm.HoldApplies(nil)
		close(h)
		time.Sleep(d)
		close(r)
	}
	c.fsm.HoldApplies(fn)
	return h, r
}
