// Package state is the federation's replicated state: the commands the
// coordinators agree on through Raft, the FSM that applies them, the
// records it keeps (participants, jobs and their round attempts,
// proposals, the policy, the audit log) and their read views, and what is
// derived from those records alone: job specs and their checks,
// governance, privacy accounting, retention, selection weights.
//
// It does no I/O and reads no clock: the leader writes times and seeds
// into commands, so every coordinator's FSM reaches the same state from the
// same log. It knows nothing of Raft's transport, gRPC or the leader.
package state
