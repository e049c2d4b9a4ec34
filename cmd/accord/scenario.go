package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/accord-fl/accord/scenarios"
)

func (m *Main) runScenario(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "run" {
		return usageError{fmt.Errorf("usage: accord scenario run FILE [--json] [--log-level LEVEL]")}
	}
	fs := m.newFlagSet("scenario run", "FILE [--json]")
	asJSON := fs.Bool("json", false, "print one JSON report at the end instead of progress lines")
	level := fs.String("log-level", "error", "log level of the components: debug, info, warn, error")
	if len(args) < 2 {
		fs.Usage()
		return usageError{fmt.Errorf("scenario run: name a scenario FILE")}
	}
	if isHelp(args[1]) {
		fs.Usage()
		return flag.ErrHelp
	}
	file := args[1]
	if err := parseFlags(fs, args[2:]); err != nil {
		return err
	}
	sc, err := scenarios.Load(file)
	if err != nil {
		return err
	}
	return m.runLoadedScenario(ctx, sc, *asJSON, *level)
}

func (m *Main) runDemo(ctx context.Context, args []string) error {
	fs := m.newFlagSet("demo", "[--json] [--secure-aggregation secagg|secagg+] [--rounds N]")
	asJSON := fs.Bool("json", false, "print one JSON report at the end instead of progress lines")
	secure := fs.String("secure-aggregation", "", "mask every update: secagg (complete graph) or secagg+ (Harary graph)")
	rounds := fs.Uint("rounds", 0, "run exactly this many rounds, ignoring the target accuracy (0: the demo's own stop rule)")
	level := fs.String("log-level", "error", "log level of the components: debug, info, warn, error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	sc, err := scenarios.Parse(scenarios.DemoYAML)
	if err != nil {
		return err
	}
	if *secure != "" {
		sc.Job.SecureAggregation.Mode = *secure
		sc.Job.Name += "-" + *secure
	}
	if *rounds > 0 {
		sc.Job.Rounds, sc.Job.TargetAccuracy = uint32(*rounds), 0
	}
	if err := sc.Validate(); err != nil {
		return usageError{fmt.Errorf("--secure-aggregation or --rounds: %w", err)}
	}
	return m.runLoadedScenario(ctx, sc, *asJSON, *level)
}

func (m *Main) runLoadedScenario(ctx context.Context, sc *scenarios.Scenario, asJSON bool, level string) error {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return usageError{fmt.Errorf("--log-level %q: %w", level, err)}
	}
	opts := scenarios.Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))}
	if !asJSON {
		opts.Progress = m.Stdout
	}
	rep, err := scenarios.Run(ctx, sc, opts)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(m.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	}
	if !rep.InvariantsOK {
		return fmt.Errorf("invariants violated: %s", rep.InvariantsError)
	}
	return nil
}
