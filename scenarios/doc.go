// Package scenarios runs whole federations in one process on loopback from
// a YAML file: the real coordinator and participant code, real gRPC with
// mutual TLS (certificates made for the run), real Raft and Badger in a
// temporary folder. It reports what happened as text lines and one JSON
// object. The format is documented in README.md beside this file.
package scenarios
