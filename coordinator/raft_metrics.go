package coordinator

import (
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// raftCollector exports this coordinator's own Raft state, read when
// Prometheus scrapes: term, commit and applied indexes, last log index,
// time since the leader was last heard from, and leader changes observed.
// Every coordinator reports its own (go-metrics, which hashicorp/raft
// emits to, is process-global and would mix the coordinators a test or a
// scenario runs in one process).
type raftCollector struct {
	c             *Coordinator
	leaderChanges prometheus.Counter
	descs         map[string]*prometheus.Desc
}

func newRaftCollector(c *Coordinator) *raftCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &raftCollector{
		c: c,
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "accord_raft_leader_changes_total", Help: "Leader changes this coordinator observed (elections won by anyone, and losing the leader)."}),
		descs: map[string]*prometheus.Desc{
			"term":         d("accord_raft_term", "Raft's current term on this coordinator."),
			"commit":       d("accord_raft_commit_index", "Raft's commit index on this coordinator."),
			"applied":      d("accord_raft_applied_index", "The last log index applied to this coordinator's FSM."),
			"last":         d("accord_raft_last_log_index", "The last index in this coordinator's Raft log."),
			"contact":      d("accord_raft_last_contact_seconds", "Seconds since this follower last heard from the leader (0 on the leader)."),
			"job_rounds":   d("accord_job_committed_rounds", "A job's committed rounds, as this coordinator's FSM knows them.", "job_id"),
			"job_accuracy": d("accord_job_accuracy", "The federated accuracy of a job's latest evaluated model.", "job_id"),
			"job_epsilon":  d("accord_job_epsilon", "A job's differential-privacy ε so far (jobs with dp).", "job_id"),
		},
	}
}

// observe counts the leader changes Raft reports until the coordinator
// stops.
func (rc *raftCollector) observe() {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	rc.c.raft.RegisterObserver(obs)
	defer rc.c.raft.DeregisterObserver(obs)
	for {
		select {
		case <-rc.c.stop:
			return
		case <-ch:
			rc.leaderChanges.Inc()
		}
	}
}

// Describe sends the collector's descriptions.
func (rc *raftCollector) Describe(ch chan<- *prometheus.Desc) {
	rc.leaderChanges.Describe(ch)
	for _, d := range rc.descs {
		ch <- d
	}
}

// Collect reads Raft's state and the jobs' progress now.
func (rc *raftCollector) Collect(ch chan<- prometheus.Metric) {
	rc.leaderChanges.Collect(ch)
	r := rc.c.raft
	gauge := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(rc.descs[name], prometheus.GaugeValue, v, labels...)
	}
	gauge("term", float64(r.CurrentTerm()))
	gauge("commit", float64(r.CommitIndex()))
	gauge("applied", float64(r.AppliedIndex()))
	gauge("last", float64(r.LastIndex()))
	contact := 0.0
	if r.State() != raft.Leader {
		if t := r.LastContact(); !t.IsZero() {
			contact = time.Since(t).Seconds()
		}
	}
	gauge("contact", contact)
	for _, j := range rc.c.fsm.Jobs() {
		gauge("job_rounds", float64(j.CommittedRounds), j.ID)
		for i := len(j.Rounds) - 1; i >= 0; i-- {
			if e := j.Rounds[i].Eval; e != nil && e.Examples > 0 {
				gauge("job_accuracy", e.Accuracy(), j.ID)
				break
			}
		}
		if j.Privacy != nil {
			gauge("job_epsilon", j.Privacy.Epsilon, j.ID)
		}
	}
}
