// Package pki makes and reads the federation's certificates: one CA per
// federation, and certificates for coordinators, participants and admins,
// whose role, name and organisation every connection reads from the peer's
// certificate (never from a request field). It also makes the gossip key.
//
// Each role has its own certificate profile (CA.IssueWith): a coordinator's
// may serve and dial, and names its hosts; an inference server's may only
// serve; a participant's, an admin's or a consumer's may only dial and names
// none. Coordinators admit a role only where a service names it, and no
// coordinator service names consumer or inference: those two roles reach
// accord serve and nothing else. Clients dialling coordinators (ClientTLS)
// also refuse any server whose certificate is not a coordinator's, so that
// a participant's certificate, even one wrongly issued to serve, cannot pose
// as a coordinator. Certificates are valid for DefaultValidity unless the
// issuer says otherwise, and revocations name them by SerialOf.
//
// On disk a federation folder holds ca.crt and ca.key (the CA), gossip.key,
// and NAME.crt / NAME.key per issued identity.
package pki
