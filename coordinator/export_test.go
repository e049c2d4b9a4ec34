package coordinator

import "github.com/hashicorp/raft"

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
