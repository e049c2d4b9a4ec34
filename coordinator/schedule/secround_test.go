package schedule

import (
	"strings"
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator/state"
)

// TestSecurePhaseClosesEarly: the advertise-keys phase (training) of a
// secure round closes once the advertisements wanted arrived, or once
// stragglers held it for the straggler factor times its median member's
// time, instead of waiting for its deadline while silent members stay
// connected. Answers are simulated (the clients' messages are not built
// here), so the protocol then finds too few advertisements and the phase
// fails: what is tested is when it closes, and that the reason says why.
func TestSecurePhaseClosesEarly(t *testing.T) {
	t0 := time.Unix(0, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	live := func(string) bool { return true } // the silent stay connected
	cases := []struct {
		name      string
		wanted    int
		straggler float64
		answered  int
		answerAt  float64
		pendingAt float64
		closesAt  float64
		why       string
	}{
		{"the advertisements wanted", 6, 3, 6, 1, -1, 1, "the 6 wanted"},
		{"stragglers past 3× the median", 0, 3, 5, 1, 2.9, 3, "stragglers cut"},
		{"rules off: the deadline", 0, 0, 6, 1, 599, 600, "by the phase deadline"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cohort := names("p", 9)
			s, err := newSecureRound(state.SecureAggregation{Mode: state.ModeSecAggPlus, DropoutRate: 0.3}, []byte("session"), 0, cohort, 4, 1,
				t0, at(600), nil, nil, 2)
			if err != nil {
				t.Fatal(err)
			}
			s.wanted, s.straggler = c.wanted, c.straggler
			for i := range c.answered {
				delete(s.waiting, i) // as advertise does for an accepted message
			}
			if c.closesAt > c.answerAt {
				if _, _, err := s.advance(at(c.answerAt), live); err != nil || s.phase != phaseAdvertise {
					t.Fatalf("at %gs, when the answers came: %v, phase %v; want it still open", c.answerAt, err, s.phase)
				}
			}
			if c.pendingAt >= 0 {
				if _, _, err := s.advance(at(c.pendingAt), live); err != nil || s.phase != phaseAdvertise {
					t.Fatalf("at %gs: %v, phase %v; want it still open", c.pendingAt, err, s.phase)
				}
			}
			_, _, err = s.advance(at(c.closesAt), live)
			notes := strings.Join(s.notes, "; ")
			if err == nil || !strings.Contains(notes, c.why) {
				t.Fatalf("at %gs: %v (%s); want the phase closed (%s)", c.closesAt, err, notes, c.why)
			}
			t.Logf("closed at %gs (%s): %v", c.closesAt, notes, err)
		})
	}
}
