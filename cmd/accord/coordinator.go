package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/pki"
)

// defaultGCPercent is a coordinator's GOGC unless set: with 1,000
// participants a round, 200 spends a tenth less CPU per round than Go's
// 100, for a leader peak of about 425 MiB instead of 300 (make
// bench-scale). minGCPercent is the lowest --gc-percent taken.
const defaultGCPercent, minGCPercent = 200, 10

// coordinatorFlags are accord coordinator's flags.
type coordinatorFlags struct {
	name, dataDir, grpcAddr, raftAddr, gossipAddr, join, gossipKey *string
	metricsAddr, httpAddr, statusToken, level, profile, configFile *string
	bootstrap                                                      *bool
	expect, gcPercent                                              *int
	heartbeat, election, lease                                     *time.Duration
	tls                                                            tlsFlags
}

// coordinatorFlagSet defines accord coordinator's flags.
func (m *Main) coordinatorFlagSet() (*flag.FlagSet, coordinatorFlags) {
	fs := m.newFlagSet("coordinator", "--name NAME --data-dir DIR --ca FILE --cert FILE --key FILE [flags] | --config FILE [flags]")
	def := coordinator.DefaultConfig()
	return fs, coordinatorFlags{
		name:        fs.String("name", "", "this coordinator's name (its Raft ID; match its certificate)"),
		dataDir:     fs.String("data-dir", "", "folder for the Badger database and Raft snapshots"),
		grpcAddr:    fs.String("grpc-addr", def.GRPCAddr, "address participants and admins connect to"),
		raftAddr:    fs.String("raft-addr", def.RaftAddr, "address other coordinators reach Raft at"),
		bootstrap:   fs.Bool("bootstrap", false, "form a new cluster of this node alone if its data folder is empty"),
		expect:      fs.Int("bootstrap-expect", 0, "form the cluster once this many coordinators have found each other by gossip"),
		gossipAddr:  fs.String("gossip-addr", def.GossipAddr, "address (UDP and TCP) for gossip with the other coordinators"),
		join:        fs.String("join", "", "comma-separated gossip addresses of coordinators to join"),
		gossipKey:   fs.String("gossip-key", envOr("ACCORD_GOSSIP_KEY", ""), "file holding the federation's gossip key (gossip.key from 'accord pki init') [$ACCORD_GOSSIP_KEY]"),
		metricsAddr: fs.String("metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics"),
		httpAddr:    fs.String("http-addr", "", "serve the read-only status page at https://`ADDR`/ (clients present a certificate of the federation CA, or the --status-token-file token)"),
		statusToken: fs.String("status-token-file", "", "`FILE` holding a bearer token that also opens the status page: one word of at least 16 characters (e.g. from openssl rand -hex 32)"),
		level:       fs.String("log-level", "info", "debug, info, warn or error"),
		profile:     fs.String("raft-profile", coordinator.ProfileLAN, "Raft and gossip timings for the network between coordinators: lan (one site or country) or wan (several continents: 3× Raft's timeouts, memberlist's WAN probes)"),
		heartbeat:   fs.Duration("raft-heartbeat-timeout", 0, "Raft heartbeat timeout (0: the profile's)"),
		election:    fs.Duration("raft-election-timeout", 0, "Raft election timeout (0: the profile's)"),
		lease:       fs.Duration("raft-leader-lease-timeout", 0, "Raft leader lease timeout (0: the profile's; at most the heartbeat timeout)"),
		gcPercent: fs.Int("gc-percent", defaultGCPercent, "the garbage collector's target heap growth in percent (Go's GOGC, which wins if set): "+
			"a coordinator's heap is mostly short-lived transfer buffers, so above Go's 100 it spends less CPU on collection for more memory"),
		configFile: fs.String("config", "", "YAML `FILE`: any of these flags by name (grpc-addr: 10.0.0.1:7700) and a limits: section (see coordinator.Limits); "+
			"flags given on the command line override it"),
		tls: addTLSFlags(fs),
	}
}

// parseCoordinatorFlags parses args, then the --config file if one is
// named: its flags (unless args set them) and its limits over def.
func parseCoordinatorFlags(fs *flag.FlagSet, f coordinatorFlags, args []string, def coordinator.Limits) (coordinator.Limits, error) {
	if err := parseFlags(fs, args); err != nil {
		return def, err
	}
	if *f.configFile == "" {
		return def, nil
	}
	limits, vals, err := loadCoordinatorConfig(*f.configFile, def)
	if err != nil {
		return def, usageError{err}
	}
	if err := applyFlagValues(fs, *f.configFile, vals); err != nil {
		return def, usageError{err}
	}
	return limits, nil
}

