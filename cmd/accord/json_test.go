package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// TestOneJSONDialect: every --json prints the API's JSON — the .proto's
// field names, enums by name, 64-bit integers as strings, every field —
// for a message and for a list of them; the CLI's own summaries pass
// through as they are.
func TestOneJSONDialect(t *testing.T) {
	cases := []struct {
		name string
		v    any
		want []string
	}{
		{"a message", &pb.Job{Id: "job-1", Status: pb.JobStatus_JOB_STATUS_SUCCEEDED, CommittedRounds: 3, CreatedUnixMs: 5},
			[]string{`"id": "job-1"`, `"status": "JOB_STATUS_SUCCEEDED"`, `"committed_rounds": 3`, `"created_unix_ms": "5"`, `"reason": ""`}},
		{"a list of messages", []*pb.Round{{Number: 1, Status: pb.RoundStatus_ROUND_STATUS_COMMITTED}, {Number: 2}},
			[]string{`"number": 1`, `"status": "ROUND_STATUS_COMMITTED"`, `"number": 2`, `"model_digest": ""`}},
		{"a summary", map[string]any{"job": "job-1", "round": 2}, []string{`"job": "job-1"`, `"round": 2`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := printJSON(&out, c.v); err != nil {
				t.Fatal(err)
			}
			if !json.Valid(out.Bytes()) {
				t.Fatalf("not JSON: %s", out.String())
			}
			for _, w := range c.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("%s lacks %s", out.String(), w)
				}
			}
		})
	}
}
