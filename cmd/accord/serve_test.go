package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestParseServeJobs(t *testing.T) {
	jobs, err := parseServeJobs(" job-a=mnist, job-b ,")
	if err != nil || len(jobs) != 2 || jobs[0].ID != "job-a" || jobs[0].Name() != "mnist" || jobs[1].Name() != "job-b" {
		t.Fatalf("parseServeJobs: %+v, %v; want job-a as mnist and job-b", jobs, err)
	}
	for _, bad := range []string{"", ",", "=alias"} {
		if _, err := parseServeJobs(bad); err == nil {
			t.Errorf("parseServeJobs(%q) accepted; want a usage error", bad)
		}
	}
}

func TestServeRefusesMissingFlags(t *testing.T) {
	var out, errb bytes.Buffer
	err := NewMain(&out, &errb).Run(context.Background(), []string{"serve", "--coordinator", "127.0.0.1:1"})
	if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "--job") {
		t.Fatalf("serve without --job: %v (exit %d); want a usage error naming --job", err, exitCode(err))
	}
}
