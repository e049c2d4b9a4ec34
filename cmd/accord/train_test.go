package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrainMNIST runs `accord train --json` on real MNIST (fetched through the
// Go module proxy) with the logistic-regression model, and checks the report.
func TestTrainMNIST(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: trains on MNIST")
	}
	needMNIST(t)
	var out, errOut bytes.Buffer
	err := NewMain(&out, &errOut).Run(t.Context(), []string{"train", "--model", "logreg:784-10", "--data", "mnist", "--epochs", "1", "--batch", "10", "--lr", "0.1", "--json"})
	if err != nil {
		t.Fatalf("accord train: %v\n%s", err, errOut.String())
	}
	var rep trainReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("--json output is not one JSON object: %v\n%s", err, out.String())
	}
	if rep.TestAccuracy < 0.90 || rep.SamplesPerSecond <= 0 || rep.TrainExamples != 60000 || rep.TestExamples != 10000 || len(rep.Epochs) != 1 {
		t.Errorf("got %+v; want ≥ 90%% test accuracy after one epoch on 60,000 examples", rep)
	}
}

func TestTrainCSV(t *testing.T) {
	var b strings.Builder
	b.WriteString("x1,x2,class\n")
	for i := range 200 {
		label := "low"
		if i%2 == 1 {
			label = "high"
		}
		v := float64(i%2)*10 + float64(i%7)
		b.WriteString(strings.Join([]string{jsonNum(v), jsonNum(float64(i % 5)), label}, ",") + "\n")
	}
	path := filepath.Join(t.TempDir(), "lab.csv")
	os.WriteFile(path, []byte(b.String()), 0o600)
	var out, errOut bytes.Buffer
	err := NewMain(&out, &errOut).Run(t.Context(), []string{"train", "--model", "logreg:2-2", "--data", path, "--label", "class", "--epochs", "5", "--json"})
	if err != nil {
		t.Fatalf("accord train: %v", err)
	}
	var rep trainReport
	json.Unmarshal(out.Bytes(), &rep)
	if rep.TestAccuracy < 0.95 {
		t.Errorf("test accuracy %.3f on a separable CSV; want ≥ 0.95", rep.TestAccuracy)
	}
}

func jsonNum(v float64) string { b, _ := json.Marshal(v); return string(b) }

// TestTrainBadInput checks that each mistake is refused with an error naming
// the flag or file at fault.
func TestTrainBadInput(t *testing.T) {
	csvPath := filepath.Join(t.TempDir(), "bad.csv")
	os.WriteFile(csvPath, []byte("a,label\n1,x\nnope,y\n"), 0o600)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"train", "--model", "cnn:1-2"}, "--model"},
		{[]string{"train", "--batch", "0", "--data", csvPath}, "batch size"},
		{[]string{"train", "--lr", "-1"}, "learning rate"},
		{[]string{"train", "--epochs", "0"}, "--epochs"},
		{[]string{"train", "--data", csvPath, "--model", "logreg:1-2"}, "bad.csv:3"},
		{[]string{"train", "--data", filepath.Join(t.TempDir(), "missing.csv")}, "missing.csv"},
		{[]string{"train", "--data", csvPath, "--label", "nope"}, `no column named "nope"`},
		{[]string{"train", "--nosuchflag"}, "nosuchflag"},
		{[]string{"train", "stray"}, `unexpected argument "stray"`},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		err := NewMain(&out, &errOut).Run(t.Context(), c.args)
		if err == nil || !strings.Contains(err.Error()+errOut.String(), c.want) {
			t.Errorf("accord %s: got error %v; want one mentioning %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}
