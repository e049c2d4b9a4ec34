// Package pki makes and reads the federation's certificates: one CA per
// federation, and certificates for coordinators, participants and admins,
// whose role, name and organisation every connection reads from the peer's
// certificate (never from a request field). It also makes the gossip key.
//
// On disk a federation folder holds ca.crt and ca.key (the CA), gossip.key,
// and NAME.crt / NAME.key per issued identity.
package pki
