package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/participant/data"
)

// trainReport is what `accord train --json` prints.
type trainReport struct {
	Model             string        `json:"model"`
	Data              string        `json:"data"`
	Backend           string        `json:"backend"`
	Epochs            []epochReport `json:"epochs"`
	TestAccuracy      float64       `json:"test_accuracy"`
	TestLoss          float64       `json:"test_loss"`
	TrainExamples     int           `json:"train_examples"`
	TestExamples      int           `json:"test_examples"`
	TrainSeconds      float64       `json:"train_seconds"`
	SamplesPerSecond  float64       `json:"samples_per_second"`
	Seed              uint64        `json:"seed"`
	BatchSize         int           `json:"batch_size"`
	LearningRate      float64       `json:"learning_rate"`
	ParameterCount    int           `json:"parameter_count"`
	DatasetSourcePath string        `json:"dataset_source,omitempty"`
}

type epochReport struct {
	Epoch        int     `json:"epoch"`
	TrainLoss    float64 `json:"train_loss"`
	TestLoss     float64 `json:"test_loss"`
	TestAccuracy float64 `json:"test_accuracy"`
	Seconds      float64 `json:"seconds"`
}

func (m *Main) runTrain(ctx context.Context, args []string) error {
	fs := m.newFlagSet("train", "--model SPEC --data mnist|FILE.csv [flags]")
	spec := fs.String("model", "mlp:784-200-200-10", "model spec: logreg:IN-CLASSES or mlp:IN-H...-CLASSES")
	dataName := fs.String("data", "mnist", "dataset: mnist, or a CSV file (see --label, --test-fraction)")
	label := fs.String("label", "label", "CSV only: the label column's name")
	testFraction := fs.Float64("test-fraction", 0.2, "CSV only: fraction of rows held out for testing")
	cfg := model.DefaultTrainConfig()
	fs.IntVar(&cfg.Epochs, "epochs", 1, "passes over the training data")
	fs.IntVar(&cfg.BatchSize, "batch", cfg.BatchSize, "minibatch size")
	fs.Float64Var(&cfg.LearningRate, "lr", cfg.LearningRate, "learning rate")
	fs.Float64Var(&cfg.Momentum, "momentum", 0, "SGD momentum")
	fs.Float64Var(&cfg.WeightDecay, "weight-decay", 0, "L2 weight decay")
	seed := fs.Uint64("seed", 1, "seed for initialisation and example order")
	threads := fs.Int("threads", 0, "threads per matrix product (0: all cores)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of text")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	sp, err := model.ParseSpec(*spec)
	if err != nil {
		return usageError{fmt.Errorf("--model: %w", err)}
	}
	cfg.Seed = *seed
	if cfg.Epochs < 1 {
		return usageError{fmt.Errorf("--epochs %d: want at least 1", cfg.Epochs)}
	}
	if err := cfg.Validate(); err != nil {
		return usageError{fmt.Errorf("training flags: %w", err)}
	}
	if *threads > 0 {
		model.SetThreads(*threads)
	}

	train, test, source, err := loadTrainData(ctx, *dataName, *label, *testFraction, *seed)
	if err != nil {
		return err
	}
	if train.Features != sp.Inputs() || train.Classes != sp.Classes() {
		return usageError{fmt.Errorf("--model %s reads %d features into %d classes, but --data %s has %d features and %d classes",
			sp, sp.Inputs(), sp.Classes(), *dataName, train.Features, train.Classes)}
	}

	mdl := model.New(sp, *seed)
	trainer, err := model.NewTrainer(mdl, cfg)
	if err != nil {
		return err
	}
	rep := trainReport{Model: sp.String(), Data: *dataName, Backend: model.Backend(), Seed: *seed, BatchSize: cfg.BatchSize,
		LearningRate: cfg.LearningRate, ParameterCount: sp.NumParams(), TrainExamples: train.Len(), TestExamples: test.Len(), DatasetSourcePath: source}
	if !*asJSON {
		fmt.Fprintf(m.Stdout, "model %s (%d parameters), %d training and %d test examples, kernel %s\n",
			sp, sp.NumParams(), train.Len(), test.Len(), model.Backend())
	}
	var trainTime time.Duration
	for e := 1; e <= cfg.Epochs; e++ {
		start := time.Now()
		loss, err := trainer.Epoch(ctx, train)
		if err != nil {
			return fmt.Errorf("epoch %d: %w", e, err)
		}
		elapsed := time.Since(start)
		trainTime += elapsed
		met, err := model.Evaluate(ctx, mdl, test)
		if err != nil {
			return err
		}
		er := epochReport{Epoch: e, TrainLoss: loss, TestLoss: met.Loss, TestAccuracy: met.Accuracy, Seconds: elapsed.Seconds()}
		rep.Epochs = append(rep.Epochs, er)
		rep.TestAccuracy, rep.TestLoss = met.Accuracy, met.Loss
		if !*asJSON {
			fmt.Fprintf(m.Stdout, "epoch %d  train loss %.4f  test loss %.4f  test accuracy %.2f%%  (%.1fs, %.0f samples/s)\n",
				e, loss, met.Loss, 100*met.Accuracy, elapsed.Seconds(), float64(train.Len())/elapsed.Seconds())
		}
	}
	rep.TrainSeconds = trainTime.Seconds()
	rep.SamplesPerSecond = float64(cfg.Epochs*train.Len()) / trainTime.Seconds()
	if *asJSON {
		enc := json.NewEncoder(m.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return nil
}

// loadTrainData returns the train and test splits of --data.
func loadTrainData(ctx context.Context, name, label string, testFraction float64, seed uint64) (train, test *model.Dataset, source string, err error) {
	if name == "mnist" {
		dir, err := data.LocateMNIST(ctx)
		if err != nil {
			return nil, nil, "", err
		}
		train, test, err := data.LoadMNIST(dir)
		return train, test, dir, err
	}
	if !(testFraction > 0 && testFraction < 1) {
		return nil, nil, "", usageError{fmt.Errorf("--test-fraction %v: want a fraction in (0, 1)", testFraction)}
	}
	table, err := data.LoadCSV(name, label)
	if err != nil {
		return nil, nil, "", fmt.Errorf("--data: %w", err)
	}
	train, test = data.Split(table.Data, 1-testFraction, seed)
	std := data.FitStandardizer(train)
	if err := std.Apply(train); err != nil {
		return nil, nil, "", err
	}
	if err := std.Apply(test); err != nil {
		return nil, nil, "", err
	}
	return train, test, name, nil
}
