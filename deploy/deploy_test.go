package deploy

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/coordinator/coordtest"
)

// TestMain fails the package if any test leaves a goroutine running.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// dashboard is what the tests read of a Grafana dashboard.
type dashboard struct {
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name string `json:"name"`
			Expr string `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ X, Y, W, H int } `json:"gridPos"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

// readDashboard reads and decodes grafana/accord.json.
func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("grafana", "accord.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana/accord.json: %v", err)
	}
	return d
}

// allPanels is every panel, rows' included.
func (d dashboard) allPanels() []panel {
	var out []panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// queries returns every PromQL expression of the dashboard, each with
// where it comes from: panel targets, annotations, and the series the
// template variables read label values of.
func (d dashboard) queries(t *testing.T) map[string]string {
	out := map[string]string{}
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			out[tg.Expr] = "panel " + p.Title
		}
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			out[a.Expr] = "annotation " + a.Name
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*[a-zA-Z_]\w*\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			if err := json.Unmarshal(v.Query, &q.Query); err != nil {
				t.Fatalf("variable %s: query %s", v.Name, v.Query)
			}
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("variable %s: query %q; want label_values(SERIES, LABEL)", v.Name, q.Query)
			continue
		}
		out[m[1]] = "variable " + v.Name
	}
	return out
}

// promQLNotNames strip from PromQL what holds identifiers that are not
// metric names: strings, label matchers, ranges, grouping clauses,
// Grafana's $variables, numbers and durations.
var promQLNotNames = []*regexp.Regexp{
	regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`),
	regexp.MustCompile(`\{[^}]*\}`),
	regexp.MustCompile(`\[[^\]]*\]`),
	regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`),
	regexp.MustCompile(`\$\{?\w+\}?`),
	regexp.MustCompile(`\b\d[\w.]*`),
}

var (
	promQLIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promQLKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "inf", "nan"}
)

// metricNames returns the metric names a PromQL expression reads.
func metricNames(expr string) []string {
	for _, re := range promQLNotNames {
		expr = re.ReplaceAllString(expr, " ")
	}
	var out []string
	for _, m := range promQLIdent.FindAllStringSubmatch(expr, -1) {
		name := strings.TrimSpace(m[0])
		if m[1] != "" || slices.Contains(promQLKeywords, strings.ToLower(name)) {
			continue // a function or an aggregation, or a keyword
		}
		out = append(out, name)
	}
	return out
}

func TestMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`accord_raft_term`, []string{"accord_raft_term"}},
		{`sum by (grpc_method, grpc_code) (rate(grpc_server_handled_total{job="$job", grpc_code!="OK"}[$__rate_interval])) > 0`, []string{"grpc_server_handled_total"}},
		{`histogram_quantile(0.9, sum by (le) (rate(x_bucket{a=~"b|c"}[5m])))`, []string{"x_bucket"}},
		{`a - on(instance) group_left b offset 1h`, []string{"a", "b"}},
		{`max(up) by (instance) unless absent(c)`, []string{"up", "c"}},
	} {
		if got := metricNames(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("metricNames(%q) = %q; want %q", c.expr, got, c.want)
		}
	}
}

// prometheusNames are series Prometheus itself writes for every target.
var prometheusNames = []string{"up"}

// TestDashboardQueriesExportedMetrics: every metric the Grafana dashboard
// queries is one a coordinator serves on /metrics. Metric families with
// labels appear in a scrape only once they have a series (a job's
// accuracy, a secure-aggregation phase); those must be named in the
// coordinator's source instead.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	d := readDashboard(t)
	queries := d.queries(t)
	if len(queries) < 20 {
		t.Fatalf("%d queries in the dashboard; want its panels' too", len(queries))
	}

	tc := coordtest.NewCluster(t, 1, func(cfg *coordinator.Config) { cfg.MetricsAddr = "127.0.0.1:0" })
	c := tc.Leader(10 * time.Second)
	scraped := scrapeNames(t, "http://"+c.MetricsAddr()+"/metrics")
	declared := declaredNames(t, filepath.Join("..", "coordinator"))

	used := map[string]bool{}
	for expr, where := range queries {
		names := metricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: %q reads no metric", where, expr)
		}
		for _, n := range names {
			used[n] = true
			if scraped[n] || slices.Contains(prometheusNames, n) {
				continue
			}
			base := n
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				base = strings.TrimSuffix(base, suffix)
			}
			if !declared[base] {
				t.Errorf("%s: %q reads %s, which no coordinator exports", where, expr, n)
			}
		}
	}
	// The names the operators' guides promise are on the dashboard.
	for _, n := range []string{"accord_raft_term", "accord_raft_commit_index", "accord_raft_applied_index", "accord_raft_last_contact_seconds",
		"accord_raft_leader_changes_total", "accord_raft_leader", "grpc_server_handled_total", "accord_job_committed_rounds", "accord_job_accuracy",
		"accord_job_epsilon", "accord_participants_connected", "accord_rounds_aborted_total", "accord_rounds_committed_total"} {
		if !used[n] {
			t.Errorf("the dashboard has no panel on %s", n)
		}
	}
}

// scrapeNames returns the sample names of one /metrics page.
func scrapeNames(t *testing.T, url string) map[string]bool {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for line := range strings.Lines(string(b)) {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		names[line[:strings.IndexAny(line, "{ ")]] = true
	}
	if !names["accord_raft_term"] || !names["grpc_server_handled_total"] {
		t.Fatalf("the scrape of %s lacks accord_raft_term or grpc_server_handled_total:\n%s", url, b)
	}
	return names
}

// declaredNames returns the accord_ metric names quoted in the non-test Go
// files of dir.
func declaredNames(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	quoted := regexp.MustCompile(`"(accord_[a-z0-9_]+)"`)
	names := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range quoted.FindAllSubmatch(b, -1) {
			names[string(m[1])] = true
		}
	}
	if !names["accord_job_accuracy"] {
		t.Fatalf("no accord_job_accuracy quoted in %s: are the metrics still declared there?", dir)
	}
	return names
}

// TestDashboardShape: the dashboard is Grafana 10's schema, every panel
// reads the ${DS_PROMETHEUS} data source and has a query, panel IDs are
// distinct, and panels fit the 24-column grid without overlapping.
func TestDashboardShape(t *testing.T) {
	d := readDashboard(t)
	if d.SchemaVersion < 36 || d.UID == "" {
		t.Errorf("schemaVersion %d, uid %q; want Grafana 10's (≥ 36) and a uid", d.SchemaVersion, d.UID)
	}
	hasDS := false
	for _, v := range d.Templating.List {
		hasDS = hasDS || v.Name == "DS_PROMETHEUS" && v.Type == "datasource"
	}
	if !hasDS {
		t.Error("no DS_PROMETHEUS data source variable")
	}
	ids := map[int]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	for _, p := range d.allPanels() {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24 columns", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Errorf("panels %q and %q overlap at (%d, %d)", other, p.Title, x, y)
					return
				}
				taken[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${DS_PROMETHEUS}" {
			t.Errorf("panel %q: data source %v; want ${DS_PROMETHEUS}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
}
