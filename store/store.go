package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/hashicorp/raft"

	"github.com/accord-fl/accord/protocol"
)

// Errors returned by this package.
var (
	// ErrNotFound is returned for missing keys. Its text is "not found",
	// which hashicorp/raft checks for on a fresh stable store.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt means a stored record does not decode, or a blob does not
	// match its digest.
	ErrCorrupt = errors.New("corrupt record")
)

var (
	prefixLog    = []byte("l")
	prefixStable = []byte("s")
	prefixBlob   = []byte("b")
)

// Store holds the Raft log and Raft's stable values in one Badger
// database, and content-addressed blobs in a second one (in the folder
// blobs/ inside it). Blobs have their own database because deleting them
// for good (DeleteBlobs) blocks that database's writes for a moment, which
// the Raft log must never see. It is safe for concurrent use.
type Store struct {
	db    *badger.DB
	blobs *badger.DB
	// recent are the blobs read most recently, checked: a new model is
	// downloaded by every participant of the next round, and each read
	// from Badger copies it and hashes it again.
	recent *lru.Cache[string, []byte]

	mu          sync.Mutex // guards the cached indexes
	first, last uint64
	closeOnce   sync.Once
}

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

// Open opens (creating if needed) the databases in dir. Every write is
// synced before it returns, so an acknowledged Raft entry survives a power
// cut. In the blob database values over 1 KiB live in the value log, in
// files of 8 MiB, so the space of deleted blobs can be collected file by
// file.
func Open(dir string, logger *slog.Logger) (*Store, error) {
	open := func(dir string, blobs bool) (*badger.DB, error) {
		opts := badger.DefaultOptions(dir).
			WithSyncWrites(true).
			WithLogger(badgerLogger{logger}).
			WithNumVersionsToKeep(1).
			WithMemTableSize(16 << 20).
			WithValueLogFileSize(64 << 20).
			WithNumCompactors(2)
		if blobs {
			opts = opts.WithValueThreshold(1 << 10).WithValueLogFileSize(8 << 20).WithMemTableSize(4 << 20)
		}
		db, err := badger.Open(opts)
		if err != nil {
			return nil, fmt.Errorf("opening badger in %s: %w", dir, err)
		}
		return db, nil
	}
	db, err := open(dir, false)
	if err != nil {
		return nil, err
	}
	blobs, err := open(filepath.Join(dir, "blobs"), true)
	if err != nil {
		db.Close()
		return nil, err
	}
	recent, err := lru.New[string, []byte](recentBlobs)
	if err != nil {
		db.Close()
		blobs.Close()
		return nil, err
	}
	s := &Store{db: db, blobs: blobs, recent: recent}
	if err := s.loadIndexes(); err != nil {
		db.Close()
		blobs.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database; it is safe to call twice.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() { err = errors.Join(s.blobs.Close(), s.db.Close()) })
	return err
}

func logKey(i uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixLog[0]
	binary.BigEndian.PutUint64(k[1:], i)
	return k
}

func (s *Store) loadIndexes() error {
	return s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = prefixLog
		it := txn.NewIterator(opts)
		it.Rewind()
		if it.Valid() {
			s.first = binary.BigEndian.Uint64(it.Item().Key()[1:])
		}
		it.Close()
		opts.Reverse = true
		it = txn.NewIterator(opts)
		defer it.Close()
		it.Seek(append(append([]byte{}, prefixLog...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
		if it.Valid() {
			s.last = binary.BigEndian.Uint64(it.Item().Key()[1:])
		}
		return nil
	})
}

// FirstIndex returns the first index in the log (0 if empty).
func (s *Store) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first, nil
}

// LastIndex returns the last index in the log (0 if empty).
func (s *Store) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, nil
}

// GetLog reads the entry at index into out.
func (s *Store) GetLog(index uint64, out *raft.Log) error {
	return s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(logKey(index))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return raft.ErrLogNotFound
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return decodeLog(v, out) })
	})
}

