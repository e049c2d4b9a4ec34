// Package audit is the federation's audit trail: a hash-chained log of
// signed admin actions. Each entry holds the admin's signed request
// (package adminauth) and the hash of the entry before it, so the whole log
// can be checked from the federation CA certificate alone: an altered,
// removed or reordered entry breaks the chain, and an entry no admin signed
// breaks its signature.
package audit

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/accord-fl/accord/adminauth"
)

// Entry is one admin action in the log.
type Entry struct {
	Index    uint64 `json:"index"` // position in the log, from 0
	PrevHash []byte `json:"prev_hash"`
	Hash     []byte `json:"hash"`
	// Action names what was done (submit_job, approve, cancel_job,
	// add_member, remove_member, set_policy, revoke); Summary says it in
	// words, with its target.
	Action  string `json:"action"`
	Summary string `json:"summary"`
	// Signer and Organization are the admin's, from the certificate.
	Signer       string `json:"signer"`
	Organization string `json:"organization"`
	// Signed is the admin's signed request.
	Signed adminauth.Signed `json:"signed"`
	// CommittedUnixMs is when the leader committed the action.
	CommittedUnixMs int64 `json:"committed_unix_ms"`
}

// ErrBroken means the log does not verify; the error is an *EntryError
// naming the first entry that does not.
var ErrBroken = errors.New("audit log does not verify")

// EntryError names the first entry of a log that does not verify.
type EntryError struct {
	Index uint64
	Err   error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("%v: entry %d: %v", ErrBroken, e.Index, e.Err)
}

// Unwrap lets errors.Is find ErrBroken and the cause.
func (e *EntryError) Unwrap() []error { return []error{ErrBroken, e.Err} }

// ComputeHash is the SHA-256 of the previous entry's hash and every other
// field of e, each length-prefixed.
func (e *Entry) ComputeHash() []byte {
	var b bytes.Buffer
	b.WriteString("accord audit entry v1\x00")
	field := func(f []byte) {
		b.Write(binary.BigEndian.AppendUint32(nil, uint32(len(f))))
		b.Write(f)
	}
	num := func(v uint64) { field(binary.BigEndian.AppendUint64(nil, v)) }
	num(e.Index)
	field(e.PrevHash)
	field([]byte(e.Action))
	field([]byte(e.Summary))
	field([]byte(e.Signer))
	field([]byte(e.Organization))
	field([]byte(e.Signed.Method))
	field(e.Signed.Request)
	num(uint64(e.Signed.UnixMs))
	field(e.Signed.Nonce)
	field(e.Signed.Certificate)
	field(e.Signed.Signature)
	num(uint64(e.CommittedUnixMs))
	sum := sha256.Sum256(b.Bytes())
	return sum[:]
}

// Chain sets e's index, previous hash and hash to follow prev (nil for the
// first entry) and returns it.
func Chain(prev *Entry, e Entry) Entry {
	e.Index, e.PrevHash = 0, nil
	if prev != nil {
		e.Index, e.PrevHash = prev.Index+1, prev.Hash
	}
	e.Hash = e.ComputeHash()
	return e
}

// actions are the audit action each signed admin method records.
var actions = map[string]string{
	"/accord.v1.AdminService/SubmitJob":    "submit_job",
	"/accord.v1.AdminService/CancelJob":    "cancel_job",
	"/accord.v1.AdminService/Approve":      "approve",
	"/accord.v1.AdminService/AddMember":    "add_member",
	"/accord.v1.AdminService/RemoveMember": "remove_member",
	"/accord.v1.AdminService/SetPolicy":    "set_policy",
	"/accord.v1.AdminService/Revoke":       "revoke",
	"/accord.v1.AdminService/DeleteJob":    "delete_job",
}

// Verify checks a whole log, oldest first: indices from 0 without gaps,
// each entry's previous hash and hash, and each signature against the
// federation CA in pool at its signing time, by the admin the entry names.
// It returns an *EntryError for the first entry that fails.
func Verify(entries []Entry, pool *x509.CertPool) error {
	var prevHash []byte
	for i := range entries {
		e := &entries[i]
		fail := func(format string, args ...any) error {
			return &EntryError{Index: uint64(i), Err: fmt.Errorf(format, args...)}
		}
		if e.Index != uint64(i) {
			return fail("index %d at position %d (an entry was removed or reordered)", e.Index, i)
		}
		if !bytes.Equal(e.PrevHash, prevHash) {
			return fail("previous hash does not match entry %d's hash (an entry before it was altered or removed)", i-1)
		}
		if !bytes.Equal(e.ComputeHash(), e.Hash) {
			return fail("hash does not match the entry's contents (the entry was altered)")
		}
		id, _, err := e.Signed.Verify(pool)
		if err != nil {
			return fail("%v", err)
		}
		if id.Name != e.Signer || id.Organization != e.Organization {
			return fail("signed by %s of %s, but the entry names %s of %s", id.Name, id.Organization, e.Signer, e.Organization)
		}
		if want, ok := actions[e.Signed.Method]; !ok || want != e.Action {
			return fail("action %q, but the admin signed %s", e.Action, e.Signed.Method)
		}
		prevHash = e.Hash
	}
	return nil
}
