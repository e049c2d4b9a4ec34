package state

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// TestUntrainable: a job is refused at submission only when the registered
// participants show that none of them could train it; with nobody
// registered, or someone whose holdings are unknown, it is accepted.
func TestUntrainable(t *testing.T) {
	mnist := func(id string) *Participant {
		return &Participant{ID: id, Datasets: []DatasetShape{{Name: "mnist", Features: 784, Classes: 10}}}
	}
	spec := func(modelSpec, dataset string) JobSpec {
		s := DefaultJobSpec()
		s.Model, s.Dataset = modelSpec, dataset
		return s
	}
	three := []*Participant{mnist("site-1"), mnist("site-2"), mnist("site-3")}
	cases := []struct {
		name         string
		spec         JobSpec
		participants []*Participant
		want         []string // in the reason; none: trainable
		noHolder     bool
	}{
		{"nobody registered yet", spec("logreg:12-2", "cifar10"), nil, nil, false},
		{"the model fits", spec("mlp:784-200-10", "mnist"), three, nil, false},
		{"nobody holds the dataset", spec("logreg:784-10", "cifar10"), three,
			[]string{"dataset cifar10: no registered participant holds it", "mnist with 784 features and 10 classes: site-1, site-2, site-3"}, true},
		{"the inputs fit nobody's data", spec("logreg:12-2", "mnist"), three,
			[]string{"model logreg:12-2 takes 12 features and 2 classes", "no registered participant holds mnist data of that shape", "784 features and 10 classes"}, false},
		{"the classes fit nobody's data", spec("mlp:784-50-2", "mnist"), three, []string{"takes 784 features and 2 classes"}, false},
		{"one holder fits", spec("logreg:8-3", "mnist"), append(three[:2:2], &Participant{ID: "x", Datasets: []DatasetShape{{Name: "mnist", Features: 8, Classes: 3}}}), nil, false},
		{"a holder of unknown shape may fit", spec("logreg:12-2", "mnist"), append(three[:2:2], &Participant{ID: "old", Datasets: []DatasetShape{{Name: "mnist"}}}), nil, false},
		{"someone declared nothing", spec("logreg:784-10", "cifar10"), append(three[:2:2], &Participant{ID: "older"}), nil, false},
		{"many holders are summed up", spec("logreg:784-10", "cifar10"),
			append(three, mnist("site-4"), mnist("site-5")), []string{"site-1, site-2, site-3 and 2 more"}, true},
	}
	for _, c := range cases {
		why, noHolder := Untrainable(c.spec, c.participants)
		if (why == "") != (len(c.want) == 0) || noHolder != c.noHolder {
			t.Errorf("%s: got %q (no holder %v); want %v (no holder %v)", c.name, why, noHolder, c.want, c.noHolder)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(why, w) {
				t.Errorf("%s: got %q; want it to say %q", c.name, why, w)
			}
		}
	}
}

func TestDatasetsFromRegister(t *testing.T) {
	got, err := DatasetsFromRegister([]string{"mnist", "blobs"}, []*pb.DatasetShape{{Name: "mnist", Features: 784, Classes: 10}, {Name: "extra", Features: 3, Classes: 2}})
	want := []DatasetShape{{Name: "mnist", Features: 784, Classes: 10}, {Name: "blobs"}, {Name: "extra", Features: 3, Classes: 2}}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, %v; want %v", got, err, want)
	}
	for _, bad := range [][]string{{""}, {strings.Repeat("x", maxDatasetName+1)}, {"a\x1b[2Jb"}, make([]string, MaxDatasets+1)} {
		if _, err := DatasetsFromRegister(bad, nil); err == nil {
			t.Errorf("datasets %.60q accepted; want refused", bad)
		}
	}
}

