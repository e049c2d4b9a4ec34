package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/accord-fl/accord/participant"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// TestParticipantCSVOptions: --validation keeps every row of --data for
// training, in file order; --classes numbers the labels as the federation
// does even when a file lacks a class; --standardize=false leaves the
// features alone; and without them the rows are split and standardised as
// before.
func TestParticipantCSVOptions(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	train := write("train.csv", "label,a,b\n2,1,10\n0,2,20\n2,3,30\n0,4,40\n")
	val := write("val.csv", "label,a,b\n1,5,50\n0,6,60\n")
	otherCols := write("other.csv", "label,a,c\n1,5,50\n0,6,60\n")

	tr, v, err := loadCSVData(csvOptions{file: train, label: "label", validation: val, classes: "0,1,2", seed: 1})
	switch {
	case err != nil:
		t.Fatal(err)
	case tr.Len() != 4 || !slices.Equal(tr.X, []float32{1, 10, 2, 20, 3, 30, 4, 40}) || !slices.Equal(tr.Y, []int32{2, 0, 2, 0}) || tr.Classes != 3:
		t.Errorf("training data %v %v (%d classes); want every row in file order, labels 2 0 2 0 of 3 classes", tr.X, tr.Y, tr.Classes)
	case !slices.Equal(v.X, []float32{5, 50, 6, 60}) || !slices.Equal(v.Y, []int32{1, 0}) || v.Classes != 3:
		t.Errorf("validation data %v %v (%d classes); want the validation file, labels 1 0 of 3 classes", v.X, v.Y, v.Classes)
	}

	if _, _, err := loadCSVData(csvOptions{file: train, label: "label", validation: val, classes: "0,2"}); err == nil || !strings.Contains(err.Error(), `"1"`) {
		t.Errorf("a validation label outside --classes: %v; want an error naming it", err)
	}
	if _, _, err := loadCSVData(csvOptions{file: train, label: "label", validation: otherCols}); err == nil || !strings.Contains(err.Error(), "feature columns differ") {
		t.Errorf("a validation file with other columns: %v; want an error", err)
	}
	if _, _, err := loadCSVData(csvOptions{file: train, label: "label", classes: "0,0"}); err == nil || exitCode(err) != 2 {
		t.Errorf("--classes 0,0: %v; want a usage error", err)
	}

	// The default: a seeded split, standardised on the training rows.
	tr, v, err = loadCSVData(csvOptions{file: train, label: "label", validationFraction: 0.25, standardize: true, seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Len() != 3 || v.Len() != 1 || tr.Classes != 2 {
		t.Fatalf("split %d/%d rows, %d classes; want 3/1 of 2 classes", tr.Len(), v.Len(), tr.Classes)
	}
	var mean float32
	for i := range tr.Len() {
		mean += tr.Row(i)[0] / 3
	}
	if mean > 1e-5 || mean < -1e-5 {
		t.Errorf("standardised training column a has mean %v; want 0", mean)
	}
}

// TestParticipantFaultFlags: the fault flags make a participant flip and
// slow its updates from the rounds given, and drop those of the rounds
// given (every attempt, or the first only).
func TestParticipantFaultFlags(t *testing.T) {
	fs := flag.NewFlagSet("participant", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ff := addFaultFlags(fs)
	if err := fs.Parse([]string{"--fault-flip-scale", "5", "--fault-flip-from-round", "3", "--fault-epoch-delay", "2s",
		"--fault-drop-after-training", "4", "--fault-drop-first-attempt", "2,6"}); err != nil {
		t.Fatal(err)
	}
	var cfg participant.Config
	if err := ff.apply(&cfg); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		round, attempt uint32
		flip           float64
		delay          time.Duration
		drop           bool
	}{
		{1, 1, 0, 2 * time.Second, false},
		{2, 1, 0, 2 * time.Second, true},
		{2, 2, 0, 2 * time.Second, false},
		{3, 1, 5, 2 * time.Second, false},
		{4, 2, 5, 2 * time.Second, true},
		{6, 1, 5, 2 * time.Second, true},
	} {
		task := &pb.Task{Round: tc.round, Attempt: tc.attempt}
		flip, delay := cfg.FaultAt(task)
		drop := cfg.BeforeUpload(task) != nil
		if flip != tc.flip || delay != tc.delay || drop != tc.drop {
			t.Errorf("round %d attempt %d: flip %v, delay %s, drop %v; want %v, %s, %v", tc.round, tc.attempt, flip, delay, drop, tc.flip, tc.delay, tc.drop)
		}
	}
	fs = flag.NewFlagSet("participant", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ff = addFaultFlags(fs)
	if err := fs.Parse([]string{"--fault-drop-first-attempt", "0"}); err != nil {
		t.Fatal(err)
	}
	if err := ff.apply(&participant.Config{}); err == nil || exitCode(err) != 2 {
		t.Errorf("--fault-drop-first-attempt 0: %v; want a usage error", err)
	}
}
