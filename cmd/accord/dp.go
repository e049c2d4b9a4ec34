package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"slices"

	"github.com/accord-fl/accord/aggregate/dp"
)

// dpEpsilonReport is what `accord dp epsilon --json` prints.
type dpEpsilonReport struct {
	Epsilon         float64 `json:"epsilon"`
	Order           float64 `json:"order"`
	Delta           float64 `json:"delta"`
	SamplingRate    float64 `json:"sampling_rate"`
	NoiseMultiplier float64 `json:"noise_multiplier"`
	Steps           uint64  `json:"steps"`
	Conversion      string  `json:"conversion"`
}

const dpUsage = "usage: accord dp epsilon --sampling-rate Q --noise-multiplier Z --steps T --delta D [--classic] [--json]"

func (m *Main) runDP(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "epsilon" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprintln(m.Stderr, dpUsage)
			return flag.ErrHelp
		}
		return usageError{fmt.Errorf("%s", dpUsage)}
	}
	fs := m.newFlagSet("dp epsilon", "--sampling-rate Q --noise-multiplier Z --steps T --delta D [--classic] [--json]")
	q := fs.Float64("sampling-rate", 0, "chance that a participant (or record) takes part in a step, in [0, 1] (required)")
	z := fs.Float64("noise-multiplier", 0, "noise standard deviation over the clip norm, > 0 (required)")
	steps := fs.Uint64("steps", 0, "steps (rounds) composed (required)")
	delta := fs.Float64("delta", 0, "δ of the (ε, δ) guarantee, in (0, 1), typically below 1/population (required)")
	classic := fs.Bool("classic", false, "use Mironov's 2017 RDP-to-(ε, δ) conversion, as TensorFlow Privacy did before 2021, instead of the tighter one")
	asJSON := fs.Bool("json", false, "print one JSON object instead of text")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	set := givenFlags(fs)
	for _, name := range []string{"sampling-rate", "noise-multiplier", "steps", "delta"} {
		if !set[name] {
			return usageError{fmt.Errorf("dp epsilon: --%s is required", name)}
		}
	}
	switch {
	case !(*q >= 0 && *q <= 1):
		return usageError{fmt.Errorf("--sampling-rate %v: want a probability in [0, 1]", *q)}
	case !(*z > 0) || math.IsInf(*z, 0):
		return usageError{fmt.Errorf("--noise-multiplier %v: want a positive number", *z)}
	case !(*delta > 0 && *delta < 1):
		return usageError{fmt.Errorf("--delta %v: want a probability in (0, 1)", *delta)}
	}

	a := dp.NewAccountant()
	a.Compose(*q, *z, *steps)
	rep := dpEpsilonReport{Delta: *delta, SamplingRate: *q, NoiseMultiplier: *z, Steps: *steps, Conversion: "tight"}
	if *classic {
		rep.Conversion = "classic"
		rep.Epsilon, rep.Order = dp.EpsilonClassic(a.Orders, a.RDP, *delta)
	} else {
		rep.Epsilon, rep.Order = a.Epsilon(*delta)
	}
	if math.IsInf(rep.Epsilon, 0) {
		return fmt.Errorf("no order of the accountant gives a finite ε for q = %v, z = %v, %d steps", *q, *z, *steps)
	}
	if rep.Epsilon > 0 && (rep.Order == slices.Min(a.Orders) || rep.Order == slices.Max(a.Orders)) {
		fmt.Fprintf(m.Stderr, "accord: the best order, %g, is at the edge of those tracked: ε may be somewhat overstated\n", rep.Order)
	}
	if *asJSON {
		return printJSON(m.Stdout, rep)
	}
	plural := "s"
	if rep.Steps == 1 {
		plural = ""
	}
	fmt.Fprintf(m.Stdout, "ε = %.3g at δ = %g (order %g, q = %.4g, z = %g, %d step%s)\n",
		rep.Epsilon, rep.Delta, rep.Order, rep.SamplingRate, rep.NoiseMultiplier, rep.Steps, plural)
	return nil
}
