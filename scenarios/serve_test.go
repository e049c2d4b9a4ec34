package scenarios

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator/state"
)

// serveBase is a valid scenario to which the tests add a serve section.
const serveBase = `
name: serve
coordinators: [{name: coord-a, organization: org-a}]
participants:
  groups: [{region: de, prefix: de-site, count: 2}]
  data: {dataset: synthetic, synthetic: {alpha: 0.5, beta: 0.5}, seed: 2}
job: {name: synthetic, model: "logreg:60-10", dataset: synthetic, rounds: 2, participants_per_round: 2}
`

// TestServeSection: a serve section takes the defaults for what it leaves
// out, keeps a 0 or false it gives, and is refused naming the field and
// its line when a value is out of range.
func TestServeSection(t *testing.T) {
	def := DefaultServeSpec()
	with := func(f func(*ServeSpec)) *ServeSpec {
		s := def
		f(&s)
		return &s
	}
	for _, tc := range []struct {
		name, yaml string
		want       *ServeSpec
		wantField  string // a FieldError's field; "" with want
	}{
		{"no section", "", nil, ""},
		{"empty section: defaults", "serve: {}", &def, ""},
		{"max_wait 0 kept", "serve: {max_wait: 0s}", with(func(s *ServeSpec) { s.MaxWait = 0 }), ""},
		{"REST only", "serve: {grpc: false, rate: 5, rows: 3}", with(func(s *ServeSpec) { s.GRPC, s.Rate, s.Rows = false, 5, 3 }), ""},
		{"every field", "serve:\n  rest: true\n  grpc: false\n  max_batch: 8\n  max_wait: 5ms\n  poll: 1s\n  clients: 3\n  rate: 40\n  rows: 2\n  requests: 100\n",
			&ServeSpec{REST: true, MaxBatch: 8, MaxWait: state.Duration(5 * time.Millisecond), Poll: state.Duration(time.Second),
				Clients: 3, Rate: 40, Rows: 2, Requests: 100}, ""},
		{"serves nothing", "serve: {rest: false, grpc: false}", nil, "serve"},
		{"max_batch 0", "serve: {max_batch: 0}", nil, "serve.max_batch"},
		{"max_wait too long", "serve: {max_wait: 2s}", nil, "serve.max_wait"},
		{"poll too often", "serve:\n  poll: 1ms\n", nil, "serve.poll"},
		{"no clients", "serve: {clients: 0}", nil, "serve.clients"},
		{"rate 0", "serve: {rate: 0}", nil, "serve.rate"},
		{"rate NaN", "serve: {rate: .nan}", nil, "serve.rate"},
		{"rows 0", "serve: {rows: 0}", nil, "serve.rows"},
		{"negative requests", "serve: {requests: -1}", nil, "serve.requests"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc, err := Parse([]byte(serveBase + tc.yaml))
			if tc.wantField != "" {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tc.wantField {
					t.Fatalf("got %v; want a FieldError naming %s", err, tc.wantField)
				}
				if want := strings.Count(serveBase, "\n") + 1; fe.Line < want {
					t.Errorf("error at line %d; want the serve section's (line %d or after)", fe.Line, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.want == nil && sc.Serve != nil:
				t.Errorf("got serve %+v; want none", *sc.Serve)
			case tc.want != nil && (sc.Serve == nil || *sc.Serve != *tc.want):
				t.Errorf("got serve %+v; want %+v", sc.Serve, *tc.want)
			}
		})
	}
	if _, err := Parse([]byte(serveBase + "serve: {bogus: 1}")); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("an unknown serve field: %v; want it refused by name", err)
	}
	clash := strings.Replace(serveBase, "name: coord-a", "name: serve-client", 1) + "serve: {}"
	if _, err := Parse([]byte(clash)); err == nil || !strings.Contains(err.Error(), "coordinators[0].name") {
		t.Errorf("a coordinator named as a serve certificate: %v; want it refused naming coordinators[0].name", err)
	}
}

const serveScenario = `
name: serve-synthetic
coordinators:
  - {name: coord-a, organization: org-a}
participants:
  groups:
    - {region: de, prefix: de-site, count: 4}
    - {region: jp, prefix: jp-site, count: 2}
  data: {dataset: synthetic, synthetic: {alpha: 0.5, beta: 0.5}, seed: 2}
job:
  name: synthetic
  model: logreg:60-10
  dataset: synthetic
  rounds: 8
  target_accuracy: 0
  participants_per_round: 6
  min_participants: 6
  round_deadline: 30s
  learning_rate: 0.01
  local_epochs: 2
serve: {poll: 50ms, clients: 4, rate: 200, rows: 2}
timeout: 5m
`

// TestRunScenarioWithServe runs a federation with an accord serve beside
// it, called over REST and gRPC while the job commits rounds: no request
// may fail, every answer must name a committed round and its digest, the
// model must be swapped under load, the last committed round must answer
// in the end, and the accuracy on the rows answered must be that of the
// committed models the answers name.
func TestRunScenarioWithServe(t *testing.T) {
	sc, err := Parse([]byte(serveScenario))
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	rep, err := Run(t.Context(), sc, Options{Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(progress.String())
	if rep.RoundsCommitted != 8 || !rep.InvariantsOK || !slices.Contains(rep.InvariantsChecked, serveInvariant) {
		t.Fatalf("%d rounds committed, invariants ok %v (%s), checked %v; want 8, ok, with serve's",
			rep.RoundsCommitted, rep.InvariantsOK, rep.InvariantsError, rep.InvariantsChecked)
	}
	s := rep.Serve
	if s == nil {
		t.Fatal("no serve report")
	}
	t.Logf("serve: %+v", *s)
	if s.Sent == 0 || s.Failed != 0 || s.Answered != s.Sent || len(s.Errors) != 0 {
		t.Errorf("%d requests sent, %d failed, %d answered (%v); want some, none failed, all answered", s.Sent, s.Failed, s.Answered, s.Errors)
	}
	if s.AnsweredBy[protoREST] == 0 || s.AnsweredBy[protoGRPC] == 0 {
		t.Errorf("answered by protocol %v; want both REST and gRPC", s.AnsweredBy)
	}
	if s.NotCommitted != 0 {
		t.Errorf("%d answers named a round or digest the job did not commit", s.NotCommitted)
	}
	if len(s.Rounds) < 2 {
		t.Errorf("answers named %d rounds; want the model swapped under load at least once", len(s.Rounds))
	}
	if s.LastRound != rep.RoundsCommitted {
		t.Errorf("the last round answering was %d; want the job's last, %d", s.LastRound, rep.RoundsCommitted)
	}
	if s.Rows != 2*s.Answered {
		t.Errorf("%d rows answered in %d answers; want 2 each", s.Rows, s.Answered)
	}
	// The rows answered are a sample of the test set: the accuracy on them
	// is the committed models' test accuracy, within sampling error.
	var want float64
	for _, r := range s.Rounds {
		if !r.Committed || r.Rows == 0 {
			t.Errorf("served round %+v: want a committed round", r)
		}
		want += r.TestAccuracy * float64(r.Rows) / float64(s.Rows)
	}
	if math.Abs(s.Accuracy-want) > 0.1 {
		t.Errorf("accuracy %.3f on %d rows answered; want the answering models' test accuracy, %.3f, within 0.1", s.Accuracy, s.Rows, want)
	}
}
