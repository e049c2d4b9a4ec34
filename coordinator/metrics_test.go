package coordinator_test

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/coordinator/coordtest"
)

// scrape reads one coordinator's /metrics.
func scrape(t *testing.T, c *coordinator.Coordinator) string {
	t.Helper()
	resp, err := http.Get("http://" + c.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricValue is the value of an unlabelled metric in a scrape (-1: none).
func metricValue(text, name string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestMetricsAfterALeaderKill: every coordinator's /metrics reports its own
// Raft state. After the leader is killed the survivors have counted the
// leader change, each one's commit index advances as the cluster commits,
// and gRPC requests are counted by method.
func TestMetricsAfterALeaderKill(t *testing.T) {
	tc := coordtest.NewCluster(t, 3, func(cfg *coordinator.Config) { cfg.MetricsAddr = "127.0.0.1:0" })
	old := tc.Index(tc.Leader(10 * time.Second))
	tc.Kill(old)
	tc.Leader(10 * time.Second)
	var survivors []int
	for i := range 3 {
		if i != old {
			survivors = append(survivors, i)
		}
	}
	before := map[int]float64{}
	for _, i := range survivors {
		text := scrape(t, tc.Nodes[i])
		if v := metricValue(text, "accord_raft_leader_changes_total"); v < 1 {
			t.Errorf("c%d counted %v leader changes after the leader was killed; want ≥ 1", i+1, v)
		}
		before[i] = metricValue(text, "accord_raft_commit_index")
	}
	// A write through the cluster: the commit index moves on every node.
	admin := tc.Admin(survivors[0], "ops")
	submit(t, admin, blobsJob(1))
	for _, i := range survivors {
		deadline := time.Now().Add(10 * time.Second)
		for metricValue(scrape(t, tc.Nodes[i]), "accord_raft_commit_index") <= before[i] {
			if time.Now().After(deadline) {
				t.Fatalf("c%d's commit index stayed at %v after a write", i+1, before[i])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	text := scrape(t, tc.Nodes[survivors[0]])
	if !strings.Contains(text, `grpc_server_handled_total{grpc_code="OK",grpc_method="SubmitJob",grpc_service="accord.v1.AdminService",grpc_type="unary"}`) {
		t.Errorf("no gRPC request counter for SubmitJob in:\n%s", grepLines(text, "grpc_server_handled_total"))
	}
	if !strings.Contains(text, "accord_job_committed_rounds{job_id=") {
		t.Error("no per-job gauge")
	}
}

// grepLines returns text's lines containing s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
