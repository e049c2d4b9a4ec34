package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"strings"
	"testing"
)

// mnistTutorial is TensorFlow Privacy's MNIST example: q = 256/60000,
// z = 1.12, ⌈60·60000/256⌉ = 14063 steps, δ = 1e−5.
var mnistTutorial = []string{"dp", "epsilon", "--sampling-rate", "0.004266666666666667", "--noise-multiplier", "1.12", "--steps", "14063", "--delta", "1e-5"}

func TestDPEpsilon(t *testing.T) {
	for _, c := range []struct {
		extra []string
		want  string
	}{
		{nil, "ε = 2.52 at δ = 1e-05 (order 8.3, q = 0.004267, z = 1.12, 14063 steps)\n"},
		{[]string{"--classic"}, "ε = 2.92 at δ = 1e-05 (order 9.1, q = 0.004267, z = 1.12, 14063 steps)\n"},
	} {
		var out, errb bytes.Buffer
		if err := NewMain(&out, &errb).Run(t.Context(), append(append([]string{}, mnistTutorial...), c.extra...)); err != nil {
			t.Fatalf("accord dp epsilon %v: %v\n%s", c.extra, err, errb.String())
		}
		if out.String() != c.want {
			t.Errorf("accord dp epsilon %v printed %q; want %q", c.extra, out.String(), c.want)
		}
	}
}

func TestDPEpsilonJSON(t *testing.T) {
	var out, errb bytes.Buffer
	if err := NewMain(&out, &errb).Run(t.Context(), append(append([]string{}, mnistTutorial...), "--json", "--classic")); err != nil {
		t.Fatalf("accord dp epsilon --json: %v\n%s", err, errb.String())
	}
	var rep map[string]any
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("--json output is not one JSON object: %v\n%s", err, out.String())
	}
	for _, k := range []string{"epsilon", "order", "delta", "sampling_rate", "noise_multiplier", "steps"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("--json output lacks %q: %s", k, out.String())
		}
	}
	if eps, _ := rep["epsilon"].(float64); eps < 2.87 || eps > 2.97 || rep["steps"] != float64(14063) || rep["delta"] != 1e-5 || rep["conversion"] != "classic" {
		t.Errorf("--json: %s; want ε ≈ 2.92 (classic) after 14063 steps at δ = 1e-5", out.String())
	}
}

// TestDPEpsilonBadFlags checks that each mistake is a usage error (exit
// code 2) naming the flag at fault.
func TestDPEpsilonBadFlags(t *testing.T) {
	base := map[string]string{"--sampling-rate": "0.01", "--noise-multiplier": "1.1", "--steps": "100", "--delta": "1e-5"}
	args := func(change map[string]string) []string {
		a := []string{"dp", "epsilon"}
		for _, k := range []string{"--sampling-rate", "--noise-multiplier", "--steps", "--delta"} {
			v, ok := change[k]
			if !ok {
				v = base[k]
			}
			if v != "-" {
				a = append(a, k, v)
			}
		}
		return a
	}
	for _, c := range []struct {
		args []string
		name string
	}{
		{args(map[string]string{"--sampling-rate": "1.5"}), "sampling-rate"},
		{args(map[string]string{"--sampling-rate": "-0.1"}), "sampling-rate"},
		{args(map[string]string{"--sampling-rate": "NaN"}), "sampling-rate"},
		{args(map[string]string{"--sampling-rate": "abc"}), "sampling-rate"},
		{args(map[string]string{"--sampling-rate": "-"}), "sampling-rate"},
		{args(map[string]string{"--noise-multiplier": "0"}), "noise-multiplier"},
		{args(map[string]string{"--noise-multiplier": "-1"}), "noise-multiplier"},
		{args(map[string]string{"--noise-multiplier": "-"}), "noise-multiplier"},
		{args(map[string]string{"--steps": "-3"}), "steps"},
		{args(map[string]string{"--steps": "1.5"}), "steps"},
		{args(map[string]string{"--steps": "-"}), "steps"},
		{args(map[string]string{"--delta": "0"}), "delta"},
		{args(map[string]string{"--delta": "1"}), "delta"},
		{args(map[string]string{"--delta": "-"}), "delta"},
		{append(args(nil), "--bogus"), "bogus"},
		{append(args(nil), "extra"), "extra"},
		{[]string{"dp"}, "dp epsilon"},
		{[]string{"dp", "spend"}, "dp epsilon"},
	} {
		var out, errb bytes.Buffer
		err := NewMain(&out, &errb).Run(t.Context(), c.args)
		var u usageError
		if !errors.As(err, &u) || exitCode(err) != 2 || !strings.Contains(err.Error(), c.name) {
			t.Errorf("accord %s: %v (exit %d); want a usage error naming %s", strings.Join(c.args, " "), err, exitCode(err), c.name)
		}
	}
	var out, errb bytes.Buffer
	if err := NewMain(&out, &errb).Run(t.Context(), []string{"dp", "epsilon", "-h"}); !errors.Is(err, flag.ErrHelp) || !strings.Contains(errb.String(), "--sampling-rate") && !strings.Contains(errb.String(), "-sampling-rate") {
		t.Errorf("accord dp epsilon -h: %v\n%s; want help listing the flags", err, errb.String())
	}
}