// TestSanitizeReason: what a participant reports is shown to operators, so
// it is cut to maxReasonBytes of valid UTF-8 without control characters.
func TestSanitizeReason(t *testing.T) {
	cases := []struct{ in, want string }{
		{"shape mismatch: dataset has 784 features", "shape mismatch: dataset has 784 features"},
		{"line one\nline two\r\n\ttabbed", "line one line two tabbed"},
		{"\x1b[31mred\x1b[0m", "[31mred [0m"},
		{"bidi \u202eevil\u202c text", "bidi evil text"},
		{"bad \xff utf-8", "bad \uFFFD utf-8"},
		{"   ", ""},
	}
	for _, c := range cases {
		if got := SanitizeReason(c.in); got != c.want {
			t.Errorf("sanitizeReason(%q) = %q; want %q", c.in, got, c.want)
		}
	}
	long := SanitizeReason(strings.Repeat("é", 1000))
	if len(long) > maxReasonBytes || !utf8.ValidString(long) || !strings.HasSuffix(long, "…") {
		t.Errorf("a long reason became %d bytes (valid UTF-8: %v): %q", len(long), utf8.ValidString(long), long)
	}
}

func TestRefusalSummary(t *testing.T) {
	got := RefusalSummary(map[string]string{
		"site-1": "shape mismatch", "site-2": "shape mismatch", "site-3": "shape mismatch", "site-4": "shape mismatch",
		"site-5": "out of memory", "a": "policy", "b": "disk full", "c": "gone",
	})
	want := "participants refused: site-1, site-2, site-3 and 1 more: shape mismatch; a: policy; b: disk full; 2 more reasons"
	if got != want {
		t.Errorf("got %q;\nwant %q", got, want)
	}
	if got := RefusalSummary(nil); got != "" {
		t.Errorf("no reasons: got %q; want none", got)
	}
}

// TestFSMTaskFailures: a job keeps the latest failure of each participant,
// at most maxTaskFailures, with reasons bounded even if the leader that
// wrote the command did not bound them.
func TestFSMTaskFailures(t *testing.T) {
	d := newFSMDriver(t)
	if err := d.submit(j1, DefaultJobSpec()); err != nil {
		t.Fatal(err)
	}
	fail := func(who, reason string, attempt uint32) error {
		return d.apply(CmdRecordTaskFailure, RecordTaskFailure{JobID: j1, Failure: TaskFailure{Participant: who, Reason: reason, Round: 1, Attempt: attempt, Task: "train"}})
	}
	if err := fail("site-1", "first", 1); err != nil {
		t.Fatal(err)
	}
	if err := fail("site-1", "second\n"+strings.Repeat("x", 500), 2); err != nil {
		t.Fatal(err)
	}
	for i := range maxTaskFailures + 3 {
		if err := fail(fmt.Sprintf("p%02d", i), "r", 1); err != nil {
			t.Fatal(err)
		}
	}
	j, _ := d.f.Job(j1)
	if len(j.Failures) != maxTaskFailures || j.Failures[0].Participant != "p03" || j.Failures[maxTaskFailures-1].Participant != fmt.Sprintf("p%02d", maxTaskFailures+2) {
		t.Errorf("failures %+v; want the latest %d", j.Failures, maxTaskFailures)
	}
	d2 := newFSMDriver(t)
	if err := d2.submit(j1, DefaultJobSpec()); err != nil {
		t.Fatal(err)
	}
	d2.apply(CmdRecordTaskFailure, RecordTaskFailure{JobID: j1, Failure: TaskFailure{Participant: "site-1", Reason: "first", Round: 1, Attempt: 1, Task: "train"}})
	d2.apply(CmdRecordTaskFailure, RecordTaskFailure{JobID: j1, Failure: TaskFailure{Participant: "site-1", Reason: "second\n" + strings.Repeat("x", 500), Round: 1, Attempt: 2, Task: "train"}})
	j, _ = d2.f.Job(j1)
	if len(j.Failures) != 1 || j.Failures[0].Attempt != 2 || len(j.Failures[0].Reason) > maxReasonBytes || strings.Contains(j.Failures[0].Reason, "\n") {
		t.Errorf("failures %+v; want site-1's second only, bounded", j.Failures)
	}
	if err := d.apply(CmdRecordTaskFailure, RecordTaskFailure{JobID: "job-nope", Failure: TaskFailure{Participant: "a"}}); err == nil {
		t.Error("a failure of an unknown job was recorded")
	}
}
