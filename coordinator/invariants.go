package coordinator

import (
	"fmt"
	"slices"
	"time"

	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// WaitInvariants checks the invariants until they hold or timeout passes
// (followers may still be applying the last entries or fetching the last
// model) and returns the last violation.
func WaitInvariants(nodes []*Coordinator, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := CheckInvariants(nodes)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CheckInvariants checks the invariants over a set of running coordinators.
func CheckInvariants(nodes []*Coordinator) error {
	if len(nodes) == 0 {
		return nil
	}
	want := nodes[0].FSM().Digest()
	for _, c := range nodes[1:] {
		if got := c.FSM().Digest(); got != want {
			return fmt.Errorf("FSM of %s differs from %s's", c.Name(), nodes[0].Name())
		}
	}
	for _, c := range nodes {
		for _, j := range c.FSM().Jobs() {
			var committed []uint32
			kept := j.Retained()
			for _, r := range j.Rounds {
				if r.Status == pb.RoundStatus_ROUND_STATUS_COMMITTED {
					committed = append(committed, r.Number)
					if !kept[r.Number] {
						continue // deleted by the job's retain policy
					}
					blob, err := c.Store().GetBlob(r.Digest)
					if err != nil {
						return fmt.Errorf("%s: job %s round %d: %w", c.Name(), j.ID, r.Number, err)
					}
					if got := protocol.Digest(blob); got != r.Digest {
						return fmt.Errorf("%s: job %s round %d: blob hashes to %s, not %s", c.Name(), j.ID, r.Number, got, r.Digest)
					}
				}
			}
			for i, n := range committed {
				if n != uint32(i+1) {
					return fmt.Errorf("%s: job %s: committed rounds %v are not 1…%d without gaps or repeats", c.Name(), j.ID, committed, len(committed))
				}
			}
			if uint32(len(committed)) != j.CommittedRounds {
				return fmt.Errorf("%s: job %s records %d committed rounds but lists %d", c.Name(), j.ID, j.CommittedRounds, len(committed))
			}
			if slices.ContainsFunc(j.Rounds, func(r *state.RoundRecord) bool { return r.Status == pb.RoundStatus_ROUND_STATUS_OPEN }) && !j.Running() {
				return fmt.Errorf("%s: job %s finished with a round open", c.Name(), j.ID)
			}
		}
	}
	return nil
}
