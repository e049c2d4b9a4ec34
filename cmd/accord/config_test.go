package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/participant"
)

// writeConfig writes a config file into a temporary folder.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "accord.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func quietMain() *Main { return NewMain(io.Discard, io.Discard) }

// TestConfigFileSetsFlags: a config file sets flags by name, lists as
// sequences or commas, and the coordinator's limits; a flag on the command
// line wins over the file; what neither sets keeps its default.
func TestConfigFileSetsFlags(t *testing.T) {
	path := writeConfig(t, `
name: coord-1
data-dir: /var/lib/accord
grpc-addr: 0.0.0.0:7700
raft-profile: wan
bootstrap-expect: 3
bootstrap: false
join: [10.0.0.1:7702, 10.0.0.2:7702]
raft-heartbeat-timeout: 2s
limits:
  max_conns_per_ip: 99
`)
	fs, f := quietMain().coordinatorFlagSet()
	limits, err := parseCoordinatorFlags(fs, f, []string{"--config", path, "--grpc-addr", "127.0.0.1:9700", "--bootstrap-expect=5"}, coordinator.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ flag, got, want string }{
		{"name", *f.name, "coord-1"},
		{"data-dir", *f.dataDir, "/var/lib/accord"},
		{"grpc-addr (the command line's)", *f.grpcAddr, "127.0.0.1:9700"},
		{"bootstrap-expect (the command line's)", fmt.Sprint(*f.expect), "5"},
		{"raft-profile", *f.profile, "wan"},
		{"join", *f.join, "10.0.0.1:7702,10.0.0.2:7702"},
		{"raft-heartbeat-timeout", f.heartbeat.String(), "2s"},
		{"raft-addr (the default)", *f.raftAddr, coordinator.DefaultConfig().RaftAddr},
		{"log-level (the default)", *f.level, "info"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q; want %q", c.flag, c.got, c.want)
		}
	}
	if limits.MaxConnsPerIP != 99 || limits.HandshakeTimeout != coordinator.DefaultLimits().HandshakeTimeout {
		t.Errorf("limits %+v; want max_conns_per_ip 99 and the other defaults", limits)
	}

	path = writeConfig(t, "coordinator: 10.0.0.1:7700,10.0.0.2:7700\ndata: mnist\nshard: 3/100\nstandardize: false\nvalidation-fraction: 0.2\n")
	pfs, pf := quietMain().participantFlagSet()
	if err := parseParticipantFlags(pfs, pf, []string{"--config=" + path, "--shard", "4/100"}); err != nil {
		t.Fatal(err)
	}
	if *pf.addrs != "10.0.0.1:7700,10.0.0.2:7700" || *pf.dataName != "mnist" || *pf.shard != "4/100" || *pf.standardize || *pf.valFraction != 0.2 {
		t.Errorf("participant: coordinator %q, data %q, shard %q, standardize %v, validation-fraction %v; want the file's, shard 4/100 from the command line",
			*pf.addrs, *pf.dataName, *pf.shard, *pf.standardize, *pf.valFraction)
	}
}

// TestConfigFileErrors: a key that is no flag, a value of the wrong kind
// or type, and a config naming another are errors naming the key and the
// file, usage errors like a bad flag.
func TestConfigFileErrors(t *testing.T) {
	cases := []struct {
		name, command, yaml string
		want                []string // in the error, besides the file's path
	}{
		{"unknown key", "coordinator", "name: c1\ngrpc-adr: 0.0.0.0:7700\n", []string{"line 2", "grpc-adr", "unknown key"}},
		{"snake case", "coordinator", "data_dir: /var/lib/accord\n", []string{"data_dir", "keys are flag names: data-dir"}},
		{"a participant has no limits", "participant", "limits:\n  max_conns_per_ip: 9\n", []string{"limits", "unknown key"}},
		{"unknown limit", "coordinator", "limits:\n  max_con_per_ip: 9\n", []string{"max_con_per_ip"}},
		{"a config names another", "participant", "config: other.yaml\n", []string{"config", "cannot name another"}},
		{"no value", "coordinator", "name:\n", []string{"name", "no value"}},
		{"a list for a single value", "coordinator", "name: [a, b]\n", []string{"name", "not a list"}},
		{"a mapping", "participant", "data: {file: x.csv}\n", []string{"data", "not a mapping"}},
		{"not a bool", "coordinator", "bootstrap: maybe\n", []string{"bootstrap", `"maybe"`, "bool"}},
		{"not a duration", "coordinator", "raft-election-timeout: soon\n", []string{"raft-election-timeout", `"soon"`, "duration"}},
		{"not a mapping", "participant", "- data\n", []string{"line 1", "want a mapping"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeConfig(t, c.yaml)
			var err error
			switch c.command {
			case "coordinator":
				fs, f := quietMain().coordinatorFlagSet()
				_, err = parseCoordinatorFlags(fs, f, []string{"--config", path}, coordinator.DefaultLimits())
			case "participant":
				fs, f := quietMain().participantFlagSet()
				err = parseParticipantFlags(fs, f, []string{"--config", path})
			}
			if err == nil || exitCode(err) != 2 {
				t.Fatalf("got %v (exit %d); want a usage error naming %q and the file", err, exitCode(err), c.want)
			}
			for _, w := range append(c.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q; want it to name %q", err, w)
				}
			}
		})
	}
	// Through the command: exit status 2, like a bad flag.
	path := writeConfig(t, "coordinator: 127.0.0.1:7700\nshards: 1/2\n")
	err := quietMain().Run(t.Context(), []string{"participant", "--config", path})
	if err == nil || !strings.Contains(err.Error(), "shards") || !strings.Contains(err.Error(), path) || exitCode(err) != 2 {
		t.Errorf("accord participant --config with an unknown key: %v (exit %d); want a usage error naming shards and the file", err, exitCode(err))
	}
}

