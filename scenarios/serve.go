package scenarios

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/accord-fl/accord/coordinator/state"
	"go.yaml.in/yaml/v3"
)

// ServeSpec is a scenario's serve section: an accord serve follows the
// scenario's job while it runs, and a small client sends it inference
// requests (rows of the test set) and checks what answers them.
type ServeSpec struct {
	// REST and GRPC choose the endpoints served and called (each true
	// unless set false).
	REST bool `yaml:"rest"`
	GRPC bool `yaml:"grpc"`
	// MaxBatch and MaxWait are accord serve's dynamic batching
	// (--max-batch, --max-wait).
	MaxBatch int            `yaml:"max_batch"`
	MaxWait  state.Duration `yaml:"max_wait"`
	// Poll is how often accord serve asks the coordinators for a newer
	// round (--poll).
	Poll state.Duration `yaml:"poll"`
	// Clients is how many clients send requests at once; with both
	// endpoints, every other client calls gRPC.
	Clients int `yaml:"clients"`
	// Rate is the requests a second all clients send together.
	Rate float64 `yaml:"rate"`
	// Rows is the test examples in each request.
	Rows int `yaml:"rows"`
	// Requests stops the clients after that many requests (0: they send
	// until the job has ended and its last round answers).
	Requests int `yaml:"requests"`
}

// DefaultServeSpec is what a serve section leaves out: both endpoints,
// batches of up to 32 rows waiting at most 2 ms, a poll every 200 ms, two
// clients sending 20 one-row requests a second together, until the job
// ends.
func DefaultServeSpec() ServeSpec {
	return ServeSpec{REST: true, GRPC: true, MaxBatch: 32, MaxWait: state.Duration(2 * time.Millisecond),
		Poll: state.Duration(200 * time.Millisecond), Clients: 2, Rate: 20, Rows: 1}
}

// applyServeDefaults decodes the serve section of doc, if it has one, over
// DefaultServeSpec, so that a field left out takes its default and a
// field given as 0 or false keeps it (Parse has already decoded it
// strictly, refusing unknown fields).
func (s *Scenario) applyServeDefaults(doc *yaml.Node) error {
	if s.Serve == nil {
		return nil
	}
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value != "serve" {
			continue
		}
		spec := DefaultServeSpec()
		if err := n.Content[i+1].Decode(&spec); err != nil {
			return fmt.Errorf("parsing scenario: serve: %w", err)
		}
		*s.Serve = spec
	}
	return nil
}

// validateServe checks the serve section, naming the field.
func (s *Scenario) validateServe() error {
	v := s.Serve
	if v == nil {
		return nil
	}
	switch {
	case !v.REST && !v.GRPC:
		return fieldErrorf("serve", "serves nothing: rest and grpc are both false")
	case v.MaxBatch < 1 || v.MaxBatch > 1024:
		return fieldErrorf("serve.max_batch", "%d: want 1–1024", v.MaxBatch)
	case v.MaxWait < 0 || time.Duration(v.MaxWait) > time.Second:
		return fieldErrorf("serve.max_wait", "%v: want 0 (only what is queued) to 1s", time.Duration(v.MaxWait))
	case time.Duration(v.Poll) < 10*time.Millisecond || time.Duration(v.Poll) > time.Minute:
		return fieldErrorf("serve.poll", "%v: want 10ms–1m", time.Duration(v.Poll))
	case v.Clients < 1 || v.Clients > 64:
		return fieldErrorf("serve.clients", "%d: want 1–64", v.Clients)
	case !(v.Rate > 0) || v.Rate > 10_000 || math.IsInf(v.Rate, 0):
		return fieldErrorf("serve.rate", "%v: want requests a second in (0, 10000]", v.Rate)
	case v.Rows < 1 || v.Rows > 1024:
		return fieldErrorf("serve.rows", "%d: want 1–1024 (accord serve's --max-rows)", v.Rows)
	case v.Requests < 0:
		return fieldErrorf("serve.requests", "%d: want 0 (until the job ends) or more", v.Requests)
	}
	for i, c := range s.Coordinators {
		if slices.Contains(serveIdentities[:], c.Name) {
			return fieldErrorf(fmt.Sprintf("coordinators[%d].name", i), "%q is a name the serve section gives its own certificates", c.Name)
		}
	}
	return nil
}

// serveIdentities are the names of the certificates a serve section
// issues: the admin accord serve reads the job as, accord serve's own (role
// inference; also its process's name and log, logs/NAME.log) and its
// clients' (role consumer). No coordinator may take one: the processes
// runner writes certificates and logs by name.
var serveIdentities = [3]string{"serve-reader", "serve-inference", "serve-client"}

// protocols names the endpoints the section serves.
func (v *ServeSpec) protocols() []string {
	var out []string
	if v.REST {
		out = append(out, protoREST)
	}
	if v.GRPC {
		out = append(out, protoGRPC)
	}
	return out
}

// The endpoints, as reports name them.
const (
	protoREST = "rest"
	protoGRPC = "grpc"
)

// modelName is the name the job's model is served under.
func (s *Scenario) modelName() string {
	if n := strings.TrimSpace(s.Job.Name); n != "" && !strings.ContainsAny(n, "/ ?#%") {
		return n
	}
	return "model"
}
