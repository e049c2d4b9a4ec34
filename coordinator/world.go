package coordinator

import "github.com/accord-fl/accord/coordinator/state"

// coordinatorWorld is the world as a leader sees it.
type coordinatorWorld struct {
	sessions *sessions
	fsm      *state.FSM
}

func (w coordinatorWorld) connected(dataset string) []string { return w.sessions.connected(dataset) }

func (w coordinatorWorld) live(id string) bool {
	ok, _ := w.sessions.status(id)
	return ok
}

func (w coordinatorWorld) participant(id string) *state.Participant { return w.fsm.Participant(id) }

func (w coordinatorWorld) participantIDs() []string { return w.fsm.ParticipantIDs() }