func (m *Main) runCoordinator(ctx context.Context, args []string) error {
	fs, f := m.coordinatorFlagSet()
	def := coordinator.DefaultConfig()
	limits, err := parseCoordinatorFlags(fs, f, args, def.Limits)
	if err != nil {
		return err
	}
	if *f.name == "" || *f.dataDir == "" {
		return usageError{fmt.Errorf("--name and --data-dir are required")}
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*f.level)); err != nil {
		return usageError{fmt.Errorf("--log-level: %w", err)}
	}
	if *f.gcPercent < minGCPercent {
		return usageError{fmt.Errorf("--gc-percent %d: want at least %d (the collector cannot be turned off: the heap would grow without bound)", *f.gcPercent, minGCPercent)}
	}
	mat, err := f.tls.load()
	if err != nil {
		return err
	}
	cfg := def
	if err := cfg.SetProfile(*f.profile); err != nil {
		return usageError{fmt.Errorf("--raft-profile: %w", err)}
	}
	for _, t := range []struct {
		flag string
		v    time.Duration
		dst  *time.Duration
	}{{"--raft-heartbeat-timeout", *f.heartbeat, &cfg.HeartbeatTimeout}, {"--raft-election-timeout", *f.election, &cfg.ElectionTimeout}, {"--raft-leader-lease-timeout", *f.lease, &cfg.LeaderLeaseTimeout}} {
		switch {
		case t.v < 0:
			return usageError{fmt.Errorf("%s %s: want a positive duration", t.flag, t.v)}
		case t.v > 0:
			*t.dst = t.v
		}
	}
	if cfg.LeaderLeaseTimeout > cfg.HeartbeatTimeout {
		return usageError{fmt.Errorf("--raft-leader-lease-timeout %s is above the heartbeat timeout %s (Raft refuses that)", cfg.LeaderLeaseTimeout, cfg.HeartbeatTimeout)}
	}
	cfg.Limits = limits
	cfg.Name, cfg.DataDir, cfg.GRPCAddr, cfg.RaftAddr, cfg.Bootstrap = *f.name, *f.dataDir, *f.grpcAddr, *f.raftAddr, *f.bootstrap
	cfg.MetricsAddr, cfg.Cert, cfg.CA = *f.metricsAddr, mat.cert, mat.pool
	if *f.statusToken != "" && *f.httpAddr == "" {
		return usageError{fmt.Errorf("--status-token-file needs --http-addr (the status page)")}
	}
	cfg.HTTPAddr, cfg.StatusTokenFile = *f.httpAddr, *f.statusToken
	cfg.BootstrapExpect, cfg.GossipAddr = *f.expect, *f.gossipAddr
	if *f.join != "" {
		cfg.Join = strings.Split(*f.join, ",")
	}
	if *f.gossipKey == "" {
		return usageError{fmt.Errorf("--gossip-key is required: gossip between coordinators is always encrypted")}
	}
	key, err := pki.LoadGossipKeyFile(*f.gossipKey)
	if err != nil {
		return fmt.Errorf("--gossip-key: %w", err)
	}
	cfg.GossipKey = key
	cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	// The process-wide setting changes only once every flag checked out.
	if gogc := os.Getenv("GOGC"); gogc == "" {
		debug.SetGCPercent(*f.gcPercent)
	} else if givenFlags(fs)["gc-percent"] {
		cfg.Logger.Warn("--gc-percent is ignored: the GOGC environment variable sets the garbage collector's target", "GOGC", gogc)
	}
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

// coordinatorFile is a coordinator's YAML config file: its flags by name
// and its limits.
type coordinatorFile struct {
	Limits coordinator.Limits `yaml:"limits"`
	Flags  flagValues         `yaml:",inline"`
}

// loadCoordinatorConfig reads a config file: its limits over def, and the
// flag values it sets (applyFlagValues checks and sets them).
func loadCoordinatorConfig(path string, def coordinator.Limits) (coordinator.Limits, flagValues, error) {
	f := coordinatorFile{Limits: def}
	if err := decodeConfigFile(path, &f); err != nil {
		return def, nil, err
	}
	if err := f.Limits.Validate(); err != nil {
		return def, nil, fmt.Errorf("--config %s: %w", path, err)
	}
	return f.Limits, f.Flags, nil
}
