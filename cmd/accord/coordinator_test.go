package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator"
)

func TestCoordinatorConfigFile(t *testing.T) {
	def := coordinator.DefaultLimits()
	cases := []struct {
		name, yaml, wantErr string
		check               func(coordinator.Limits) bool
	}{
		{"empty file: the defaults", "", "", func(l coordinator.Limits) bool { return l == def }},
		{"limits override the defaults", "limits:\n  handshake_timeout: 3s\n  max_raft_conns_per_ip: 32\n", "",
			func(l coordinator.Limits) bool {
				return l.HandshakeTimeout == 3*time.Second && l.MaxRaftConnsPerIP == 32 && l.MaxConnsPerIP == def.MaxConnsPerIP
			}},
		{"unknown key", "limits:\n  handshake_timout: 3s\n", "handshake_timout", nil},
		{"bad duration", "limits:\n  handshake_timeout: soon\n", "soon", nil},
		{"a limit that is not positive", "limits:\n  participant_rate: 0\n", "participant_rate", nil},
	}
	for _, c := range cases {
		path := filepath.Join(t.TempDir(), "coordinator.yaml")
		os.WriteFile(path, []byte(c.yaml), 0o600)
		got, _, err := loadCoordinatorConfig(path, def)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), path) {
				t.Errorf("%s: %v; want an error naming %q and the file", c.name, err, c.wantErr)
			}
			continue
		}
		if err != nil || !c.check(got) {
			t.Errorf("%s: %+v (%v)", c.name, got, err)
		}
	}
}

// TestCoordinatorGCPercent: --gc-percent refuses a value that would turn
// the collector off or nearly so, as a usage error naming the flag.
func TestCoordinatorGCPercent(t *testing.T) {
	for _, v := range []string{"-1", "0", strconv.Itoa(minGCPercent - 1)} {
		var out, errb bytes.Buffer
		err := NewMain(&out, &errb).Run(t.Context(), []string{"coordinator", "--name", "c1", "--data-dir", t.TempDir(), "--gc-percent", v})
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "--gc-percent "+v) {
			t.Errorf("--gc-percent %s: %v; want a usage error naming the flag", v, err)
		}
	}
}
