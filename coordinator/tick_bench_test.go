package coordinator

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/accord-fl/accord/aggregate"
	"github.com/accord-fl/accord/coordinator/schedule"
	"github.com/accord-fl/accord/coordinator/state/statetest"
)

// BenchmarkLeaderTick is the leader's scheduling pass (Coordinator.schedule)
// over one running job whose round is open and waiting for updates, the
// pass that runs every tick, after 10 and after 10,000 committed rounds:
// its cost must not grow with the job's history.
//
//	go test -run '^$' -bench LeaderTick ./coordinator/
func BenchmarkLeaderTick(b *testing.B) {
	for _, rounds := range []int{10, 10_000} {
		b.Run(fmt.Sprintf("rounds=%d", rounds), func(b *testing.B) {
			d := statetest.New(b)
			j := d.JobWithHistory("job-000000000001", rounds)
			// The leader's decider and executor, set up as New does.
			c := &Coordinator{fsm: d.FSM, log: slog.New(slog.DiscardHandler), sessions: newSessions(), metrics: newMetrics(),
				leader: leaderState{kick: make(chan struct{}, 1)}}
			c.leader.decider = schedule.Decider{World: coordinatorWorld{sessions: c.sessions, fsm: c.fsm}, CA: d.CA.Pool()}
			c.exec = &executor{cluster: c, tasks: c.sessions, leader: &c.leader, metrics: c.metrics, log: c.log, kick: c.kickLeader}
			open := j.Rounds[len(j.Rounds)-1]
			rule, err := aggregate.NewRule(aggregate.RuleConfig{}, 16)
			if err != nil {
				b.Fatal(err)
			}
			now := time.UnixMilli(open.OpenedAt)
			r := schedule.NewRound(j.ID, open.Number, 1, open.Cohort, nil, 16, open.BaseDigest, now.Add(time.Hour), 8, rule)
			run := schedule.NewJobRun()
			run.Round = r
			c.leader.jobs = map[string]*schedule.JobRun{j.ID: run}
			for b.Loop() {
				c.schedule(now)
			}
			if c.leader.jobs[j.ID].Round != r {
				b.Fatal("the pass did not leave the open round waiting")
			}
		})
	}
}
