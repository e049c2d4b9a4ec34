package scenarios

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestByCountry: a country with labels gets only those labels, sizes fall
// in the group's range, the other countries share what is left evenly, and
// no example goes to two institutions.
func TestByCountry(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	labels := make([]int32, 6000)
	for i := range labels {
		labels[i] = int32(rng.IntN(10))
	}
	groups := []GroupSpec{
		{Region: "jp", Prefix: "jp", Count: 3, Labels: []int32{0, 1}},
		{Region: "de", Prefix: "de", Count: 4, Examples: []int{50, 400}},
		{Region: "br", Prefix: "br", Count: 2},
	}
	parts, err := byCountry(labels, groups, 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 9 {
		t.Fatalf("%d parts; want 9", len(parts))
	}
	seen := map[int]bool{}
	for k, p := range parts {
		for _, i := range p {
			if seen[i] {
				t.Fatalf("example %d given twice", i)
			}
			seen[i] = true
			if k < 3 && labels[i] > 1 {
				t.Fatalf("jp institution %d holds label %d; jp's labels are 0 and 1", k, labels[i])
			}
		}
		if k >= 3 && k < 7 && (len(p) < 50 || len(p) > 400) {
			t.Errorf("de institution %d holds %d examples; want 50–400", k, len(p))
		}
	}
	if len(parts[7]) == 0 || len(parts[7]) != len(parts[8]) {
		t.Errorf("br's institutions hold %d and %d; want equal shares of what is left", len(parts[7]), len(parts[8]))
	}
}

// TestScenarioDataValidation: the data fields are checked, naming the field.
func TestScenarioDataValidation(t *testing.T) {
	base := func(groups, data, job string) string {
		return "name: v\ncoordinators: [{name: c, organization: o}]\nparticipants:\n  groups: [" + groups + "]\n  data: " + data +
			"\njob: {name: j, model: \"logreg:784-10\", dataset: mnist, rounds: 1, participants_per_round: 2" + job + "}\n"
	}
	cases := []struct{ name, yaml, want string }{
		{"a label outside MNIST's", base("{region: a, prefix: a, count: 2, labels: [3, 12]}", "{dataset: mnist, partition: iid}", ""), "labels: 12"},
		{"sizes upside down", base("{region: a, prefix: a, count: 2, examples: [500, 10]}", "{dataset: mnist, partition: iid}", ""), "examples"},
		{"labels with a pathological split", base("{region: a, prefix: a, count: 2, labels: [1]}", "{dataset: mnist, partition: pathological}", ""), "partition iid"},
		{"synthetic without α and β", base("{region: a, prefix: a, count: 2}", "{dataset: synthetic}", ""), "synthetic"},
		{"an unknown dataset", base("{region: a, prefix: a, count: 2}", "{dataset: cifar}", ""), "participants.data.dataset"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error naming %q", c.name, err, c.want)
		}
	}
}

const syntheticScenario = `
name: synthetic
coordinators:
  - {name: coord-a, organization: org-a}
participants:
  groups:
    - {region: de, prefix: de-site, count: 6}
    - {region: jp, prefix: jp-site, count: 4}
  data: {dataset: synthetic, synthetic: {alpha: 0.5, beta: 0.5}, seed: 2}
job:
  name: synthetic
  model: logreg:60-10
  dataset: synthetic
  rounds: 5
  target_accuracy: 0
  participants_per_round: 10
  min_participants: 10
  round_deadline: 30s
  learning_rate: 0.01
  local_epochs: 5
timeout: 5m
`

// TestRunSyntheticScenario: FedProx's Synthetic(α,β) is reachable from a
// scenario file, one device per participant, and the federation learns it.
func TestRunSyntheticScenario(t *testing.T) {
	sc, err := Parse([]byte(syntheticScenario))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(t.Context(), sc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RoundsCommitted != 5 || !rep.InvariantsOK {
		t.Fatalf("%d rounds committed, invariants ok %v (%s)", rep.RoundsCommitted, rep.InvariantsOK, rep.InvariantsError)
	}
	if first := rep.Rounds[0].Accuracy; !(rep.FinalAccuracy > first) || rep.FinalAccuracy < 0.3 {
		t.Errorf("accuracy %.3f after round 1, %.3f after 5; want it to rise past 0.3", first, rep.FinalAccuracy)
	}
	t.Logf("synthetic(0.5, 0.5): accuracy %.3f after round 1, %.3f after 5", rep.Rounds[0].Accuracy, rep.FinalAccuracy)
}

// TestCapKeepsTheLabelMix: examples_per_participant takes a random subset
// of a skewed partition, not its first labels.
func TestCapKeepsTheLabelMix(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: trains on MNIST")
	}
	needMNIST(t)
	sc, err := Parse([]byte(`
name: cap
coordinators: [{name: c}]
participants:
  groups: [{region: x, prefix: p, count: 4}]
  data: {dataset: mnist, partition: dirichlet, alpha: 100, examples_per_participant: 200, seed: 1}
`))
	if err != nil {
		t.Fatal(err)
	}
	shards, _, err := split(t.Context(), sc)
	if err != nil {
		t.Fatal(err)
	}
	for k, s := range shards {
		labels := map[int32]bool{}
		for _, y := range s.train.Y {
			labels[y] = true
		}
		// Dirichlet(100) is close to uniform: 200 random examples hold
		// every digit.
		if s.train.Len() != 200 || len(labels) < 10 {
			t.Errorf("participant %d: %d examples of %d labels; want 200 of all 10", k, s.train.Len(), len(labels))
		}
	}
}
