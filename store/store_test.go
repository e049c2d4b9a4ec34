package store

import (
	"bytes"
	"crypto/rand"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestReopenFindsEverything(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUint64([]byte("CurrentTerm")); !errors.Is(err, ErrNotFound) || err.Error() != "not found" {
		t.Fatalf("fresh store: got %v; want the error raft expects, \"not found\"", err)
	}
	var logs []*raft.Log
	for i := uint64(1); i <= 10; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 2, Type: raft.LogCommand, Data: []byte{byte(i), 0, 1}, Extensions: []byte("x"), AppendedAt: time.Unix(100, int64(i))})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(1, 3); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("c1")); err != nil {
		t.Fatal(err)
	}
	blob := bytes.Repeat([]byte{1, 2, 3, 4}, 200_000)
	digest, err := s.PutBlob(blob)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if first != 4 || last != 10 {
		t.Fatalf("after reopening: indexes %d–%d; want 4–10", first, last)
	}
	var l raft.Log
	if err := s.GetLog(7, &l); err != nil {
		t.Fatal(err)
	}
	if l.Index != 7 || l.Term != 2 || l.Type != raft.LogCommand || !bytes.Equal(l.Data, []byte{7, 0, 1}) || string(l.Extensions) != "x" || !l.AppendedAt.Equal(time.Unix(100, 7)) {
		t.Fatalf("log 7 read back as %+v", l)
	}
	if err := s.GetLog(2, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("deleted log 2: got %v; want raft.ErrLogNotFound", err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
		t.Fatalf("CurrentTerm: got %d, %v; want 7", v, err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "c1" {
		t.Fatalf("LastVoteCand: got %q, %v", v, err)
	}
	got, err := s.GetBlob(digest)
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("blob: got %d bytes, %v", len(got), err)
	}
	if ok, _ := s.HasBlob("sha256:00"); ok {
		t.Fatal("HasBlob of an unknown digest is true")
	}
	if err := s.DeleteRange(4, 10); err != nil {
		t.Fatal(err)
	}
	first, _ = s.FirstIndex()
	last, _ = s.LastIndex()
	if first != 0 || last != 0 {
		t.Fatalf("emptied log: indexes %d–%d; want 0–0", first, last)
	}
}

// Deleted blobs leave the disk once the value log is collected.
func TestDeletedBlobsLeaveTheDisk(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var digests []string
	for range 400 {
		b := make([]byte, 64<<10)
		rand.Read(b)
		d, err := s.PutBlob(b)
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
	}
	full := DiskUsage(dir)
	if err := s.DeleteBlobs(digests[:390]...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CollectGarbage(0.5); err != nil {
		t.Fatal(err)
	}
	after := DiskUsage(dir)
	t.Logf("400 blobs of 64 KiB: %.1f MiB on disk; 390 deleted and collected: %.1f MiB", float64(full)/(1<<20), float64(after)/(1<<20))
	if after > full/2 {
		t.Errorf("%d bytes on disk after deleting 390 of 400 blobs; %d before", after, full)
	}
	for i, d := range digests {
		has, err := s.HasBlob(d)
		if err != nil || has != (i >= 390) {
			t.Fatalf("blob %d: stored %v (%v)", i, has, err)
		}
	}
}

// TestRecentBlobsComeFromMemory: a blob read again is the one first read
// (the same checked bytes, not another copy); a deleted blob is gone from
// memory too.
func TestRecentBlobsComeFromMemory(t *testing.T) {
	s, err := Open(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := make([]byte, 1<<20)
	rand.Read(b)
	d, err := s.PutBlob(b)
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.GetBlob(d)
	if err != nil || !bytes.Equal(first, b) {
		t.Fatalf("first read: %v", err)
	}
	again, err := s.GetBlob(d)
	if err != nil || &again[0] != &first[0] {
		t.Fatalf("second read: %v; want the bytes the first read checked, from memory", err)
	}
	if err := s.DeleteBlobs(d); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetBlob(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after deleting: %v; want ErrNotFound", err)
	}
}
