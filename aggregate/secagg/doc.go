// Package secagg is secure aggregation (Bonawitz et al., CCS 2017) and its
// sparse-graph variant SecAgg+ (Bell et al., CCS 2020) as pure client and
// server state machines: no I/O, no clocks, so every dropout pattern can be
// tested in one process.
//
// Each client u holds a vector x_u of uint32 (quantised updates) and:
//
//  1. advertises two X25519 public keys (c for encrypting shares, s for
//     masks), signed with its identity key;
//  2. draws a mask seed b_u and Shamir-shares b_u and its mask secret key
//     s_u among its neighbours (threshold t), each share encrypted with
//     AES-GCM under a key derived from the c-key agreement with the
//     recipient;
//  3. sends y_u = x_u + PRG(b_u) + Σ_v ±PRG(s_uv) mod 2^32 over its
//     neighbours v that completed step 2 (+ when u < v);
//  4. once the server names the survivors of step 3, reveals its shares of
//     b_v for surviving neighbours and of s_v for neighbours that dropped —
//     never both for one v, and only once per round.
//
// The server sums the y_u of the survivors, rebuilds their b_v and the
// dropped clients' s_v from t shares each, and removes the masks. Neighbours
// come from a randomly relabelled Harary graph of degree k (SecAgg+);
// k = n − 1 is the complete graph (SecAgg).
package secagg
