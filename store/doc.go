// Package store is a coordinator's one Badger database: the Raft log and
// stable store (raft.LogStore, raft.StableStore) with every write synced, and
// content-addressed blobs (model parameters, addressed by their sha256).
//
// Keys are prefixed by kind: "l" + big-endian index for log entries, "s" +
// key for stable values, "b" + digest for blobs.
package store
