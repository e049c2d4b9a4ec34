package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/scenarios"
)

func (m *Main) runScenario(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "run" {
		return usageError{fmt.Errorf("usage: accord scenario run FILE [--json] [--report DIR] [--log-level LEVEL] [--processes]")}
	}
	fs := m.newFlagSet("scenario run", "FILE [--json] [--report DIR] [--processes [--processes-network auto|namespaces|proxies] [--work-dir DIR]]")
	asJSON := fs.Bool("json", false, "print one JSON report at the end instead of progress lines")
	reportDir := fs.String("report", "", "write report.md and PNG plots of the run into DIR")
	noNetwork := fs.Bool("without-network", false, "ignore the scenario's network model: every link loopback")
	processes := fs.Bool("processes", false, "run real accord coordinator and participant processes of this binary instead of running the federation in this process")
	processNet := fs.String("processes-network", "auto", "with --processes, how links are modelled: auto, namespaces (a Linux network namespace per region, shaped by tc; needs root) or proxies (the participants' links only)")
	workDir := fs.String("work-dir", "", "with --processes, keep the certificates, data files, data folders and logs (logs/NAME.log) in DIR")
	level := fs.String("log-level", "none", "log level of the components: debug, info, warn, error or none")
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
	f := runFlags{json: *asJSON, level: *level, reportDir: *reportDir, noNetwork: *noNetwork}
	if *processes {
		return m.runScenarioProcesses(ctx, sc, f, *processNet, *workDir)
	}
	if *workDir != "" || *processNet != "auto" {
		return usageError{fmt.Errorf("--work-dir and --processes-network need --processes")}
	}
	return m.runLoadedScenario(ctx, sc, f)
}

// runScenarioProcesses runs a scenario as real processes of this binary.
func (m *Main) runScenarioProcesses(ctx context.Context, sc *scenarios.Scenario, f runFlags, network, workDir string) error {
	opts := scenarios.ProcessOptions{NoNetwork: f.noNetwork, WorkDir: workDir}
	switch network {
	case "auto":
	case "namespaces", "proxies":
		opts.Network = scenarios.ProcessNetwork(network)
	default:
		return usageError{fmt.Errorf("--processes-network %q: want auto, namespaces or proxies", network)}
	}
	if f.level != "none" {
		opts.LogLevel = f.level
	}
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("--processes: finding this binary: %w", err)
	}
	opts.Binary = bin
	if !f.json {
		opts.Progress = m.Stdout
	}
	run := scenarios.RunProcessesAndCompare
	if f.noNetwork {
		run = scenarios.RunProcesses
	}
	rep, err := run(ctx, sc, opts)
	if err != nil {
		return err
	}
	return m.finishScenario(sc, rep, f)
}

// runFlags are the flags scenario run and demo share.
type runFlags struct {
	json      bool
	level     string
	reportDir string
	noNetwork bool
}

func (m *Main) runDemo(ctx context.Context, args []string) error {
	fs := m.newFlagSet("demo", "[--json] [--report DIR] [--model 2nn|cnn] [--secure-aggregation secagg|secagg+] [--rounds N] [--serve]")
	asJSON := fs.Bool("json", false, "print one JSON report at the end instead of progress lines")
	reportDir := fs.String("report", "", "write report.md and PNG plots of the run into DIR")
	secure := fs.String("secure-aggregation", "", "mask every update: secagg (complete graph) or secagg+ (Harary graph)")
	rounds := fs.Uint("rounds", 0, "run exactly this many rounds, ignoring the target accuracy (0: the demo's own stop rule)")
	modelName := fs.String("model", "2nn", "2nn (the FedAvg paper's mlp:784-200-200-10, E=1, B=10) or cnn (its CNN, "+demoCNN+", E=5, B=10, target 99%)")
	level := fs.String("log-level", "none", "log level of the components: debug, info, warn, error or none")
	serveToo := fs.Bool("serve", false, "start accord serve beside the federation and call it over REST and gRPC while the job runs (a scenario's serve section, defaults)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	sc, err := scenarios.Parse(scenarios.DemoYAML)
	if err != nil {
		return err
	}
	switch *modelName {
	case "2nn":
	case "cnn":
		sc.Name, sc.Job.Name, sc.Job.Model, sc.Job.LocalEpochs, sc.Job.TargetAccuracy = "fedavg-mnist-cnn", "mnist-cnn", demoCNN, 5, 0.99
		// Five epochs of the CNN take a participant sharing two cores with
		// nine others minutes, not the 2NN's seconds: the 2NN's one-minute
		// deadline aborted every attempt on a loaded machine.
		sc.Job.RoundDeadline = state.Duration(10 * time.Minute)
	default:
		return usageError{fmt.Errorf("--model %q: want 2nn or cnn", *modelName)}
	}
	if *secure != "" {
		sc.Job.SecureAggregation.Mode = *secure
		sc.Job.Name += "-" + *secure
	}
	if *rounds > 0 {
		sc.Job.Rounds, sc.Job.TargetAccuracy = uint32(*rounds), 0
	}
	if *serveToo {
		spec := scenarios.DefaultServeSpec()
		sc.Serve = &spec
	}
	if err := sc.Validate(); err != nil {
		return usageError{fmt.Errorf("--secure-aggregation, --model or --rounds: %w", err)}
	}
	return m.runLoadedScenario(ctx, sc, runFlags{json: *asJSON, level: *level, reportDir: *reportDir})
}

// demoCNN is the FedAvg paper's MNIST CNN (McMahan et al. 2017, 1,663,370
// parameters).
const demoCNN = "cnn:28x28x1-c5x32-p2-c5x64-p2-f512-10"

func (m *Main) runLoadedScenario(ctx context.Context, sc *scenarios.Scenario, f runFlags) error {
	lv := slog.LevelError + 4 // none: faults make Raft log errors by design
	if f.level != "none" {
		if err := lv.UnmarshalText([]byte(f.level)); err != nil {
			return usageError{fmt.Errorf("--log-level %q: %w", f.level, err)}
		}
	}
	opts := scenarios.Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv})), NoNetwork: f.noNetwork}
	if !f.json {
		opts.Progress = m.Stdout
	}
	run := scenarios.RunAndCompare
	if f.noNetwork {
		run = scenarios.Run
	}
	rep, err := run(ctx, sc, opts)
	if err != nil {
		return err
	}
	return m.finishScenario(sc, rep, f)
}

// finishScenario writes the report directory, prints out as JSON if asked,
// and fails if the invariants do not hold.
func (m *Main) finishScenario(sc *scenarios.Scenario, rep *scenarios.Report, f runFlags) error {
	if f.reportDir != "" {
		if err := scenarios.WriteReport(f.reportDir, sc, rep); err != nil {
			return fmt.Errorf("--report: %w", err)
		}
		if !f.json {
			fmt.Fprintf(m.Stdout, "report: %s\n", filepath.Join(f.reportDir, "report.md"))
		}
	}
	if f.json {
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
