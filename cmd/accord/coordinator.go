package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/accord-fl/accord/coordinator"
)

func (m *Main) runCoordinator(ctx context.Context, args []string) error {
	fs := m.newFlagSet("coordinator", "--name NAME --data-dir DIR --ca FILE --cert FILE --key FILE [flags]")
	def := coordinator.DefaultConfig()
	name := fs.String("name", "", "this coordinator's name (its Raft ID; match its certificate)")
	dataDir := fs.String("data-dir", "", "folder for the Badger database and Raft snapshots")
	grpcAddr := fs.String("grpc-addr", def.GRPCAddr, "address participants and admins connect to")
	raftAddr := fs.String("raft-addr", def.RaftAddr, "address other coordinators reach Raft at")
	bootstrap := fs.Bool("bootstrap", false, "form a new cluster of this node if its data folder is empty")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	tf := addTLSFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *name == "" || *dataDir == "" {
		return usageError{fmt.Errorf("--name and --data-dir are required")}
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return usageError{fmt.Errorf("--log-level: %w", err)}
	}
	mat, err := tf.load()
	if err != nil {
		return err
	}
	cfg := def
	cfg.Name, cfg.DataDir, cfg.GRPCAddr, cfg.RaftAddr, cfg.Bootstrap = *name, *dataDir, *grpcAddr, *raftAddr, *bootstrap
	cfg.MetricsAddr, cfg.Cert, cfg.CA = *metricsAddr, mat.cert, mat.pool
	cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	c, err := coordinator.New(cfg)
	if err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return c.Shutdown()
}
