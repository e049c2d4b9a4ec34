package coordinator

import (
	"slices"
	"sync"
	"time"

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// session is one participant's open Tasks stream on this coordinator.
type session struct {
	id       string
	datasets []string
	tasks    chan *pb.Task
	done     chan struct{}
}

// taskBuffer is how many tasks may wait for a slow participant before more
// are dropped (a dropped training task is a dropout).
const taskBuffer = 16

// sessions tracks which participants are connected to this coordinator.
type sessions struct {
	mu       sync.Mutex
	byID     map[string]*session
	lastSeen map[string]time.Time
	datasets map[string][]string // from Register, kept across reconnects
}

func newSessions() *sessions {
	return &sessions{byID: map[string]*session{}, lastSeen: map[string]time.Time{}, datasets: map[string][]string{}}
}

// open registers a new stream for id, replacing (and ending) an older one.
func (s *sessions) open(id string, now time.Time) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.byID[id]; ok {
		close(old.done)
	}
	ses := &session{id: id, datasets: s.datasets[id], tasks: make(chan *pb.Task, taskBuffer), done: make(chan struct{})}
	s.byID[id] = ses
	s.lastSeen[id] = now
	return ses
}

// close removes ses if it is still the current stream for its participant.
func (s *sessions) close(ses *session, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byID[ses.id] == ses {
		delete(s.byID, ses.id)
		close(ses.done)
	}
	s.lastSeen[ses.id] = now
}

func (s *sessions) setDatasets(id string, datasets []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.datasets[id] = slices.Clone(datasets)
	if ses, ok := s.byID[id]; ok {
		ses.datasets = s.datasets[id]
	}
}

// connected lists, sorted, the participants connected now that can train
// on dataset ("" for any).
func (s *sessions) connected(dataset string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, ses := range s.byID {
		if dataset == "" || slices.Contains(ses.datasets, dataset) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// send queues a task for a participant; false if it is not connected or its
// queue is full.
func (s *sessions) send(id string, t *pb.Task) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ses, ok := s.byID[id]
	if !ok {
		return false
	}
	select {
	case ses.tasks <- t:
		return true
	default:
		return false
	}
}

func (s *sessions) status(id string) (connected bool, lastSeen time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, connected = s.byID[id]
	return connected, s.lastSeen[id]
}

func (s *sessions) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// closeAll ends every stream (the participants reconnect): used when this
// node stops leading, so that they reach the new leader.
func (s *sessions) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, ses := range s.byID {
		close(ses.done)
		delete(s.byID, id)
	}
}
