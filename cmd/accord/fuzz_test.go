package main

import (
	"os"
	"path/filepath"
	"testing"
)

// Fuzz targets for the files the CLI reads: job files and federation
// policy files. `make fuzz` runs them.

const fuzzJobFile = `name: mnist-2nn
model: mlp:784-200-200-10
dataset: mnist
rounds: 50
target_accuracy: 0.97
participants_per_round: 10
min_participants: 5
local_epochs: 1
batch_size: 10
learning_rate: 0.1
round_deadline: 60s
max_examples: 600
max_update_norm: 100
max_attempts: 5
retain: {last: 5, every: 10, best: 1}
secure_aggregation:
  mode: secagg+
  dropout_rate: 0.3
  clip: 1
  phase_deadline: 10s
`

// writeFuzzFile writes b to a file in dir for the loaders, which take paths.
func writeFuzzFile(t *testing.T, dir string, b []byte) string {
	path := filepath.Join(dir, "file.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func FuzzLoadJobFile(f *testing.F) {
	for _, s := range []string{
		fuzzJobFile,
		"name: x\nmodel: logreg:8-3\n",
		"model: mlp:784-65536-65536-65536-65536-65536-65536-65536-65536-10\n",
		"round_deadline: 1e400s\nrounds: -1\n",
		"secure_aggregation: {mode: secagg+, dropout_rate: 0.99, corrupt_rate: 0.9}\nparticipants_per_round: 4000000000\n",
		"a: &a [*a, *a]\n",
		"{}", "", "---\n---\n", "learning_rate: .nan\n", "unknown_field: 1\n", "retain: null\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		spec, err := loadJobFile(writeFuzzFile(t, dir, b))
		if err == nil {
			if err := spec.Validate(); err != nil {
				t.Fatalf("loaded a job file that does not validate: %v", err)
			}
		}
	})
}

func FuzzLoadPolicyFile(f *testing.F) {
	for _, s := range []string{
		"organizations: [charite, aphp]\napprovals_required: 2\n",
		"approvals_required: 0\n", "organizations: [\"\"]\n", "approvals_required: -1\n", "{}", "",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := loadPolicyFile(writeFuzzFile(t, dir, b))
		if err == nil {
			if err := p.Validate(); err != nil {
				t.Fatalf("loaded a policy that does not validate: %v", err)
			}
		}
	})
}
