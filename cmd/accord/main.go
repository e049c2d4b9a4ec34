// Command accord is Accord's one binary: the coordinator, the participant
// daemon, and the operator's tools.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := NewMain(os.Stdout, os.Stderr).Run(ctx, os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "accord:", err)
		}
		os.Exit(exitCode(err))
	}
}

// usageError marks an error in how the command was called (exit code 2).
type usageError struct{ error }

func exitCode(err error) int {
	var u usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0 // -h asked for the usage, and got it
	case errors.As(err, &u):
		return 2
	}
	return 1
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help" || arg == "help"
}

// Main holds what every subcommand writes to.
type Main struct {
	Stdout, Stderr io.Writer
}

// NewMain returns a Main writing to the given streams.
func NewMain(stdout, stderr io.Writer) *Main { return &Main{Stdout: stdout, Stderr: stderr} }

type subcommand struct {
	name, summary string
	run           func(m *Main, ctx context.Context, args []string) error
}

func (m *Main) subcommands() []subcommand {
	return []subcommand{
		{"coordinator", "run a coordinator (a Raft member serving participants and admins)", (*Main).runCoordinator},
		{"participant", "run a participant daemon next to local data", (*Main).runParticipant},
		{"members", "list | add NAME | remove NAME: the coordinator cluster", (*Main).runMembers},
		{"pki", "init | issue: make the federation CA and certificates", (*Main).runPKI},
		{"job", "submit FILE | list | show ID | watch ID | approve ID | cancel ID | delete ID", (*Main).runJob},
		{"proposals", "list | approve ID: governed actions waiting for organisations' approvals", (*Main).runProposals},
		{"policy", "show | set FILE: the federation's member organisations and approvals required", (*Main).runPolicy},
		{"revoke", "NAME | --serial HEX | --cert-file FILE: revoke a certificate everywhere", (*Main).runRevoke},
		{"audit", "list | verify [--file LOG.json]: the hash-chained log of admin actions", (*Main).runAudit},
		{"round", "list JOB: the rounds of a job", (*Main).runRound},
		{"participants", "list: the federation's participants", (*Main).runParticipants},
		{"model", "pull JOB [--round N] --out FILE: download a committed model as safetensors", (*Main).runModel},
		{"serve", "serve jobs' global models over the Open Inference Protocol (KServe V2: REST and gRPC)", (*Main).runServe},
		{"demo", "run the FedAvg MNIST demo: a whole federation in this process on loopback", (*Main).runDemo},
		{"scenario", "scenario run FILE: run a federation described by a scenario file", (*Main).runScenario},
		{"train", "train a model centrally on one dataset (the baseline federated runs compare with)", (*Main).runTrain},
		{"dp", "epsilon: plan a differential-privacy budget", (*Main).runDP},
	}
}

// Run runs the subcommand named by args[0].
func (m *Main) Run(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		m.usage()
		if len(args) == 0 {
			return usageError{errors.New("no command given")}
		}
		return nil
	}
	for _, c := range m.subcommands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(m, ctx, args[1:])
		// "accord job -h": a command whose first argument is a
		// sub-command refuses "-h" as an unknown one; answer with its
		// usage instead, on stdout, with exit 0.
		var u usageError
		if len(args) == 2 && isHelp(args[1]) && errors.As(err, &u) {
			fmt.Fprintf(m.Stdout, "usage: accord %s %s\n", c.name, c.summary)
			return nil
		}
		return err
	}
	m.usage()
	return usageError{fmt.Errorf("unknown command %q", args[0])}
}

func (m *Main) usage() {
	fmt.Fprintln(m.Stderr, "usage: accord COMMAND [flags]\n\ncommands:")
	for _, c := range m.subcommands() {
		fmt.Fprintf(m.Stderr, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(m.Stderr, "\nRun 'accord COMMAND -h' for a command's flags.")
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func (m *Main) newFlagSet(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("accord "+name, flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(m.Stderr, "usage: accord %s %s\n\nflags:\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and refuses stray positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	return nil
}