// StoreLog stores one entry.
func (s *Store) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs stores entries in one synced write batch.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, l := range logs {
		if err := wb.Set(logKey(l.Index), encodeLog(l)); err != nil {
			return fmt.Errorf("storing log %d: %w", l.Index, err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("storing logs: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range logs {
		if s.first == 0 || l.Index < s.first {
			s.first = l.Index
		}
		s.last = max(s.last, l.Index)
	}
	return nil
}

// DeleteRange deletes entries min through max inclusive.
func (s *Store) DeleteRange(lo, hi uint64) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for i := lo; i <= hi; i++ {
		if err := wb.Delete(logKey(i)); err != nil {
			return err
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("deleting logs %d–%d: %w", lo, hi, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if lo <= s.first {
		s.first = hi + 1
	}
	if hi >= s.last {
		s.last = lo - 1
	}
	if s.first > s.last {
		s.first, s.last = 0, 0
	}
	return nil
}

// encodeLog lays an entry out as index, term, type, appended-at (8+8+1+8
// bytes), then the data and the extensions, each behind its uvarint length.
func encodeLog(l *raft.Log) []byte {
	b := make([]byte, 0, 25+len(l.Data)+len(l.Extensions)+20)
	b = binary.BigEndian.AppendUint64(b, l.Index)
	b = binary.BigEndian.AppendUint64(b, l.Term)
	b = append(b, byte(l.Type))
	b = binary.BigEndian.AppendUint64(b, uint64(l.AppendedAt.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.AppendUvarint(b, uint64(len(l.Extensions)))
	return append(b, l.Extensions...)
}

func decodeLog(b []byte, l *raft.Log) error {
	if len(b) < 25 {
		return fmt.Errorf("%w: log record of %d bytes", ErrCorrupt, len(b))
	}
	l.Index = binary.BigEndian.Uint64(b)
	l.Term = binary.BigEndian.Uint64(b[8:])
	l.Type = raft.LogType(b[16])
	l.AppendedAt = time.Unix(0, int64(binary.BigEndian.Uint64(b[17:])))
	rest := b[25:]
	field := func() ([]byte, error) {
		n, k := binary.Uvarint(rest)
		if k <= 0 || uint64(len(rest)-k) < n {
			return nil, fmt.Errorf("%w: log record %d truncated", ErrCorrupt, l.Index)
		}
		v := append([]byte(nil), rest[k:k+int(n)]...)
		rest = rest[k+int(n):]
		return v, nil
	}
	var err error
	if l.Data, err = field(); err != nil {
		return err
	}
	l.Extensions, err = field()
	return err
}

// Set stores a stable value.
func (s *Store) Set(key, val []byte) error {
	return s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(append(append([]byte{}, prefixStable...), key...), append([]byte(nil), val...))
	})
}

// Get reads a stable value; ErrNotFound if it is not set.
func (s *Store) Get(key []byte) ([]byte, error) {
	var out []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(append(append([]byte{}, prefixStable...), key...))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	return out, err
}

// SetUint64 stores a stable integer.
func (s *Store) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 reads a stable integer; ErrNotFound if it is not set.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	b, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: stable value %q has %d bytes", ErrCorrupt, key, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// PutBlob stores data under its digest (protocol.Digest) and returns the
// digest. Storing the same content twice is harmless.
func (s *Store) PutBlob(data []byte) (string, error) {
	d := protocol.Digest(data)
	return d, s.PutCheckedBlob(d, data)
}

// PutCheckedBlob stores data under digest, which the caller has checked
// is its protocol.Digest (a blob received and verified), without hashing
// it again.
func (s *Store) PutCheckedBlob(d string, data []byte) error {
	var err error
	// Writes wait out a DeleteBlobs in progress (Badger refuses them
	// meanwhile with ErrBlockedWrites).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		err = s.blobs.Update(func(txn *badger.Txn) error {
			return txn.Set(append(append([]byte{}, prefixBlob...), d...), data)
		})
		if !errors.Is(err, badger.ErrBlockedWrites) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("storing blob %s: %w", d, err)
	}
	return nil
}

// recentBlobs is how many blobs the store keeps in memory after reading
// them: a job's latest models and optimiser states (with the FedAvg CNN,
// 8 × 6.7 MB).
const recentBlobs = 8

// GetBlob reads the blob with the given digest and checks its hash. The
// blobs read most recently come from memory, checked when they were read:
// the slice returned is shared, and callers must not change it.
func (s *Store) GetBlob(digest string) ([]byte, error) {
	if b, ok := s.recent.Get(digest); ok {
		return b, nil
	}
	var out []byte
	err := s.blobs.View(func(txn *badger.Txn) error {
		item, err := txn.Get(append(append([]byte{}, prefixBlob...), digest...))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("blob %s: %w", digest, ErrNotFound)
		}
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	if got := protocol.Digest(out); got != digest {
		return nil, fmt.Errorf("%w: blob %s hashes to %s", ErrCorrupt, digest, got)
	}
	s.recent.Add(digest, out)
	return out, nil
}

// HasBlob reports whether the blob is stored.
func (s *Store) HasBlob(digest string) (bool, error) {
	err := s.blobs.View(func(txn *badger.Txn) error {
		_, err := txn.Get(append(append([]byte{}, prefixBlob...), digest...))
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// DeleteBlobs removes blobs (deleting one that is not there is harmless).
// It uses Badger's DropPrefix, which flushes the memtable and compacts the
// keys away at once, so the value log's discard statistics know the space
// is free: the next CollectGarbage gives it back to the disk. (A plain
// delete leaves a tombstone in the memtable, and the value log would keep
// the bytes until compactions happen to reach them.) Writes wait while it
// runs; call it with a batch.
func (s *Store) DeleteBlobs(digests ...string) error {
	if len(digests) == 0 {
		return nil
	}
	keys := make([][]byte, len(digests))
	for i, d := range digests {
		keys[i] = append(append([]byte{}, prefixBlob...), d...)
		s.recent.Remove(d)
	}
	if err := s.blobs.DropPrefix(keys...); err != nil {
		return fmt.Errorf("deleting %d blobs: %w", len(digests), err)
	}
	return nil
}

// CollectGarbage rewrites value-log files of which at least discardRatio
// is garbage (deleted blobs, compacted Raft log entries), until none is
// left, and returns how many it rewrote. Badger never does this by itself.
func (s *Store) CollectGarbage(discardRatio float64) (int, error) {
	n := 0
	for _, db := range []*badger.DB{s.blobs, s.db} {
		for {
			err := db.RunValueLogGC(discardRatio)
			if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
				break
			}
			if err != nil {
				return n, fmt.Errorf("value-log garbage collection: %w", err)
			}
			n++
		}
	}
	return n, nil
}

// DiskUsage is the bytes the files in dir (a store's folder, say) occupy
// on disk: blocks allocated, not file lengths (Badger preallocates and
// maps files larger than what they hold).
func DiskUsage(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}

// badgerLogger sends Badger's warnings and errors to slog and drops its
// chatter.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.log(slog.LevelError, f, a...) }
func (b badgerLogger) Warningf(f string, a ...any) { b.log(slog.LevelWarn, f, a...) }
func (b badgerLogger) Infof(string, ...any)        {}
func (b badgerLogger) Debugf(string, ...any)       {}

func (b badgerLogger) log(level slog.Level, f string, a ...any) {
	if b.l != nil {
		b.l.Log(context.Background(), level, "badger: "+fmt.Sprintf(f, a...))
	}
}
