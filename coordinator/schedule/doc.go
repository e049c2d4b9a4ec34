// Package schedule is the leader's round scheduling as a pure decide step.
//
// The leader schedules rounds in two halves, as etcd's raft separates Ready
// from Advance. Decider.Decide reads one job's replicated state (a
// state.Job view), the leader's memory of the job (JobRun: the open Round,
// the evaluation being collected), what the leader sees of the world
// (World: who is connected, the registry) and the time; it changes only
// the leader's memory and returns the Effects it chose. It sends nothing,
// applies nothing and moves no model, so every round outcome is decided in
// tests with a fixed world and a made-up clock. The coordinator's executor
// performs the effects with the leader's lock released: Raft applies, task
// sends, model transfers, and the heavy part of closing a round
// (Round.Result: the rule's result or secure aggregation's unmasking).
//
// Round and SecureRound are the state machines of one round attempt, plain
// and with secure aggregation: they do no I/O and take time as an
// argument. The leader guards them, and JobRun, with its own lock.
package schedule
