package coordinator

import "github.com/accord-fl/accord/coordinator/state"

// coordinatorWorld is the world as a leader sees it.
type coordinatorWorld struct {
	sessions *sessions
	fsm      *state.FSM
}

func (w coordinatorWorld) Connected(dataset string) []string { return w.sessions.connected(dataset) }

func (w coordinatorWorld) Live(id string) bool {
	ok, _ := w.sessions.status(id)
	return ok
}

func (w coordinatorWorld) Participants() []*state.Participant { return w.fsm.Participants() }
