package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/participant"
	"github.com/accord-fl/accord/participant/data"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

func (m *Main) runParticipant(ctx context.Context, args []string) error {
	fs := m.newFlagSet("participant", "--coordinator ADDR[,ADDR] --ca FILE --cert FILE --key FILE --data mnist --shard I/N | --data FILE.csv --label COL [--policy FILE]")
	addrs := fs.String("coordinator", envOr("ACCORD_COORDINATOR", "127.0.0.1:7700"), "comma-separated coordinator addresses [$ACCORD_COORDINATOR]")
	dataName := fs.String("data", "", "mnist, or a CSV file of local records")
	shard := fs.String("shard", "", "mnist only: I/N takes IID shard I of N (1-based) of the training set, and shard I of the test set for validation")
	examples := fs.Int("examples", 0, "mnist only: at most this many training examples (0: the whole shard)")
	seed := fs.Uint64("seed", 1, "seed of the shard split and the CSV validation split")
	label := fs.String("label", "label", "CSV only: the label column")
	valFraction := fs.Float64("validation-fraction", 0.1, "CSV only: fraction of rows kept for evaluating global models")
	region := fs.String("region", "", "region or country reported at registration")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	policyFile := fs.String("policy", "", "the site's policy: a YAML file of the organisations, models, secure aggregation and rounds this site accepts (default: accept every job)")
	killAfterShareKeys := fs.Uint("fault-kill-after-share-keys", 0,
		"fault injection for tests: SIGKILL this process right after it sends its key shares in this round (0: never)")
	declaredExamples := fs.Uint64("fault-declared-examples", 0,
		"fault injection for tests: declare this many training examples instead of the real count (0: the real count)")
	tf := addTLSFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return usageError{fmt.Errorf("--log-level: %w", err)}
	}
	var policy *participant.Policy
	if *policyFile != "" {
		var err error
		if policy, err = participant.LoadPolicy(*policyFile); err != nil {
			return fmt.Errorf("--policy: %w", err)
		}
	}
	mat, err := tf.load()
	if err != nil {
		return err
	}
	var train, val *model.Dataset
	datasetName := *dataName
	switch {
	case *dataName == "mnist":
		i, n, err := parseShard(*shard)
		if err != nil {
			return usageError{fmt.Errorf("--shard %q: %w", *shard, err)}
		}
		all, test, err := data.LoadMNISTFromModule(ctx)
		if err != nil {
			return err
		}
		parts, err := data.IID(all.Len(), n, *seed)
		if err != nil {
			return err
		}
		valParts, err := data.IID(test.Len(), n, *seed+1)
		if err != nil {
			return err
		}
		idx := parts[i-1]
		if *examples > 0 && len(idx) > *examples {
			idx = idx[:*examples]
		}
		train, val = all.Subset(idx), test.Subset(valParts[i-1])
	case *dataName != "":
		if !(*valFraction >= 0 && *valFraction < 1) {
			return usageError{fmt.Errorf("--validation-fraction %v: want a fraction in [0, 1)", *valFraction)}
		}
		table, err := data.LoadCSV(*dataName, *label)
		if err != nil {
			return fmt.Errorf("--data: %w", err)
		}
		train, val = data.Split(table.Data, 1-*valFraction, *seed)
		std := data.FitStandardizer(train)
		std.Apply(train)
		std.Apply(val)
		datasetName = strings.TrimSuffix(fileBase(*dataName), ".csv")
	default:
		return usageError{fmt.Errorf("--data is required: mnist or a CSV file")}
	}
	cfg := participant.Config{
		Coordinators: strings.Split(*addrs, ","), Cert: mat.cert, CA: mat.pool, Region: *region, Dataset: datasetName,
		Train: train, Validation: val, Logger: slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lv})),
		Policy: policy, DeclaredExamples: *declaredExamples,
	}
	if round := uint32(*killAfterShareKeys); round > 0 {
		cfg.AfterTask = func(t *pb.Task) {
			if t.Kind == pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS && t.Round == round {
				fmt.Fprintf(os.Stderr, "fault injection: killed after sharing keys in round %d\n", round)
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}
	}
	p, err := participant.New(cfg)
	if err != nil {
		return err
	}
	return p.Run(ctx)
}

func fileBase(path string) string {
	if i := strings.LastIndexAny(path, `/\`); i >= 0 {
		return path[i+1:]
	}
	return path
}

// parseShard reads "I/N" with 1 ≤ I ≤ N.
func parseShard(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || i < 1 || i > n {
		return 0, 0, fmt.Errorf("want I/N with 1 ≤ I ≤ N, for example 3/100")
	}
	return i, n, nil
}
