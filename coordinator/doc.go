// Package coordinator is Accord's coordinator: a hashicorp/raft node whose
// FSM holds the federation's state (participants, jobs, rounds, committed
// model digests), the round scheduler that runs on the leader, and the gRPC
// services participants and administrators call.
//
// Model bytes never enter the Raft log: they are content-addressed blobs in
// the coordinator's Badger store, and the log carries their digests.
//
// See DESIGN.md in this folder for the FSM's commands and the round
// lifecycle.
package coordinator