// TestEveryFlagHasAKey: every flag of accord coordinator and accord
// participant can be set from a config file, by its name, and takes the
// value written there; list flags take sequences.
func TestEveryFlagHasAKey(t *testing.T) {
	for _, cmd := range []struct {
		name  string
		flags func() *flag.FlagSet
	}{
		{"coordinator", func() *flag.FlagSet { fs, _ := quietMain().coordinatorFlagSet(); return fs }},
		{"participant", func() *flag.FlagSet { fs, _ := quietMain().participantFlagSet(); return fs }},
	} {
		t.Run(cmd.name, func(t *testing.T) {
			var yaml strings.Builder
			want := map[string]string{}
			cmd.flags().VisitAll(func(f *flag.Flag) {
				if f.Name == "config" {
					return
				}
				if strings.Contains(f.Usage, "comma-separated") {
					if !slices.Contains(listFlags, f.Name) {
						t.Errorf("--%s takes a comma-separated list but is not in listFlags", f.Name)
					}
					fmt.Fprintf(&yaml, "%s: [\"7\", \"8\"]\n", f.Name)
					want[f.Name] = "7,8"
					return
				}
				var v string
				switch d := f.Value.(flag.Getter).Get().(type) {
				case bool:
					v = fmt.Sprint(!d)
				case string:
					v = "value-of-" + f.Name
				case int, uint, uint64:
					v = "7"
				case float64:
					v = "0.25"
				case time.Duration:
					v = "3s"
				default:
					t.Fatalf("--%s: no test value for a %T", f.Name, d)
				}
				fmt.Fprintf(&yaml, "%s: %q\n", f.Name, v)
				want[f.Name] = v
			})
			fs := cmd.flags()
			if err := fs.Parse(nil); err != nil {
				t.Fatal(err)
			}
			path := writeConfig(t, yaml.String())
			var vals flagValues
			if err := decodeConfigFile(path, &vals); err != nil {
				t.Fatal(err)
			}
			if err := applyFlagValues(fs, path, vals); err != nil {
				t.Fatal(err)
			}
			fs.VisitAll(func(f *flag.Flag) {
				if w, ok := want[f.Name]; ok && f.Value.String() != w {
					t.Errorf("--%s: got %q from the file; want %q", f.Name, f.Value.String(), w)
				}
			})
			if len(want) < 10 {
				t.Errorf("only %d flags; want them all", len(want))
			}
		})
	}
}

// TestDeployConfigFiles: the example config files in deploy/ hold only
// keys the commands know, with values of the right types, and the example
// site policy loads.
func TestDeployConfigFiles(t *testing.T) {
	path := filepath.Join("..", "..", "deploy", "coordinator.yaml")
	fs, f := quietMain().coordinatorFlagSet()
	if _, err := parseCoordinatorFlags(fs, f, []string{"--config", path}, coordinator.DefaultLimits()); err != nil {
		t.Error(err)
	}
	if *f.name == "" || *f.dataDir == "" || *f.gossipKey == "" || *f.tls.ca == "" {
		t.Errorf("%s leaves out name, data-dir, gossip-key or ca", path)
	}
	path = filepath.Join("..", "..", "deploy", "participant.yaml")
	pfs, pf := quietMain().participantFlagSet()
	if err := parseParticipantFlags(pfs, pf, []string{"--config", path}); err != nil {
		t.Error(err)
	}
	if *pf.dataName == "" || *pf.tls.cert == "" || *pf.classes != "0,1" {
		t.Errorf("%s: data %q, cert %q, classes %q; want data, a cert and classes 0,1", path, *pf.dataName, *pf.tls.cert, *pf.classes)
	}
	if _, err := participant.LoadPolicy(filepath.Join("..", "..", "deploy", "policy.yaml")); err != nil {
		t.Error(err)
	}
}
