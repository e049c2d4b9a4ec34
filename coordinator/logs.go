package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// raftLogger routes hashicorp/raft's logs into the coordinator's slog
// logger, at raft's own levels: elections, leadership changes, snapshots
// and configuration changes are recorded, not discarded. Raft writes JSON
// lines (hclog's JSON format), which hclogWriter turns back into records.
func raftLogger(l *slog.Logger) hclog.Logger {
	level := hclog.Info
	if l.Enabled(context.Background(), slog.LevelDebug) {
		level = hclog.Debug
	}
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Output: hclogWriter{l}, Level: level, JSONFormat: true})
}

// hclogWriter turns hclog's JSON lines into slog records.
type hclogWriter struct{ log *slog.Logger }

func (w hclogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimSpace(p), []byte("\n")) {
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			w.log.Info(string(line), "component", "raft")
			continue
		}
		level := hclogLevel(rec["@level"])
		if !w.log.Enabled(context.Background(), level) {
			continue
		}
		msg, _ := rec["@message"].(string)
		module, _ := rec["@module"].(string)
		attrs := []any{"component", module}
		for k, v := range rec {
			if !strings.HasPrefix(k, "@") {
				attrs = append(attrs, k, v)
			}
		}
		w.log.Log(context.Background(), level, msg, attrs...)
	}
	return len(p), nil
}

func hclogLevel(v any) slog.Level {
	switch s, _ := v.(string); s {
	case "trace", "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// memberlistLogger routes memberlist's log lines ("[DEBUG] memberlist: …")
// into the coordinator's slog logger at their own levels.
func memberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(prefixedWriter{l}, "", 0)
}

// prefixedWriter turns "[LEVEL] source: message" lines into slog records.
type prefixedWriter struct{ log *slog.Logger }

func (w prefixedWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		level, msg := slog.LevelInfo, line
		if i := strings.Index(line, "] "); strings.HasPrefix(line, "[") && i > 0 {
			switch line[1:i] {
			case "DEBUG", "TRACE":
				level = slog.LevelDebug
			case "WARN":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			}
			msg = line[i+2:]
		}
		if w.log.Enabled(context.Background(), level) {
			w.log.Log(context.Background(), level, strings.TrimPrefix(msg, "memberlist: "), "component", "memberlist")
		}
	}
	return len(p), nil
}
