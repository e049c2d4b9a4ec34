package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/accord-fl/accord/scenarios"
)

// TestDemoServe runs `accord demo --serve --rounds 2 --json`: the demo's
// federation trains two rounds while accord serve, started beside it,
// answers REST and gRPC calls with its models. The report must show
// answers from committed rounds, none failed, over both protocols.
func TestDemoServe(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs the demo federation on MNIST")
	}
	needMNIST(t)
	var out, errOut bytes.Buffer
	err := NewMain(&out, &errOut).Run(t.Context(), []string{"demo", "--serve", "--rounds", "2", "--json"})
	if err != nil {
		t.Fatalf("accord demo --serve: %v\n%s", err, errOut.String())
	}
	var rep scenarios.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("--json output is not one JSON object: %v\n%s", err, out.String())
	}
	s := rep.Serve
	switch {
	case rep.RoundsCommitted != 2 || !rep.InvariantsOK:
		t.Fatalf("%d rounds committed, invariants ok %v (%s); want 2 and ok", rep.RoundsCommitted, rep.InvariantsOK, rep.InvariantsError)
	case s == nil:
		t.Fatal("the report has no serve section")
	case s.Answered == 0 || s.Failed > 0 || s.NotCommitted > 0:
		t.Fatalf("accord serve: %d sent, %d answered, %d failed, %d naming no committed round (%v)", s.Sent, s.Answered, s.Failed, s.NotCommitted, s.Errors)
	case s.AnsweredBy["rest"] == 0 || s.AnsweredBy["grpc"] == 0:
		t.Fatalf("answers by protocol %v; want REST and gRPC", s.AnsweredBy)
	case s.LastRound != 2:
		t.Fatalf("the last round served is %d; want 2, the job's last", s.LastRound)
	}
	t.Logf("accord serve: %d requests, %d answered (%v), rounds %d..%d, %.1f%% of %d rows right, p50 %.1f ms",
		s.Sent, s.Answered, s.AnsweredBy, s.Rounds[0].Round, s.LastRound, 100*s.Accuracy, s.Rows, s.P50Ms)
}
